using System.Text.Json;
using System.Text.Json.Serialization;

namespace OnnxMultimodal.Tests;

/// <summary>models/tiny-chameleon/reference/reference.json (written by omm_export/families/chameleon.py).</summary>
public sealed record ChameleonReference
{
    [JsonPropertyName("images")] public List<ImageCase> Images { get; init; } = [];
    [JsonPropertyName("captions")] public List<CaptionCase> Captions { get; init; } = [];
    [JsonPropertyName("imagine")] public List<ImagineCase> Imagine { get; init; } = [];
    [JsonIgnore] public string Directory { get; init; } = "";

    public static ChameleonReference Load()
    {
        string dir = Path.Combine(TestData.Model("tiny-chameleon"), "reference");
        return JsonSerializer.Deserialize<ChameleonReference>(File.ReadAllText(Path.Combine(dir, "reference.json")))! with { Directory = dir };
    }

    public string PathOf(string file) => Path.Combine(Directory, file);
}

public sealed record ImageCase
{
    [JsonPropertyName("name")] public string Name { get; init; } = "";
    [JsonPropertyName("file")] public string File { get; init; } = "";
    [JsonPropertyName("pixels_file")] public string PixelsFile { get; init; } = "";
    [JsonPropertyName("codes")] public int[] Codes { get; init; } = [];
    [JsonPropertyName("token_ids")] public int[] TokenIds { get; init; } = [];
    [JsonPropertyName("code_min_margin")] public double CodeMinMargin { get; init; }
    public override string ToString() => Name;
}

public sealed record CaptionCase
{
    [JsonPropertyName("image")] public string Image { get; init; } = "";
    [JsonPropertyName("kind")] public string Kind { get; init; } = "";
    [JsonPropertyName("text")] public string Text { get; init; } = "";
    [JsonPropertyName("ids")] public int[] Ids { get; init; } = [];
    [JsonPropertyName("tokens")] public int[] Tokens { get; init; } = [];
    [JsonPropertyName("min_margin")] public double MinMargin { get; init; }
    public override string ToString() => $"{Image} {Kind}";
}

public sealed record ImagineCase
{
    [JsonPropertyName("prompt")] public string Prompt { get; init; } = "";
    [JsonPropertyName("mode")] public string Mode { get; init; } = "";
    [JsonPropertyName("cond_ids")] public int[] CondIds { get; init; } = [];
    [JsonPropertyName("uncond_ids")] public int[] UncondIds { get; init; } = [];
    [JsonPropertyName("scale")] public float Scale { get; init; }
    [JsonPropertyName("seed")] public ulong? Seed { get; init; }
    [JsonPropertyName("temperature")] public float Temperature { get; init; }
    [JsonPropertyName("top_p")] public float TopP { get; init; }
    [JsonPropertyName("tokens")] public int[] Tokens { get; init; } = [];
    [JsonPropertyName("codes")] public int[] Codes { get; init; } = [];
    [JsonPropertyName("pixels_file")] public string PixelsFile { get; init; } = "";
    public override string ToString() => $"{Prompt[..12]} {Mode}";
}
