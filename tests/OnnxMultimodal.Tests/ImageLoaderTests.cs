using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Vision;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace OnnxMultimodal.Tests;

/// <summary>Bad and unusual image files: each gets a clear error or a sensible result, and the host keeps working.</summary>
public class ImageLoaderTests
{
    private static readonly ImageLoaderOptions Options = new() { Size = 64 };
    private string _dir = "";

    [SetUp]
    public void Dir()
    {
        _dir = Path.Combine(Path.GetTempPath(), "omm-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    private string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] Encode(Image image, Action<Image, Stream> save)
    {
        using var ms = new MemoryStream();
        save(image, ms);
        return ms.ToArray();
    }

    private static Image<Rgba32> Sample(int w = 40, int h = 30)
    {
        var img = new Image<Rgba32>(w, h);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                img[x, y] = new Rgba32((byte)(x * 6), (byte)(y * 8), 90, 255);
        return img;
    }

    private static InvalidInputException Refused(string path)
    {
        var e = Assert.Throws<InvalidInputException>(() => ImageLoader.LoadPixels(path, Options))!;
        Assert.That(e.Message, Does.Contain(Path.GetFileName(path)), "the error names the file");
        return e;
    }

    [Test]
    public void Zero_byte_file() => Assert.That(Refused(Write("empty.png", [])).Message, Does.Contain("empty"));

    [Test]
    public void Missing_file() => Assert.That(Assert.Throws<InvalidInputException>(() => ImageLoader.LoadPixels(Path.Combine(_dir, "nope.png"), Options))!.Message, Does.Contain("not found"));

    [Test]
    public void Text_file_named_png() => Assert.That(Refused(Write("notes.png", "just some text, not an image\n"u8.ToArray())).Message, Does.Contain("not an image"));

    [Test]
    public void Truncated_png_and_jpeg()
    {
        using var img = Sample(64, 64);
        var png = Encode(img, (i, s) => i.SaveAsPng(s));
        var jpg = Encode(img, (i, s) => i.SaveAsJpeg(s));
        Refused(Write("cut.png", png[..(png.Length / 2)]));
        Refused(Write("cut.jpg", jpg[..(jpg.Length / 3)]));
    }

    [Test]
    public void Header_claiming_30000_by_30000_is_refused_before_decoding()
    {
        string path = Write("huge.png", PngHeaderOnly(30000, 30000));
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Refused(path);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.That(e.Message, Does.Contain("30000x30000"));
        Assert.That(allocated, Is.LessThan(1 << 20), "no pixel buffer (900 megapixels) was allocated");
    }

    [Test]
    public void Sixteen_bit_png_loads()
    {
        using var img = new Image<Rgba64>(20, 20, new Rgba64(65535, 0, 0, 65535));
        var path = Write("deep.png", Encode(img, (i, s) => i.SaveAsPng(s, new PngEncoder { BitDepth = PngBitDepth.Bit16, ColorType = PngColorType.RgbWithAlpha })));
        var px = ImageLoader.LoadPixels(path, Options);
        Assert.That(px[0], Is.EqualTo(1f).Within(1e-6), "red");
        Assert.That(px[64 * 64], Is.EqualTo(-1f).Within(1e-6), "no green");
    }

    [Test]
    public void Animated_gif_uses_the_first_frame()
    {
        using var gif = new Image<Rgba32>(16, 16, new Rgba32(0, 0, 255, 255));
        using var second = new Image<Rgba32>(16, 16, new Rgba32(255, 255, 0, 255));
        gif.Frames.AddFrame(second.Frames.RootFrame);
        var path = Write("anim.gif", Encode(gif, (i, s) => i.SaveAsGif(s, new GifEncoder())));
        var px = ImageLoader.LoadPixels(path, Options);
        Assert.That(px[2 * 64 * 64], Is.GreaterThan(0.9f), "blue plane of the first frame");
        Assert.That(px[0], Is.LessThan(-0.9f));
    }

    [Test]
    public void Cmyk_jpeg_is_converted_to_rgb()
    {
        // Fixtures/cmyk.jpg: Pillow, CMYK (0, 255, 255, 0) = red, 48x40. ImageSharp decodes CMYK/YCCK JPEG.
        string path = Path.Combine(TestData.RepoRoot, "tests", "OnnxMultimodal.Tests", "Fixtures", "cmyk.jpg");
        var px = ImageLoader.LoadPixels(path, Options);
        Assert.That(px[0], Is.GreaterThan(0.5f), "red");
        Assert.That(px[64 * 64], Is.LessThan(-0.5f), "no green");
    }

    [Test]
    public void An_image_whose_short_side_is_the_model_size_gives_its_centre_window_unchanged()
    {
        // 80x64 at size 64: Pillow's resize returns a copy at the same size (ImageSharp's Lanczos too; the loader skips it),
        // so the model sees the centre 64x64 window's own levels, each mapped to level / 127.5 - 1.
        using var img = new Image<Rgba32>(80, 64);
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 80; x++)
                img[x, y] = new Rgba32((byte)(x * 3), (byte)(y * 4 + 1), (byte)((x * 7 + y * 5) & 255), 255);
        var px = ImageLoader.LoadPixels(Write("exact.png", Encode(img, (i, s) => i.SaveAsPng(s))), Options);
        Assert.That(px, Has.Length.EqualTo(3 * 64 * 64));
        for (int y = 0; y < 64; y++)
            for (int x = 0; x < 64; x++)
            {
                var p = img[x + 8, y];
                int i = y * 64 + x;
                Assert.That((px[i], px[4096 + i], px[8192 + i]), Is.EqualTo((p.R / 127.5f - 1f, p.G / 127.5f - 1f, p.B / 127.5f - 1f)), $"pixel ({x}, {y})");
            }
    }

    [Test]
    public void A_given_buffer_gets_the_same_pixels_as_a_new_array_and_keeps_its_tail()
    {
        using var img = Sample(90, 70);   // resampled: short side 70 -> 64
        string path = Write("pooled.png", Encode(img, (i, s) => i.SaveAsPng(s)));
        var fresh = ImageLoader.LoadPixels(path, Options);
        var buffer = Enumerable.Repeat(float.NaN, 3 * 64 * 64 + 100).ToArray();   // stale values from an earlier request
        Assert.That(ImageLoader.LoadPixels(path, Options, destination: buffer), Is.SameAs(buffer));
        Assert.That(buffer.Take(fresh.Length), Is.EqualTo(fresh), "every value of the image is written");
        Assert.That(buffer.Skip(fresh.Length), Has.All.NaN, "nothing past it");
        Assert.Throws<ArgumentException>(() => ImageLoader.LoadPixels(path, Options, destination: new float[3 * 64 * 64 - 1]));
    }

    [Test]
    public void Transparent_pixels_become_white()
    {
        using var img = new Image<Rgba32>(8, 8, new Rgba32(0, 0, 0, 0));
        var px = ImageLoader.LoadPixels(Write("clear.png", Encode(img, (i, s) => i.SaveAsPng(s))), Options);
        Assert.That(px.All(v => Math.Abs(v - 1f) < 1e-6), "fully transparent over white is white");
    }

    [Test]
    public void Exif_orientation_is_applied()
    {
        using var img = Sample(40, 20);   // landscape; orientation 6 = rotate 90 degrees clockwise when shown
        img.Metadata.ExifProfile = new SixLabors.ImageSharp.Metadata.Profiles.Exif.ExifProfile();
        img.Metadata.ExifProfile.SetValue(SixLabors.ImageSharp.Metadata.Profiles.Exif.ExifTag.Orientation, (ushort)6);
        var path = Write("rotated.jpg", Encode(img, (i, s) => i.SaveAsJpeg(s)));
        using var stream = File.OpenRead(path);
        using var decoded = ImageLoader.Decode(stream, Options, "rotated.jpg");
        Assert.That((decoded.Width, decoded.Height), Is.EqualTo((20, 40)));
    }

    [Test]
    public async Task A_bad_image_does_not_break_the_pipeline()
    {
        await using var p = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-chameleon"));
        var bad = new GenerationRequest([Part.Image(Write("bad.png", "nope"u8.ToArray())), Part.Text("hi")]);
        var e = Assert.ThrowsAsync<InvalidInputException>(async () => await p.GenerateTextAsync(bad))!;
        Assert.That(e.Input, Does.StartWith("parts[0]"));
        var good = new GenerationRequest([Part.Image(Path.Combine(TestData.Model("tiny-chameleon"), "reference", "shapes.png")), Part.Text("A photo of")])
            { Sampling = new Generation.SamplingOptions { MaxNewTokens = 4, IgnoreStopTokens = true } };
        Assert.That((await p.GenerateTextAsync(good)).Stats.GeneratedTokens, Is.EqualTo(4));
    }

    /// <summary>A PNG whose IHDR claims the given size, followed by an empty IDAT and IEND.</summary>
    internal static byte[] PngHeaderOnly(int width, int height)
    {
        var ms = new MemoryStream();
        ms.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8; ihdr[9] = 6;   // 8-bit RGBA
        Chunk(ms, "IHDR", ihdr);
        Chunk(ms, "IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        Chunk(ms, "IEND", []);
        return ms.ToArray();
    }

    private static void Chunk(Stream s, string type, byte[] data)
    {
        var len = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(len, data.Length);
        s.Write(len);
        var body = System.Text.Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        s.Write(body);
        var crc = new byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(crc, Crc32(body));
        s.Write(crc);
    }

    private static uint Crc32(byte[] data)
    {
        uint c = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            c ^= b;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
        }
        return ~c;
    }
}
