namespace OnnxMultimodal.Pipeline;

/// <summary>What a loaded model is and which modalities it takes and gives, read from its <c>multimodal.json</c>.</summary>
public sealed record ModelInfo
{
    /// <summary>The model's name from its manifest.</summary>
    public required string Name { get; init; }

    /// <summary>The model family: <c>llama</c> (text), <c>chameleon</c> (image and text, early fusion) or <c>seamless</c> (speech to text).</summary>
    public required string Family { get; init; }

    /// <summary>The decoder's weight precision as exported: <c>fp32</c>, <c>fp16</c> or <c>int4</c>.</summary>
    public required string Precision { get; init; }

    /// <summary>The longest sequence (prompt plus generated tokens) the decoder accepts.</summary>
    public required int ContextLength { get; init; }

    /// <summary>True when image parts (<see cref="Part.Image(string)"/>) can be sent.</summary>
    public bool AcceptsImages { get; init; }

    /// <summary>True when audio parts (<see cref="Part.Audio(string)"/>) can be sent.</summary>
    public bool AcceptsAudio { get; init; }

    /// <summary>True when <see cref="OutputModality.Image"/> requests can be made.</summary>
    public bool ProducesImages { get; init; }

    internal static ModelInfo From(ModelPackage package) => new()
    {
        Name = package.Manifest.Name,
        Family = package.Manifest.Family,
        Precision = package.Manifest.Precision,
        ContextLength = package.Decoder.ContextLength,
        AcceptsImages = package.Has("image_encoder"),
        AcceptsAudio = package.Has("speech_encoder"),
        ProducesImages = package.Has("image_decoder") && package.Manifest.Image is not null,
    };
}
