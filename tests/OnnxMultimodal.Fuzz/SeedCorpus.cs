using System.Buffers.Binary;
using System.Text.Json.Nodes;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Pbm;
using SixLabors.ImageSharp.Formats.Tga;
using SixLabors.ImageSharp.Formats.Tiff;
using SixLabors.ImageSharp.Formats.Webp;
using SixLabors.ImageSharp.PixelFormats;

namespace OnnxMultimodal.Fuzz;

/// <summary>Writes the small seed inputs committed under corpus/TARGET (`omm-fuzz --seed-corpus corpus`).
/// Crash reproducers found later are added beside them by hand (crash-*), so they run in CI too.</summary>
internal static class SeedCorpus
{
    public static void Write(string root)
    {
        void Put(string target, string name, byte[] data)
        {
            Directory.CreateDirectory(Path.Combine(root, target));
            File.WriteAllBytes(Path.Combine(root, target, name), data);
        }

        // ---- image: one small picture in every format ImageSharp decodes, an animation, alpha ----
        using var img = new Image<Rgba32>(8, 6);
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 8; x++)
                img[x, y] = new Rgba32((byte)(x * 30), (byte)(y * 40), 90, (byte)(x == 0 ? 0 : 255));
        byte[] Save(Action<Stream> save) { using var ms = new MemoryStream(); save(ms); return ms.ToArray(); }
        Put("image", "seed.png", Save(s => img.SaveAsPng(s)));
        Put("image", "seed.jpg", Save(s => img.SaveAsJpeg(s)));
        Put("image", "seed.bmp", Save(s => img.SaveAsBmp(s, new BmpEncoder { BitsPerPixel = BmpBitsPerPixel.Pixel24 })));
        Put("image", "seed.tga", Save(s => img.SaveAsTga(s, new TgaEncoder { Compression = TgaCompression.RunLength })));
        Put("image", "seed.tiff", Save(s => img.SaveAsTiff(s, new TiffEncoder())));
        Put("image", "seed.webp", Save(s => img.SaveAsWebp(s, new WebpEncoder { FileFormat = WebpFileFormatType.Lossless })));
        Put("image", "seed.pbm", Save(s => img.SaveAsPbm(s, new PbmEncoder { ColorType = PbmColorType.Grayscale, Encoding = PbmEncoding.Plain })));
        using (var anim = img.CloneAs<Rgba32>())
        {
            using var second = new Image<Rgba32>(8, 6, new Rgba32(255, 255, 0, 255));
            anim.Frames.AddFrame(second.Frames.RootFrame);
            Put("image", "anim.gif", Save(s => anim.SaveAsGif(s, new GifEncoder())));
        }

        // ---- wave: each encoding the reader takes, odd rates, channels, chunk layouts ----
        Put("wave", "pcm16-16k.wav", Wav(1, 1, 16000, 16, 800));
        Put("wave", "pcm8-8k.wav", Wav(1, 1, 8000, 8, 400));
        Put("wave", "pcm24-44k-stereo.wav", Wav(1, 2, 44100, 24, 300));
        Put("wave", "pcm32-22k.wav", Wav(1, 1, 22050, 32, 300));
        Put("wave", "float32-16k.wav", Wav(3, 1, 16000, 32, 500));
        Put("wave", "float64-11k.wav", Wav(3, 1, 11025, 64, 200));
        Put("wave", "extensible-48k.wav", Wav(0xFFFE, 1, 48000, 16, 600, extensible: true, list: true));

        // ---- onnx-header: ModelProto top-level fields (ir_version, producer, opset_import, graph) ----
        Put("onnx-header", "ir10-opset17.onnx", Onnx(10, [("", 17), ("com.microsoft", 1)], "pytorch"));
        Put("onnx-header", "ir14.onnx", Onnx(14, [("", 21)], "onnx"));
        Put("onnx-header", "opset22.onnx", Onnx(10, [("", 22)], ""));

