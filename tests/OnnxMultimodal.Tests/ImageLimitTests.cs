using System.Buffers.Binary;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Vision;

namespace OnnxMultimodal.Tests;

/// <summary>Decompression bombs and decoder failures (issue 13, findings 2, 5 and 7): every bound of
/// <see cref="ResourceLimits"/> is checked before the pixel memory it guards, and every decoder failure
/// leaves as an <see cref="InvalidInputException"/> naming the input.</summary>
public class ImageLimitTests
{
    private static readonly ImageLoaderOptions Options = new() { Size = 64 };

    private static InvalidInputException Refused(byte[] bytes, ImageLoaderOptions? options = null, string name = "bomb")
    {
        var e = Assert.Throws<InvalidInputException>(() => ImageLoader.LoadPixels(new MemoryStream(bytes), options ?? Options, name))!;
        Assert.That(e.Input, Is.EqualTo(name), "the error names the input");
        return e;
    }

    /// <summary>A GIF with a <paramref name="width"/>×<paramref name="height"/> canvas and <paramref name="frames"/>
    /// 1×1 frames: a few bytes a frame, a full canvas a frame for a decoder that composes them all.</summary>
    internal static byte[] GifBomb(int width, int height, int frames)
    {
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        w.Write("GIF89a"u8);
        w.Write((ushort)width); w.Write((ushort)height);
        w.Write((byte)0x80); w.Write((byte)0); w.Write((byte)0);      // global colour table of 2 entries
        w.Write(new byte[] { 0, 0, 255, 255, 255, 0 });
        for (int f = 0; f < frames; f++)
        {
            w.Write(new byte[] { 0x21, 0xF9, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00 });   // graphic control: 10 ms
            w.Write((byte)0x2C); w.Write((ushort)(f % width)); w.Write((ushort)0); w.Write((ushort)1); w.Write((ushort)1); w.Write((byte)0);
            w.Write(new byte[] { 0x02, 0x02, 0x44, 0x01, 0x00 });   // LZW: clear, index 0, end
        }
        w.Write((byte)0x3B);
        return ms.ToArray();
    }

    [Test]
    public void Gif_frame_bomb_decodes_only_the_first_frame()
    {
        // 3000x3000 canvas, 60 frames: 36 MB a composed frame, 2.2 GB for all of them (the 6000²×400 took >16 GB).
        var gif = GifBomb(3000, 3000, 60);
        Assert.That(gif.Length, Is.LessThan(2000));
        using var image = ImageLoader.Decode(new MemoryStream(gif), Options, "bomb.gif");
        Assert.That((image.Width, image.Height, image.Frames.Count), Is.EqualTo((3000, 3000, 1)));
        TestContext.Out.WriteLine($"decoder buffers: {ImageLoader.LastDecodeBytes / 1e6:F1} MB");
        Assert.That(ImageLoader.LastDecodeBytes, Is.LessThan(3 * 36_000_000L), "one canvas of buffers, not sixty");
        Assert.That(image[0, 0].B, Is.EqualTo(255), "the first frame's pixel");
    }

    [Test]
    public void Decoder_buffers_are_held_to_the_budget()
    {
        // With a 1M-pixel bound the budget is 16 MB + 16 MiB; a 3000x3000 canvas is refused on its header,
        // and the budget itself refuses a decoder that asks for more than it (a 2000x2000 frame with a tiny bound).
        var small = Options with { Limits = ResourceLimits.Default with { MaxImagePixels = 1_000_000 } };
        Assert.That(Refused(GifBomb(3000, 3000, 2), small).Message, Does.Contain("3000x3000").And.Contain("MaxImagePixels"));
        Assert.That(ImageLoader.DecodeBudget(ResourceLimits.Default), Is.EqualTo(40_000_000L * 16 + (16 << 20)));
    }

