using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace OnnxMultimodal.Tests.ShapesWorld;

/// <summary>What <see cref="ShapeJudge"/> reads from a picture. Colour and Shape are null when fewer than
/// 8 pixels are nearer a shape colour than the background.</summary>
internal sealed record Judgement(string Background, string? Colour, string? Shape, double Fill, double Bottom, int Pixels);

/// <summary>
/// The shapes world's pixel judge, ported from <c>onnx-export/train/shapes_world.py</c> (<c>judge</c>): no
/// model involved. Background: the palette colour nearest the per-channel median of the border pixels.
/// Object: pixels nearer a shape colour than the background (by a factor of 2 in squared distance); the
/// most frequent colour wins. Shape from that colour's pixels (stray pixels with fewer than two
/// 4-neighbours dropped): fill ratio of the bounding box above 0.9 = square, above 0.7 = circle; below
/// that, the share of pixels in the box's lower half tells an upright triangle (above 0.6) from a star.
/// </summary>
internal static class ShapeJudge
{
    public static readonly string[] Shapes = ["circle", "square", "triangle", "star"];

    /// <summary>Palette of the renderer, in its order (ties go to the first, as numpy's argmin).</summary>
    public static readonly (string Name, float R, float G, float B)[] Colours =
    [
        ("red", 220, 30, 30), ("orange", 255, 140, 0), ("yellow", 240, 220, 20),
        ("green", 30, 170, 50), ("blue", 30, 70, 230), ("purple", 140, 50, 190),
    ];

    public static readonly (string Name, float R, float G, float B)[] Backgrounds =
    [
        ("white", 255, 255, 255), ("black", 0, 0, 0), ("grey", 128, 128, 128),
    ];

    /// <summary>Judges a PNG (or any format ImageSharp reads).</summary>
    public static Judgement JudgePng(byte[] encoded)
    {
        using var image = Image.Load<Rgb24>(encoded);
        return Judge(Rgb(image), image.Width, image.Height);
    }

    /// <summary>Judges an image file.</summary>
    public static Judgement JudgeFile(string path) => JudgePng(File.ReadAllBytes(path));

    /// <summary>Row-major RGB bytes of an image.</summary>
    public static byte[] Rgb(Image<Rgb24> image)
    {
        var rgb = new byte[image.Width * image.Height * 3];
        image.CopyPixelDataTo(rgb);
        return rgb;
    }

    /// <summary>Judges row-major RGB bytes (width x height x 3).</summary>
    public static Judgement Judge(byte[] rgb, int width, int height)
    {
        if (rgb.Length != width * height * 3) throw new ArgumentException($"{rgb.Length} bytes for {width}x{height} RGB", nameof(rgb));
        string background = Backgrounds[Nearest(BorderMedian(rgb, width, height), Backgrounds).Index].Name;
        var bg = Backgrounds.First(b => b.Name == background);
        int n = width * height;
        var colourOf = new int[n];
        var foreground = new bool[n];
        int foregroundCount = 0;
        var counts = new int[Colours.Length];
        for (int i = 0; i < n; i++)
        {
            var px = (rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]);
            var (index, distance) = Nearest(px, Colours);
            colourOf[i] = index;
            float bgDistance = Distance(px, bg);
            if (distance < bgDistance * 0.5f)
            {
                foreground[i] = true;
                foregroundCount++;
                counts[index]++;
            }
        }
        if (foregroundCount < 8) return new Judgement(background, null, null, 0, 0, foregroundCount);
        int winner = Array.IndexOf(counts, counts.Max());
        var mask = new bool[n];
        for (int i = 0; i < n; i++) mask[i] = foreground[i] && colourOf[i] == winner;
        // Stray pixels: keep those with at least two 4-neighbours in the mask, unless fewer than 8 remain.
        var core = new bool[n];
        int coreCount = 0;
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                int i = y * width + x;
                if (!mask[i]) continue;
                int neighbours = (y > 0 && mask[i - width] ? 1 : 0) + (y < height - 1 && mask[i + width] ? 1 : 0)
                               + (x > 0 && mask[i - 1] ? 1 : 0) + (x < width - 1 && mask[i + 1] ? 1 : 0);
                if (neighbours >= 2) { core[i] = true; coreCount++; }
            }
        if (coreCount >= 8) mask = core;
        int minX = int.MaxValue, maxX = -1, minY = int.MaxValue, maxY = -1, count = 0;
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                if (mask[y * width + x])
                {
                    count++;
                    minX = Math.Min(minX, x); maxX = Math.Max(maxX, x);
                    minY = Math.Min(minY, y); maxY = Math.Max(maxY, y);
                }
        int boxHeight = maxY - minY + 1;
        double fill = count / (double)((maxX - minX + 1) * boxHeight);
        double lowerFrom = maxY + 1 - boxHeight / 2.0;   // rows at or below this are the lower half (as numpy's float compare)
        int lower = 0;
        for (int y = 0; y < height; y++)
            if (y >= lowerFrom)
                for (int x = 0; x < width; x++)
                    if (mask[y * width + x]) lower++;
        double bottom = lower / (double)count;
        string shape = fill > 0.9 ? "square" : fill > 0.7 ? "circle" : bottom > 0.6 ? "triangle" : "star";
        return new Judgement(background, Colours[winner].Name, shape, fill, bottom, count);
    }

    private static (float, float, float) BorderMedian(byte[] rgb, int width, int height)
    {
        var channels = new List<float>[] { new(), new(), new() };
        void Add(int x, int y)
        {
            for (int c = 0; c < 3; c++) channels[c].Add(rgb[3 * (y * width + x) + c]);
        }
        for (int x = 0; x < width; x++) { Add(x, 0); Add(x, height - 1); }
        for (int y = 0; y < height; y++) { Add(0, y); Add(width - 1, y); }
        float Median(List<float> v)
        {
            v.Sort();
            int m = v.Count / 2;
            return v.Count % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2f;
        }
        return (Median(channels[0]), Median(channels[1]), Median(channels[2]));
    }

    private static float Distance((float R, float G, float B) p, (string Name, float R, float G, float B) c)
    {
        float dr = p.R - c.R, dg = p.G - c.G, db = p.B - c.B;
        return dr * dr + dg * dg + db * db;
    }

    private static (int Index, float Distance) Nearest((float R, float G, float B) p, (string Name, float R, float G, float B)[] table)
    {
        int best = 0;
        float bestDistance = float.MaxValue;
        for (int k = 0; k < table.Length; k++)
        {
            float d = Distance(p, table[k]);
            if (d < bestDistance) { best = k; bestDistance = d; }
        }
        return (best, bestDistance);
    }

    /// <summary>The first shape word and the first colour word of an English caption (shapes_world.parse_caption).</summary>
    public static (string? Shape, string? Colour) ParseCaption(string text)
    {
        var words = text.ToLowerInvariant().Replace(",", " ").Replace(".", " ").Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return (words.FirstOrDefault(w => Shapes.Contains(w)), words.FirstOrDefault(w => Colours.Any(c => c.Name == w)));
    }
}
