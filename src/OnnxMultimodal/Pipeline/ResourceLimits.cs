namespace OnnxMultimodal.Pipeline;

/// <summary>
/// Every bound the library puts on untrusted input and on sizes read from model files, in one place.
/// Each bound is checked before the memory it guards is allocated. Immutable; the defaults are what
/// README's "Resource limits" table documents, with the memory each implies.
/// </summary>
public sealed record ResourceLimits
{
    // ---- images (owned by Vision/ImageLoader) ----
    /// <summary>Largest decoded image, in pixels: a frame's canvas (width × height), every frame of an
    /// animation whose decoder cannot stop at the first (animated WebP), and the resize target.
    /// 40M pixels is a 160 MB RGBA frame; the decoder's buffers are held to 16 bytes a pixel of this
    /// bound plus 16 MiB (<see cref="Vision.ImageLoader.DecodeBudget"/>: 656 MiB by default).</summary>
    public long MaxImagePixels { get; init; } = 40_000_000;
    /// <summary>Largest encoded image file, in bytes (read whole before decoding).</summary>
    public long MaxImageBytes { get; init; } = 64L << 20;
    /// <summary>Largest width:height (or height:width) ratio accepted, checked on the header before decoding;
    /// it also bounds the resize target (short side to the model's size: 32 × 512² = 8.4M pixels).</summary>
    public double MaxImageAspectRatio { get; init; } = 32;

    // ---- audio (owned by Speech/WaveReader, Resampler, Fbank) ----
    /// <summary>Longest recording accepted, in seconds (checked from the header, in whole frames). The
    /// speech encoder attends over all T = 50 frames a second, so its memory grows with the square of the
    /// duration: 73-91 bytes per T² on tiny-seamless, 5 or 6 live [heads, T, T] fp32 scores (exported graphs after the relative-position
    /// rewrite, onnx-export relpos_pass.py). Peak process memory on tiny-seamless (4 heads): 0.26 GB at 30 s,
    /// 0.75 GB at 60 s, 3.2 GB at 120 s; a 16-head encoder needs about 4 times the quadratic part (2.6 GB
    /// at 60 s). Raise it only with the memory for it.</summary>
    public double MaxAudioSeconds { get; init; } = 60;
    /// <summary>Lowest input sample rate accepted, in Hz (a lower rate would let a tiny file claim a long recording).</summary>
    public int MinAudioSampleRate { get; init; } = 4_000;
    /// <summary>Highest input sample rate accepted, in Hz (bounds the samples read per second and the resampler's table, 9 MB at 192 kHz).</summary>
    public int MaxAudioSampleRate { get; init; } = 192_000;

    // ---- model files (owned by Pipeline/ModelPackage, ModelManifest, Text/TextTokenizer) ----
    /// <summary>Largest context length a model file may declare.</summary>
    public int MaxContextLength { get; init; } = 131_072;
    /// <summary>Largest vocabulary (and token id + 1) a tokenizer or manifest may declare.</summary>
    public int MaxVocabularySize { get; init; } = 1 << 20;
    /// <summary>Largest tokenizer.json read, in bytes (the largest real ones, Gemma-3's, are 33 MB).</summary>
    public long MaxTokenizerFileBytes { get; init; } = 256L << 20;
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

    /// <summary><paramref name="limits"/> with the image bounds of <paramref name="from"/>.</summary>
    internal static ResourceLimits WithImageBounds(ResourceLimits limits, ResourceLimits from) => limits with
    {
        MaxImagePixels = from.MaxImagePixels, MaxImageBytes = from.MaxImageBytes, MaxImageAspectRatio = from.MaxImageAspectRatio,
    };

    /// <summary><paramref name="limits"/> with the audio bounds of <paramref name="from"/>.</summary>
    internal static ResourceLimits WithAudioBounds(ResourceLimits limits, ResourceLimits from) => limits with
    {
        MaxAudioSeconds = from.MaxAudioSeconds, MinAudioSampleRate = from.MinAudioSampleRate, MaxAudioSampleRate = from.MaxAudioSampleRate,
    };
    // ---- chat templates (owned by Text/ChatTemplate) ----
    /// <summary>Largest tokenizer_config.json (or chat_template.jinja) read for a chat template, in bytes.</summary>
    public long MaxTemplateFileBytes { get; init; } = 16L << 20;
    /// <summary>Most characters a chat template may render (and the largest string or list it may build).</summary>
    public int MaxTemplateOutputChars { get; init; } = 4_000_000;
    /// <summary>Most steps (statements, loop iterations, calls) one rendering may take.</summary>
    public long MaxTemplateSteps { get; init; } = 1_000_000;

    /// <summary>The defaults.</summary>
    public static ResourceLimits Default { get; } = new();
}
