using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Vision;

/// <summary>How images are turned into model input. Immutable. The bounds live in
/// <see cref="ResourceLimits"/>; <see cref="MaxPixels"/> and <see cref="MaxBytes"/> are shorthands for them.</summary>
public sealed record ImageLoaderOptions
{
    /// <summary>Side of the square the model sees.</summary>
    public int Size { get; init; } = 512;

    /// <summary>The bounds checked on the header before any pixel memory is allocated.</summary>
    public ResourceLimits Limits { get; init; } = ResourceLimits.Default;

    /// <summary>Images with more pixels than this are refused before any pixel memory is allocated
    /// (<see cref="ResourceLimits.MaxImagePixels"/>).</summary>
    public long MaxPixels
    {
        get => Limits.MaxImagePixels;
        init => Limits = Limits with { MaxImagePixels = value };
    }

    /// <summary>Largest encoded file accepted (<see cref="ResourceLimits.MaxImageBytes"/>).</summary>
    public long MaxBytes
    {
        get => Limits.MaxImageBytes;
        init => Limits = Limits with { MaxImageBytes = value };
    }
}
