using System.Text.Json;
using System.Text.Json.Serialization;

namespace OnnxMultimodal.Pipeline;

/// <summary>The parsed <c>multimodal.json</c> of a model package (format version 1).</summary>
internal sealed record ModelManifest
{
    [JsonPropertyName("format_version")] public int FormatVersion { get; init; }
    [JsonPropertyName("family")] public string Family { get; init; } = "";
    [JsonPropertyName("name")] public string Name { get; init; } = "";
    [JsonPropertyName("precision")] public string Precision { get; init; } = "fp32";
    [JsonPropertyName("components")] public Dictionary<string, string> Components { get; init; } = new();
    [JsonPropertyName("decoder")] public DecoderManifest? Decoder { get; init; }
    [JsonPropertyName("tokens")] public TokenManifest Tokens { get; init; } = new();
    [JsonPropertyName("chat_template")] public Dictionary<string, string>? ChatTemplate { get; init; }
    [JsonPropertyName("provenance")] public JsonElement? Provenance { get; init; }
    [JsonPropertyName("image")] public ImageManifest? Image { get; init; }
    [JsonPropertyName("guidance")] public GuidanceManifest? Guidance { get; init; }
    [JsonPropertyName("image_encoder")] public ComponentIo? ImageEncoder { get; init; }
    [JsonPropertyName("image_decoder")] public ComponentIo? ImageDecoder { get; init; }
    [JsonPropertyName("speech_encoder")] public SpeechEncoderManifest? SpeechEncoder { get; init; }

    internal static readonly JsonSerializerOptions Json = new() { ReadCommentHandling = JsonCommentHandling.Skip };
}

/// <summary>Shapes and I/O names of the text decoder graph.</summary>
internal sealed record DecoderManifest
{
    [JsonPropertyName("num_layers")] public int NumLayers { get; init; }
    [JsonPropertyName("num_heads")] public int NumHeads { get; init; }
    [JsonPropertyName("num_kv_heads")] public int NumKvHeads { get; init; }
    [JsonPropertyName("head_dim")] public int HeadDim { get; init; }
    [JsonPropertyName("hidden_size")] public int HiddenSize { get; init; }
    [JsonPropertyName("vocab_size")] public int VocabSize { get; init; }
    [JsonPropertyName("context_length")] public int ContextLength { get; init; }
    /// <summary>"concat": present = past ++ new (grows per step); "shared": one max-length buffer, updated in place.</summary>
    [JsonPropertyName("kv_cache")] public string KvCache { get; init; } = "concat";
    /// <summary>Added to a token's index to get its position id (NLLB-style sinusoidal tables start after the padding row).</summary>
    [JsonPropertyName("position_offset")] public int PositionOffset { get; init; }
    /// <summary>Element type of the KV cache: "float32" or "float16".</summary>
    [JsonPropertyName("kv_dtype")] public string KvDtype { get; init; } = "float32";
    public bool SharedCache => KvCache == "shared";
    /// <summary>"all": logits for every input position; "last": only each row's last valid position ([B, 1, vocab]),
    /// so a long prompt's prefill skips the rest of the vocabulary projection and its copy to the host.</summary>
    [JsonPropertyName("logits")] public string Logits { get; init; } = "all";
    public bool LastLogitsOnly => Logits == "last";
    [JsonPropertyName("inputs")] public Dictionary<string, string> Inputs { get; init; } = new();
    [JsonPropertyName("outputs")] public Dictionary<string, string> Outputs { get; init; } = new();
    /// <summary>The graph chooses the next token itself (<c>convert --device-sampling</c>): see <see cref="Generation.SamplingHeadManifest"/>.</summary>
    [JsonPropertyName("sampling_head")] public Generation.SamplingHeadManifest? SamplingHead { get; init; }

    public string InputName(string role) => Inputs.TryGetValue(role, out var n) ? n : role;
    public string OutputName(string role) => Outputs.TryGetValue(role, out var n) ? n : role;
    public string PastKey(int layer) => InputName("past_key").Replace("%d", layer.ToString());
    public string PastValue(int layer) => InputName("past_value").Replace("%d", layer.ToString());
    public string PresentKey(int layer) => OutputName("present_key").Replace("%d", layer.ToString());
    public string PresentValue(int layer) => OutputName("present_value").Replace("%d", layer.ToString());
    /// <summary>Encoder-decoder graphs take per-layer cross-attention K/V and an encoder mask.</summary>
    public bool HasCrossAttention => Inputs.ContainsKey("cross_key");
    public string CrossKey(int layer) => InputName("cross_key").Replace("%d", layer.ToString());
    public string CrossValue(int layer) => InputName("cross_value").Replace("%d", layer.ToString());
}

/// <summary>Special token ids.</summary>
internal sealed record TokenManifest
{
    [JsonPropertyName("bos")] public int? Bos { get; init; }
    [JsonPropertyName("eos")] public int[] Eos { get; init; } = [];
    [JsonPropertyName("pad")] public int? Pad { get; init; }
    [JsonPropertyName("add_bos")] public bool AddBos { get; init; } = true;
    /// <summary>First decoder token of encoder-decoder models.</summary>
    [JsonPropertyName("decoder_start")] public int? DecoderStart { get; init; }
    /// <summary>Target-language tokens by language code (e.g. "spa").</summary>
    [JsonPropertyName("languages")] public Dictionary<string, int>? Languages { get; init; }
}

/// <summary>Image geometry and the image-token vocabulary (families with a VQ image tokenizer).</summary>
internal sealed record ImageManifest
{
    [JsonPropertyName("size")] public int Size { get; init; }
    [JsonPropertyName("tokens_per_image")] public int TokensPerImage { get; init; }
    [JsonPropertyName("codebook_size")] public int CodebookSize { get; init; }
    [JsonPropertyName("grid")] public int Grid { get; init; }
    [JsonPropertyName("begin_image")] public int BeginImage { get; init; }
    [JsonPropertyName("end_image")] public int EndImage { get; init; }
    [JsonPropertyName("placeholder")] public int? Placeholder { get; init; }
    [JsonPropertyName("code_to_token")] public int[] CodeToToken { get; init; } = [];
}

/// <summary>Default classifier-free guidance settings for image generation.</summary>
internal sealed record GuidanceManifest
{
    [JsonPropertyName("scale")] public float Scale { get; init; } = 3f;
    [JsonPropertyName("temperature")] public float Temperature { get; init; } = 1f;
    [JsonPropertyName("top_p")] public float TopP { get; init; } = 0.9f;
}

/// <summary>Input and output names of a single-input graph.</summary>
internal sealed record ComponentIo
{
    [JsonPropertyName("input")] public string Input { get; init; } = "";
    [JsonPropertyName("output")] public string Output { get; init; } = "";
}

/// <summary>I/O of the speech encoder graph.</summary>
internal sealed record SpeechEncoderManifest
{
    [JsonPropertyName("inputs")] public Dictionary<string, string> Inputs { get; init; } = new();
    [JsonPropertyName("outputs")] public Dictionary<string, string> Outputs { get; init; } = new();
    [JsonPropertyName("feature_dim")] public int FeatureDim { get; init; } = 160;
}
