using System.Buffers.Binary;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Speech;
using OnnxMultimodal.Text;
using OnnxMultimodal.Vision;

namespace OnnxMultimodal.Fuzz;

/// <summary>
/// The fuzz targets: each feeds one input to a parser of untrusted bytes. An
/// <see cref="OnnxMultimodalException"/> is the expected outcome of bad input and is swallowed; any other
/// exception escapes and is a finding. The same targets run under AFL++/libFuzzer (Program) and in CI
/// (tests/OnnxMultimodal.Tests/FuzzTests.cs, linked source).
/// </summary>
public static class FuzzTargets
{
    /// <summary>Target name → the code it runs on one input.</summary>
    public static readonly IReadOnlyDictionary<string, Action<byte[]>> All = new Dictionary<string, Action<byte[]>>
    {
        ["image"] = Image,
        ["wave"] = Wave,
        ["onnx-header"] = OnnxHeaderFile,
        ["manifest"] = Manifest,
        ["tokenizer"] = Tokenizer,
        ["options"] = Options,
    };

    /// <summary>Runs <paramref name="target"/> on <paramref name="data"/>; true when the input was refused
    /// with a library error, false when it was accepted. Anything else throws.</summary>
    public static bool Run(string target, byte[] data)
    {
        try
        {
            All[target](data);
            return false;
        }
        catch (OnnxMultimodalException)
        {
            return true;
        }
    }

    // A 4M-pixel bound (instead of 40M) keeps one execution under ~100 ms while exercising the same checks.
    // Created on first use: under AFL no library code may run before SharpFuzz has mapped its coverage memory.
    private static ImageLoaderOptions? s_imageOptions;

    /// <summary>ImageLoader: header checks, decode (any format), orientation, alpha, resize, crop.</summary>
    public static void Image(byte[] data)
    {
        s_imageOptions ??= new() { Size = 32, Limits = ResourceLimits.Default with { MaxImagePixels = 4_000_000 } };
        ImageLoader.LoadPixels(new MemoryStream(data), s_imageOptions, "fuzz");
    }

    /// <summary>WaveReader (any encoding, channels, rate → 16 kHz) and the encoder's features (Fbank, normalise, stack).</summary>
    public static void Wave(byte[] data)
    {
        var wave = WaveReader.Read(new MemoryStream(data), Fbank.SampleRate, new AudioOptions(), "fuzz");
        int frames = Fbank.FrameCount(wave.Samples.Length);
        var fbank = Fbank.Default.Compute(wave.Samples);
        if (frames >= 2) Fbank.NormaliseAndStack(fbank, frames);
    }

    /// <summary>OnnxHeader.Read and EnsureSupported on a graph file of these bytes.</summary>
    public static void OnnxHeaderFile(byte[] data)
    {
        string path = Scratch.File("model.onnx", data);
        OnnxHeader.Read(path).EnsureSupported(path);
    }

    /// <summary>ModelPackage.Open on a folder whose multimodal.json is these bytes; the folder holds a
    /// header-only decoder.onnx and a small tokenizer.json, so a valid manifest gets through to the end.</summary>
    public static void Manifest(byte[] data)
    {
        Scratch.File("decoder.onnx", [0x08, 0x0A]);                 // ir_version 10
        Scratch.File("tokenizer.json", Scratch.SmallTokenizer);
        Scratch.File("multimodal.json", data);
        ModelPackage.Open(Scratch.Directory);
    }

    /// <summary>TextTokenizer.Load on these bytes, then a round trip through the loaded tokenizer.</summary>
    public static void Tokenizer(byte[] data)
    {
        var tokenizer = TextTokenizer.Load(Scratch.File("tokenizer.json", data));
        var ids = tokenizer.Encode("Hello wörld, 12 tokens ✓");
        tokenizer.Decode(ids);
    }

    /// <summary>Request options: SamplingOptions fields from the bytes (NaN, infinities and extremes included)
    /// through Validate, and the rest of the bytes as a UTF-8 prompt through a tokenizer and back.</summary>
    public static void Options(byte[] data)
    {
        var b = new byte[24];
        data.AsSpan(0, Math.Min(24, data.Length)).CopyTo(b);
        var sampling = new SamplingOptions
        {
            Temperature = BinaryPrimitives.ReadSingleLittleEndian(b),
            TopK = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(4)),
            TopP = BinaryPrimitives.ReadSingleLittleEndian(b.AsSpan(8)),
            RepetitionPenalty = BinaryPrimitives.ReadSingleLittleEndian(b.AsSpan(12)),
            MaxNewTokens = BinaryPrimitives.ReadInt32LittleEndian(b.AsSpan(16)),
            Seed = BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(20)),
        };
        sampling.Validate();
        string prompt = System.Text.Encoding.UTF8.GetString(data.AsSpan(Math.Min(24, data.Length)));
        var ids = Scratch.PromptTokenizer.Encode(prompt);
        Scratch.PromptTokenizer.Decode(ids);
    }
}

/// <summary>Files the path-based targets write their input to: one folder per process and thread.</summary>
internal static class Scratch
{
    [ThreadStatic] private static string? t_directory;

    public static string Directory
    {
        get
        {
            if (t_directory is null)
            {
                t_directory = Path.Combine(Path.GetTempPath(), $"omm-fuzz-{Environment.ProcessId}-{Environment.CurrentManagedThreadId}");
                System.IO.Directory.CreateDirectory(t_directory);
            }
            return t_directory;
        }
    }

    public static string File(string name, byte[] data)
    {
        string path = Path.Combine(Directory, name);
        System.IO.File.WriteAllBytes(path, data);
        return path;
    }

    /// <summary>A valid byte-level BPE tokenizer.json of a few tokens (the manifest target's folder needs one).</summary>
    public static readonly byte[] SmallTokenizer = System.Text.Encoding.UTF8.GetBytes(
        """{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]},"pre_tokenizer":{"type":"ByteLevel"},"added_tokens":[{"id":3,"content":"</s>"}]}""");

    private static readonly Lazy<TextTokenizer> s_prompt = new(() => TextTokenizer.Load(PromptTokenizerPath()));

    /// <summary>The committed tiny-llama tokenizer, for prompts.</summary>
    internal static TextTokenizer PromptTokenizer => s_prompt.Value;

    private static string PromptTokenizerPath()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "models", "tiny-llama", "tokenizer.json");
            if (System.IO.File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException("models/tiny-llama/tokenizer.json not found above " + AppContext.BaseDirectory);
    }
}