    [Test]
    public void Tall_png_is_refused_on_its_aspect_ratio_before_decoding()
    {
        // The 1 x 262,000 PNG: 262k pixels pass the pixel bound, but 64 wide it would be 64 x 16.8M.
        var png = ImageLoaderTests.PngHeaderOnly(1, 262_000);
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Refused(png);
        Assert.That(e.Message, Does.Contain("1x262000").And.Contain("aspect ratio").And.Contain("MaxImageAspectRatio"));
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(1 << 20), "nothing decoded or resized");
    }

    [Test]
    public void Resize_target_over_the_pixel_bound_is_refused()
    {
        // 100x3000 (ratio 30, 300k pixels) for a 4096-pixel model: 4096 x 122,880 = 503M pixels after resizing.
        var e = Refused(ImageLoaderTests.PngHeaderOnly(100, 3000), Options with { Size = 4096 });
        Assert.That(e.Message, Does.Contain("would be resized to 4096x122880"));
        Assert.That(ImageLoader.ResizeTarget(100, 3000, 64), Is.EqualTo((64, 1920)));
    }

    [Test]
    public void Bmp_with_zero_bits_per_pixel_is_invalid_input()
    {
        // Was DivideByZeroException from the BMP decoder.
        var bmp = new byte[54 + 16];
        "BM"u8.CopyTo(bmp);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(2), bmp.Length);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(10), 54);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(14), 40);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(18), 4);
        BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(22), 4);
        BinaryPrimitives.WriteInt16LittleEndian(bmp.AsSpan(26), 1);
        BinaryPrimitives.WriteInt16LittleEndian(bmp.AsSpan(28), 0);   // bits per pixel
        var e = Refused(bmp, name: "zero.bmp");
        TestContext.Out.WriteLine(e.Message);
    }

    [Test]
    public void Animated_webp_frames_count_against_the_pixel_bound()
    {
        // VP8X canvas 4000x4000 (16M pixels, under the bound) with 3 ANMF chunks: 48M pixels decoded.
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        w.Write("RIFF"u8); w.Write(0); w.Write("WEBP"u8);
        w.Write("VP8X"u8); w.Write(10); w.Write((byte)0x02); w.Write(new byte[3]);
        w.Write(new byte[] { (4000 - 1) & 0xFF, (4000 - 1) >> 8, 0, (4000 - 1) & 0xFF, (4000 - 1) >> 8, 0 });
        w.Write("ANIM"u8); w.Write(6); w.Write(new byte[6]);
        for (int f = 0; f < 3; f++) { w.Write("ANMF"u8); w.Write(16); w.Write(new byte[16]); }
        var bytes = ms.ToArray();
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), bytes.Length - 8);
        Assert.That(ImageLoader.WebpFrames(bytes), Is.EqualTo(3));
        Assert.That(ImageLoader.WebpFrames(ImageLoaderTests.PngHeaderOnly(4, 4)), Is.EqualTo(1));
        Refused(bytes, name: "anim.webp");   // refused on the frames, or by the decoder on the empty frames: never decoded whole
    }

    [Test]
    public async Task The_pipeline_applies_its_limits_to_image_parts()
    {
        var options = new PipelineOptions { Limits = ResourceLimits.Default with { MaxImageAspectRatio = 2 } };
        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-chameleon"), options);
        using var wide = new SixLabors.ImageSharp.Image<SixLabors.ImageSharp.PixelFormats.Rgba32>(30, 10);
        using var ms = new MemoryStream();
        SixLabors.ImageSharp.ImageExtensions.SaveAsPng(wide, ms);
        var request = new GenerationRequest([Part.Image(ms.ToArray()), Part.Text("hi")]);
        var e = Assert.ThrowsAsync<InvalidInputException>(async () => await pipeline.GenerateTextAsync(request))!;
        Assert.That(e.Input, Is.EqualTo("parts[0]"));
        Assert.That(e.Message, Does.Contain("30x10 has an aspect ratio of 3:1, over the limit of 2:1"));
    }

    [Test]
    public void Pipeline_options_forward_image_and_audio_bounds_to_the_limits()
    {
        var options = new PipelineOptions { Images = new ImageLoaderOptions { MaxPixels = 123 }, Audio = new Speech.AudioOptions { MaxSeconds = 7 } };
        Assert.That((options.Limits.MaxImagePixels, options.Limits.MaxAudioSeconds), Is.EqualTo((123L, 7.0)));
        Assert.That((options.Images.MaxPixels, options.Audio.MaxSeconds), Is.EqualTo((123L, 7.0)));
    }
}
