using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace OnnxMultimodal.Vision;

/// <summary>How images are turned into model input. Immutable.</summary>
public sealed record ImageLoaderOptions
{
    /// <summary>Side of the square the model sees.</summary>
    public int Size { get; init; } = 512;

    /// <summary>Images with more pixels than this are refused before any pixel memory is allocated.</summary>
    public long MaxPixels { get; init; } = 40_000_000;

    /// <summary>Largest encoded file accepted.</summary>
    public long MaxBytes { get; init; } = 64L << 20;
}

/// <summary>
/// Decodes an image file and prepares it as Chameleon does: identify the header first (size limits),
/// decode (first frame of an animation), apply EXIF orientation, composite alpha over white, resize
/// the short side to <c>Size</c> with Lanczos-3, centre-crop, scale to [-1, 1], NCHW.
/// The resampler is ImageSharp's Lanczos-3; the Python reference uses Pillow's LANCZOS. Both are
/// 3-lobe Lanczos widened when downscaling; the tests bound the difference on the reference images.
/// </summary>
internal static class ImageLoader
{
    /// <summary>Loads a file and returns [1, 3, Size, Size] pixels in [-1, 1].</summary>
    /// <exception cref="InvalidInputException">Missing, unreadable, corrupt, unsupported or too large.</exception>
    public static float[] LoadPixels(string path, ImageLoaderOptions options, string input = "image")
    {
        if (!File.Exists(path)) throw new InvalidInputException(input, $"file not found: {path}");
        using var stream = File.OpenRead(path);
        return LoadPixels(stream, options, $"{input} ({Path.GetFileName(path)})");
    }

    /// <inheritdoc cref="LoadPixels(string, ImageLoaderOptions, string)"/>
    public static float[] LoadPixels(Stream stream, ImageLoaderOptions options, string input = "image")
    {
        using var image = Decode(stream, options, input);
        return ToModelInput(image, options.Size);
    }

    /// <summary>Decodes with the size checks done on the header alone.</summary>
    public static Image<Rgba32> Decode(Stream stream, ImageLoaderOptions options, string input)
    {
        var data = ReadAll(stream, options.MaxBytes, input);
        if (data.Length == 0) throw new InvalidInputException(input, "the file is empty");
        IImageInfo? info;
        try
        {
            info = Image.Identify(data, out _);
        }
        catch (Exception e) when (e is ImageFormatException or NotSupportedException or InvalidOperationException or ArgumentException)
        {
            throw new InvalidInputException(input, $"not a readable image ({e.Message})", e);
        }
        if (info is null) throw new InvalidInputException(input, "not an image in a supported format (PNG, JPEG, GIF, BMP, TGA, TIFF, WebP, PBM)");
        long pixels = (long)info.Width * info.Height;
        if (info.Width <= 0 || info.Height <= 0) throw new InvalidInputException(input, $"the header claims {info.Width}x{info.Height} pixels");
        if (pixels > options.MaxPixels)
            throw new InvalidInputException(input, $"{info.Width}x{info.Height} is {pixels:N0} pixels, over the limit of {options.MaxPixels:N0}; nothing was decoded");
        try
        {
            var image = Image.Load<Rgba32>(data);
            if (image.Frames.Count > 1)
                while (image.Frames.Count > 1) image.Frames.RemoveFrame(1);   // animations: the first frame
            image.Mutate(x => x.AutoOrient());
            return image;
        }
        catch (Exception e) when (e is ImageFormatException or NotSupportedException or InvalidOperationException or ArgumentException or IndexOutOfRangeException)
        {
            throw new InvalidInputException(input, $"corrupt or truncated image data ({e.Message})", e);
        }
    }

    /// <summary>Alpha over white, short side to <paramref name="size"/>, centre crop, [-1, 1] NCHW ([1, 3, size, size]).</summary>
    public static float[] ToModelInput(Image<Rgba32> image, int size)
    {
        CompositeOverWhite(image);
        double scale = (double)size / Math.Min(image.Width, image.Height);
        int w = Math.Max(size, (int)Math.Round(image.Width * scale, MidpointRounding.ToEven));
        int h = Math.Max(size, (int)Math.Round(image.Height * scale, MidpointRounding.ToEven));
        int left = (w - size) / 2, top = (h - size) / 2;
        image.Mutate(x => x
            .Resize(new ResizeOptions { Size = new Size(w, h), Mode = ResizeMode.Stretch, Sampler = KnownResamplers.Lanczos3 })
            .Crop(new Rectangle(left, top, size, size)));
        var pixels = new float[3 * size * size];   // [1, 3, H, W]
        int plane = size * size;
        image.ProcessPixelRows(rows =>
        {
            for (int y = 0; y < size; y++)
            {
                var row = rows.GetRowSpan(y);
                for (int x = 0; x < size; x++)
                {
                    int i = y * size + x;
                    pixels[i] = row[x].R / 127.5f - 1f;
                    pixels[plane + i] = row[x].G / 127.5f - 1f;
                    pixels[2 * plane + i] = row[x].B / 127.5f - 1f;
                }
            }
        });
        return pixels;
    }

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
                throw new InvalidInputException(input, $"{stream.Length:N0} bytes is over the limit of {maxBytes:N0}");
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
        catch (IOException e)
        {
            throw new InvalidInputException(input, "cannot be read: " + e.Message, e);
        }
    }
}
