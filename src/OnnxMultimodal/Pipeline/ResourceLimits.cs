namespace OnnxMultimodal.Pipeline;

/// <summary>
/// Every bound the library puts on untrusted input and on sizes read from model files, in one place.
/// Each bound is checked before the memory it guards is allocated. Immutable; the defaults are what
/// README's "Resource limits" table documents, with the memory each implies.
/// </summary>
public sealed record ResourceLimits
{
    // ---- images (owned by Vision/ImageLoader) ----
    /// <summary>Largest decoded image, in pixels of one frame (canvas width × height).</summary>
    public long MaxImagePixels { get; init; } = 40_000_000;
    /// <summary>Largest encoded image file, in bytes.</summary>
    public long MaxImageBytes { get; init; } = 64L << 20;
    /// <summary>Largest width:height (or height:width) ratio accepted; the resize target is checked too.</summary>
    public double MaxImageAspectRatio { get; init; } = 32;

    // ---- audio (owned by Speech/WaveReader, Resampler, Fbank) ----
    /// <summary>Longest recording accepted, in seconds (checked from the header).</summary>
    public double MaxAudioSeconds { get; init; } = 120;
    /// <summary>Lowest and highest input sample rates accepted, in Hz.</summary>
    public int MinAudioSampleRate { get; init; } = 4_000;
    /// <summary>Highest input sample rate accepted, in Hz.</summary>
    public int MaxAudioSampleRate { get; init; } = 192_000;

    // ---- model files (owned by Pipeline/ModelPackage, ModelManifest, Text/TextTokenizer) ----
    /// <summary>Largest context length a model file may declare.</summary>
    public int MaxContextLength { get; init; } = 131_072;
    /// <summary>Largest vocabulary (and token id + 1) a tokenizer or manifest may declare.</summary>
    public int MaxVocabularySize { get; init; } = 1 << 20;
    /// <summary>Largest image side a manifest may declare.</summary>
    public int MaxImageSize { get; init; } = 4096;
    /// <summary>Whether component paths in multimodal.json may point outside the model folder (links followed).
    /// Without it a component must lie inside the folder or directly inside a sibling model folder
    /// (<c>../tiny-chameleon/image_encoder.onnx</c>, as <c>convert --link-components</c> writes).</summary>
    public bool AllowPathsOutsideModel { get; init; }

    // ---- requests ----
    /// <summary>Largest MaxNewTokens a request may ask for.</summary>
    public int MaxNewTokens { get; init; } = 65_536;
    /// <summary>Most CPU threads per operator a caller may ask for.</summary>
    public int MaxThreads { get; init; } = 256;

    /// <summary>The defaults.</summary>
    public static ResourceLimits Default { get; } = new();
}
