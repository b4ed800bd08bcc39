using OnnxMultimodal.Generation;

namespace OnnxMultimodal.Pipeline;

/// <summary>One piece of a prompt. Modalities compose as parts of a request.</summary>
public abstract record Part
{
    public static Part Text(string text) => new TextPart(text);
    public static Part Image(string path) => new ImagePart(path, null);
    public static Part Image(byte[] encoded) => new ImagePart(null, encoded);
    public static Part Audio(string path) => new AudioPart(path, null);
    public static Part Audio(byte[] wav) => new AudioPart(null, wav);
}

public sealed record TextPart(string Value) : Part;
/// <summary>An image file (PNG, JPEG, GIF, BMP, TGA, TIFF, WebP) by path or as encoded bytes.</summary>
public sealed record ImagePart(string? Path, byte[]? Encoded) : Part;
/// <summary>A WAV recording (PCM 8/16/24/32-bit or float, any rate and channel count) by path or as bytes.</summary>
public sealed record AudioPart(string? Path, byte[]? Wav) : Part;

/// <summary>What to generate from. Immutable.</summary>
public sealed record GenerationRequest(IReadOnlyList<Part> Parts)
{
    public GenerationRequest(string text) : this([Part.Text(text)]) { }

    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;

    /// <summary>Wrap the text in the model's chat template (user turn, then the assistant's).</summary>
    public bool UseChatTemplate { get; init; }

    /// <summary>What to generate: text, or an image (families with an image decoder).</summary>
    public OutputModality Output { get; init; } = OutputModality.Text;

    /// <summary>Classifier-free guidance scale for image output; null takes the model's default.</summary>
    public float? GuidanceScale { get; init; }

    /// <summary>Target language code for speech->text (e.g. "spa", "fra"); null: the first the model lists.</summary>
    public string? TargetLanguage { get; init; }
}

public enum OutputModality
{
    Text,
    Image,
}

/// <summary>A generated image: PNG bytes, the raw pixels and the codes they came from.</summary>
public sealed record GeneratedImage(byte[] Png, int Width, int Height, IReadOnlyList<int> Codes, float[] Pixels);

/// <summary>One item of the generation stream: a text delta and its token, or the final statistics.</summary>
public sealed record GenerationUpdate
{
    /// <summary>Text completed by this token (may be empty while a UTF-8 character is unfinished).</summary>
    public string TextDelta { get; init; } = "";
    public int? TokenId { get; init; }
    /// <summary>Set when an image is complete (image output).</summary>
    public GeneratedImage? Image { get; init; }
    /// <summary>Set on the last update only.</summary>
    public GenerationStats? Stats { get; init; }
}

/// <summary>Timings and counts of one request.</summary>
public sealed record GenerationStats
{
    public required string Engine { get; init; }
    public int PromptTokens { get; init; }
    public int GeneratedTokens { get; init; }
    public TimeSpan Prefill { get; init; }
    public TimeSpan TimeToFirstToken { get; init; }
    public TimeSpan Total { get; init; }
    /// <summary>Milliseconds of each token after the first.</summary>
    public IReadOnlyList<double> TokenMilliseconds { get; init; } = [];
    public FinishReason FinishReason { get; init; }
    /// <summary>Wall milliseconds per phase: preprocess, encode, prefill, decode, detokenize.</summary>
    public IReadOnlyDictionary<string, double> Phases { get; init; } = new Dictionary<string, double>();
    public IReadOnlyList<int> Tokens { get; init; } = [];
    public double TokensPerSecond => TokenMilliseconds.Count == 0 ? 0 : 1000.0 * TokenMilliseconds.Count / TokenMilliseconds.Sum();
}