        // ---- manifest: the committed tiny models' multimodal.json, components pointed at the scratch folder's files ----
        string models = FindModels();
        foreach (var name in new[] { "tiny-llama", "tiny-chameleon", "tiny-seamless" })
        {
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(models, name, "multimodal.json")))!.AsObject();
            var components = json["components"]!.AsObject();
            foreach (var key in components.Select(c => c.Key).ToList())
                components[key] = key == "tokenizer" ? "tokenizer.json" : "decoder.onnx";
            json.Remove("provenance");
            Put("manifest", name + ".json", System.Text.Encoding.UTF8.GetBytes(json.ToJsonString()));
        }

        // ---- tokenizer: tiny-llama's tokenizer.json cut to its first 200 ids and the merges among them ----
        var tok = JsonNode.Parse(File.ReadAllText(Path.Combine(models, "tiny-llama", "tokenizer.json")))!.AsObject();
        var model = tok["model"]!.AsObject();
        var vocab = model["vocab"]!.AsObject().Where(p => p.Value!.GetValue<int>() < 200).ToDictionary(p => p.Key, p => p.Value!.GetValue<int>());
        var merges = model["merges"]!.AsArray().Select(m => m is JsonArray a ? $"{a[0]} {a[1]}" : m!.GetValue<string>())
            .Where(m => m.Split(' ') is [var l, var r] && vocab.ContainsKey(l) && vocab.ContainsKey(r) && vocab.ContainsKey(l + r)).Take(60).ToList();
        model["vocab"] = new JsonObject(vocab.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)JsonValue.Create(p.Value))));
        model["merges"] = new JsonArray(merges.Select(m => (JsonNode?)JsonValue.Create(m)).ToArray());
        tok["added_tokens"] = new JsonArray(tok["added_tokens"]!.AsArray().Where(t => t!["id"]!.GetValue<int>() < 200).Select(t => t!.DeepClone()).ToArray());
        Put("tokenizer", "tiny-llama-200.json", System.Text.Encoding.UTF8.GetBytes(tok.ToJsonString()));
        Put("tokenizer", "minimal.json", Scratch.SmallTokenizer);

        // ---- options: 24 bytes of sampling fields, then a UTF-8 prompt ----
        Put("options", "greedy.bin", Options(0f, 0, 1f, 1f, 16, 1, "Once upon a time"));
        Put("options", "sampled.bin", Options(0.8f, 40, 0.9f, 1.2f, 64, 42, "héllo wörld ✓ 🙂"));
        Put("options", "nan.bin", Options(float.NaN, -1, float.PositiveInfinity, 0f, int.MaxValue, 0, "<s></s>"));
    }

    private static byte[] Wav(int format, int channels, int rate, int bits, int frames, bool extensible = false, bool list = false)
    {
        var rng = new Random(frames);
        var data = new byte[frames * channels * bits / 8];
        if (format == 3)
            for (int i = 0; i < frames * channels; i++)
            {
                double v = Math.Sin(i * 0.05) * 0.5 + (rng.NextDouble() - 0.5) * 0.1;
                if (bits == 32) BinaryPrimitives.WriteSingleLittleEndian(data.AsSpan(i * 4), (float)v);
                else BinaryPrimitives.WriteDoubleLittleEndian(data.AsSpan(i * 8), v);
            }
        else rng.NextBytes(data);
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        w.Write("RIFF"u8); w.Write(0); w.Write("WAVE"u8);
        if (list) { w.Write("LIST"u8); w.Write(5); w.Write("INFOx"u8); w.Write((byte)0); }
        w.Write("fmt "u8); w.Write(extensible ? 40 : 16); w.Write((short)format); w.Write((short)channels); w.Write(rate);
        w.Write(rate * channels * bits / 8); w.Write((short)(channels * bits / 8)); w.Write((short)bits);
        if (extensible)
        {
            w.Write((short)22); w.Write((short)bits); w.Write(channels == 1 ? 4 : 3);
            w.Write((short)1); w.Write(new byte[] { 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71 });   // KSDATAFORMAT_SUBTYPE_PCM
        }
        w.Write("data"u8); w.Write(data.Length); w.Write(data);
        var bytes = ms.ToArray();
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), bytes.Length - 8);
        return bytes;
    }

    private static byte[] Onnx(long ir, (string Domain, long Version)[] opsets, string producer)
    {
        var ms = new MemoryStream();
        void Varint(ulong v) { do { byte b = (byte)(v & 0x7F); v >>= 7; ms.WriteByte(v != 0 ? (byte)(b | 0x80) : b); } while (v != 0); }
        void Bytes(int field, byte[] b) { Varint((ulong)(field << 3 | 2)); Varint((ulong)b.Length); ms.Write(b); }
        Varint(1 << 3); Varint((ulong)ir);
        Bytes(2, System.Text.Encoding.UTF8.GetBytes(producer));
        foreach (var (domain, version) in opsets)
        {
            var entry = new MemoryStream();
            entry.WriteByte(0x0A); entry.WriteByte((byte)domain.Length); entry.Write(System.Text.Encoding.UTF8.GetBytes(domain));
            entry.WriteByte(0x10); entry.WriteByte((byte)version);
            Bytes(8, entry.ToArray());
        }
        Bytes(7, new byte[48]);   // graph: skipped by length
        return ms.ToArray();
    }

    private static byte[] Options(float temperature, int topK, float topP, float penalty, int maxNew, uint seed, string prompt)
    {
        var b = new byte[24];
        BinaryPrimitives.WriteSingleLittleEndian(b, temperature);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(4), topK);
        BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(8), topP);
        BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(12), penalty);
        BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(16), maxNew);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(20), seed);
        return [.. b, .. System.Text.Encoding.UTF8.GetBytes(prompt)];
    }

    private static string FindModels()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (Directory.Exists(Path.Combine(dir.FullName, "models", "tiny-llama"))) return Path.Combine(dir.FullName, "models");
        throw new DirectoryNotFoundException("models/ not found above " + AppContext.BaseDirectory);
    }
}
