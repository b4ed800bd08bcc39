using OnnxMultimodal.Pipeline;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Tiff;
using SixLabors.ImageSharp.Metadata;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace OnnxMultimodal.Vision;

/// <summary>
/// Decodes an image file and prepares it as Chameleon does: identify the header first (size limits),
/// decode (first frame of an animation), apply EXIF orientation, composite alpha over white, resize
/// the short side to <c>Size</c> with Lanczos-3 (not at all where it is already <c>Size</c>), centre-crop, scale to [-1, 1], NCHW.
/// The resampler is ImageSharp's Lanczos-3; the Python reference uses Pillow's LANCZOS. Both are
/// 3-lobe Lanczos widened when downscaling; the tests bound the difference on the reference images.
/// </summary>
internal static class ImageLoader
{
    /// <summary>Loads a file and returns [1, 3, Size, Size] pixels in [-1, 1], written to the start of
    /// <paramref name="destination"/> where one is given (a pooled buffer: no fresh 3 MB a request), else to a new array.</summary>
    /// <exception cref="InvalidInputException">Missing, unreadable, corrupt, unsupported or over a bound of <see cref="ResourceLimits"/>.</exception>
    public static float[] LoadPixels(string path, ImageLoaderOptions options, string input = "image", float[]? destination = null)
    {
        if (Directory.Exists(path)) throw new InvalidInputException(input, $"is a directory, not an image file: {path}");
        if (!File.Exists(path)) throw new InvalidInputException(input, $"file not found: {path}");
        string named = $"{input} ({Path.GetFileName(path)})";
        Stream stream;
        try
        {
            stream = File.OpenRead(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidInputException(named, "cannot be opened: " + e.Message, e);
        }
        using (stream) return LoadPixels(stream, options, named, destination);
    }

    /// <inheritdoc cref="LoadPixels(string, ImageLoaderOptions, string, float[])"/>
    public static float[] LoadPixels(Stream stream, ImageLoaderOptions options, string input = "image", float[]? destination = null)
    {
        CheckDestination(destination, options.Size);   // the caller's buffer, not the image: before decoding
        using var image = Decode(stream, options, input);
        try
        {
            return ToModelInput(image, options.Size, options.Limits, destination);
        }
        catch (Exception e) when (e is not InvalidInputException)
        {
            throw new InvalidInputException(input, $"cannot be resized ({e.GetType().Name}: {e.Message})", e);
        }
    }

    /// <summary>
    /// Decodes the first frame, with every bound checked on the header before pixel memory is allocated:
    /// file bytes, pixels of a frame (canvas × frames where a decoder cannot stop at the first: animated
    /// WebP), aspect ratio and the resize target for <see cref="ImageLoaderOptions.Size"/>; the decoder's
    /// own buffers are counted against <see cref="DecodeBudget"/>.
    /// </summary>
    /// <exception cref="InvalidInputException">Any failure of the decoder, named by <paramref name="input"/>.</exception>
    public static Image<Rgba32> Decode(Stream stream, ImageLoaderOptions options, string input)
    {
        var limits = options.Limits;
        var data = ReadAll(stream, limits.MaxImageBytes, input);
        if (data.Length == 0) throw new InvalidInputException(input, "the file is empty");
        using var budget = BoundedAllocator.Scope(DecodeBudget(limits), input);
        try
        {
            IImageInfo? info = Image.Identify(s_configuration, data, out _);
            if (info is null) throw new InvalidInputException(input, "not an image in a supported format (PNG, JPEG, GIF, BMP, TGA, TIFF, WebP, PBM)");
            CheckHeader(info.Width, info.Height, WebpFrames(data), options, input);
            var image = Image.Load<Rgba32>(s_configuration, data);
            try
            {
                while (image.Frames.Count > 1) image.Frames.RemoveFrame(1);   // animations: the first frame
                image.Mutate(x => x.AutoOrient());
                LastDecodeBytes = budget.Used;
                return image;
            }
            catch
            {
                image.Dispose();
                throw;
            }
        }
        catch (Exception e) when (e is not InvalidInputException)
        {
            // Every decoder failure (format, truncation, NullReference, DivideByZero, IndexOutOfRange,
            // OutOfMemory on a lying header ...) is the input's fault.
            throw new InvalidInputException(input, $"corrupt or unsupported image data ({e.GetType().Name}: {e.Message})", e);
        }
    }

    /// <summary>Bytes of decoder buffers one image may take: 16 per pixel of <see cref="ResourceLimits.MaxImagePixels"/>
    /// (the RGBA frame is 4, a progressive JPEG's coefficients up to 6, the rest row and colour-conversion
    /// buffers) plus 16 MiB.</summary>
    public static long DecodeBudget(ResourceLimits limits) => limits.MaxImagePixels * 16 + (16L << 20);

    /// <summary>The decoder buffer bytes counted for the last <see cref="Decode"/> on this thread (tests read it).</summary>
    [ThreadStatic] internal static long LastDecodeBytes;

    /// <summary>Short side scaled to <paramref name="size"/> (never below it): the size the image is resized to before the crop.</summary>
    public static (int Width, int Height) ResizeTarget(int width, int height, int size)
    {
        double scale = (double)size / Math.Min(width, height);
        int w = (int)Math.Max(size, Math.Round(width * scale, MidpointRounding.ToEven));
        int h = (int)Math.Max(size, Math.Round(height * scale, MidpointRounding.ToEven));
        return (w, h);
    }

    private static void CheckHeader(int width, int height, int frames, ImageLoaderOptions options, string input)
    {
        var limits = options.Limits;
        if (width <= 0 || height <= 0) throw new InvalidInputException(input, $"the header claims {width}x{height} pixels");
        long pixels = (long)width * height;
        if (pixels > limits.MaxImagePixels)
            throw new InvalidInputException(input, $"{width}x{height} is {pixels:N0} pixels, over the limit of {limits.MaxImagePixels:N0} (ResourceLimits.MaxImagePixels); nothing was decoded");
        if (frames > 1 && pixels * frames > limits.MaxImagePixels)
            throw new InvalidInputException(input, $"{frames} animation frames of {width}x{height} are {pixels * frames:N0} pixels, over the limit of {limits.MaxImagePixels:N0} (ResourceLimits.MaxImagePixels); nothing was decoded");
        double ratio = (double)Math.Max(width, height) / Math.Min(width, height);
        if (ratio > limits.MaxImageAspectRatio)
            throw new InvalidInputException(input, $"{width}x{height} has an aspect ratio of {ratio:0.#}:1, over the limit of {limits.MaxImageAspectRatio:0.#}:1 (ResourceLimits.MaxImageAspectRatio); nothing was decoded");
        CheckResizeTarget(width, height, options.Size, limits, input);
    }

    private static void CheckResizeTarget(int width, int height, int size, ResourceLimits limits, string input)
    {
        if (size <= 0) throw new InvalidInputException(input, $"the model's image size is {size}");
        var (w, h) = ResizeTarget(width, height, size);
        if ((long)w * h > limits.MaxImagePixels)
            throw new InvalidInputException(input, $"{width}x{height} would be resized to {w}x{h}, {(long)w * h:N0} pixels, over the limit of {limits.MaxImagePixels:N0} (ResourceLimits.MaxImagePixels)");
    }

    /// <summary>Frames of an animated WebP (its ANMF chunks, counted from the RIFF headers without decoding);
    /// 1 for anything else. ImageSharp decodes every WebP frame, so they count against the pixel bound.</summary>
    internal static int WebpFrames(ReadOnlySpan<byte> data)
    {
        if (data.Length < 12 || !data[..4].SequenceEqual("RIFF"u8) || !data[8..12].SequenceEqual("WEBP"u8)) return 1;
        int frames = 0;
        long at = 12;
        while (at + 8 <= data.Length)
        {
            var id = data.Slice((int)at, 4);
            uint size = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(data.Slice((int)at + 4, 4));
            if (id.SequenceEqual("ANMF"u8)) frames++;
            at += 8 + (long)size + (size & 1);
        }
        return Math.Max(1, frames);
    }

    private static readonly Configuration s_configuration = CreateConfiguration();

    /// <summary>ImageSharp's formats with the first frame only for GIF and TIFF (an animation's other frames are
    /// never decoded) and every buffer counted by <see cref="BoundedAllocator"/>.</summary>
    private static Configuration CreateConfiguration()
    {
        var c = Configuration.Default.Clone();
        c.MemoryAllocator = new BoundedAllocator();
        c.ImageFormatsManager.SetDecoder(GifFormat.Instance, new GifDecoder { DecodingMode = FrameDecodingMode.First });
        c.ImageFormatsManager.SetDecoder(TiffFormat.Instance, new TiffDecoder { DecodingMode = FrameDecodingMode.First });
        return c;
    }

    /// <summary>Alpha over white, short side to <paramref name="size"/>, centre crop, [-1, 1] NCHW ([1, 3, size, size]).
    /// An image whose short side is already <paramref name="size"/> is not resampled (Pillow's resize returns a copy at
    /// the same size too); the crop reads its window in place.</summary>
    /// <param name="destination">Where to write them (its first 3 × size² values; longer is allowed), or null for a new array.</param>
    /// <exception cref="InvalidInputException">The resize target is over <see cref="ResourceLimits.MaxImagePixels"/>.</exception>
    public static float[] ToModelInput(Image<Rgba32> image, int size, ResourceLimits? limits = null, float[]? destination = null)
    {
        CheckDestination(destination, size);   // the caller's buffer, before any work on the image
        CheckResizeTarget(image.Width, image.Height, size, limits ?? ResourceLimits.Default, "image");
        CompositeOverWhite(image);
        var (w, h) = ResizeTarget(image.Width, image.Height, size);
        if (w != image.Width || h != image.Height)
            image.Mutate(x => x.Resize(new ResizeOptions { Size = new Size(w, h), Mode = ResizeMode.Stretch, Sampler = KnownResamplers.Lanczos3 }));
        int left = (w - size) / 2, top = (h - size) / 2;
        var pixels = destination ?? new float[3 * size * size];   // [1, 3, H, W]
        int plane = size * size;
        var scale = s_unitScale;
        image.ProcessPixelRows(rows =>
        {
            for (int y = 0; y < size; y++)
            {
                var row = rows.GetRowSpan(top + y).Slice(left, size);
                var r = pixels.AsSpan(y * size, size);
                var g = pixels.AsSpan(plane + y * size, size);
                var b = pixels.AsSpan(2 * plane + y * size, size);
                for (int x = 0; x < row.Length; x++)
                {
                    var p = row[x];
                    r[x] = scale[p.R];
                    g[x] = scale[p.G];
                    b[x] = scale[p.B];
                }
            }
        });
        return pixels;
    }

    private static void CheckDestination(float[]? destination, int size)
    {
        if (destination is not null && destination.Length < 3L * size * size)
            throw new ArgumentException($"{destination.Length} values, fewer than 3x{size}x{size}", nameof(destination));
    }

    /// <summary>Each 8-bit level as the model takes it, <c>level / 127.5 - 1</c> in float arithmetic.</summary>
    private static readonly float[] s_unitScale = Enumerable.Range(0, 256).Select(v => v / 127.5f - 1f).ToArray();

    private static void CompositeOverWhite(Image<Rgba32> image)
    {
        image.ProcessPixelRows(rows =>
        {
            for (int y = 0; y < rows.Height; y++)
            {
                foreach (ref var p in rows.GetRowSpan(y))
                {
                    if (p.A == 255) continue;
                    int a = p.A, inv = 255 - a;
                    p = new Rgba32((byte)((p.R * a + 255 * inv + 127) / 255), (byte)((p.G * a + 255 * inv + 127) / 255),
                                   (byte)((p.B * a + 255 * inv + 127) / 255), 255);
                }
            }
        });
    }

    private static byte[] ReadAll(Stream stream, long maxBytes, string input)
    {
        try
        {
            if (stream.CanSeek && stream.Length - stream.Position > maxBytes)
                throw new InvalidInputException(input, $"{stream.Length:N0} bytes is over the limit of {maxBytes:N0} (ResourceLimits.MaxImageBytes)");
            using var ms = new MemoryStream();
            var buffer = new byte[81920];
            int n;
            while ((n = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                if (ms.Length + n > maxBytes) throw new InvalidInputException(input, $"more than {maxBytes:N0} bytes");
                ms.Write(buffer, 0, n);
            }
            return ms.ToArray();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw new InvalidInputException(input, "cannot be read: " + e.Message, e);
        }
    }
}
