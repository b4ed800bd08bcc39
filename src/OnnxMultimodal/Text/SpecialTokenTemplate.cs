using System.Text.Json;

namespace OnnxMultimodal.Text;

/// <summary>
/// The ids added around one encoded sequence when special tokens are requested: from the <c>post_processor</c>
/// (TemplateProcessing's <c>single</c>; ByteLevel adds none), overridden by <c>add_bos_token</c> /
/// <c>add_eos_token</c> in a <c>tokenizer_config.json</c> beside the file, as transformers does.
/// </summary>
internal sealed record SpecialTokenTemplate(IReadOnlyList<int> Prefix, IReadOnlyList<int> Suffix)
{
    public static SpecialTokenTemplate Create(JsonElement root, TokenizerJsonReader r, Func<string, int> idOf, int maxVocabulary)
    {
        var prefix = new List<int>();
        var suffix = new List<int>();
        if (root.TryGetProperty("post_processor", out var pp)) Read(pp, r, "post_processor", prefix, suffix, maxVocabulary);
        var template = new SpecialTokenTemplate(prefix, suffix);
        string config = System.IO.Path.Combine(System.IO.Path.GetDirectoryName(r.Path) ?? ".", "tokenizer_config.json");
        return File.Exists(config) ? template.WithConfig(config, idOf) : template;
    }

    private static void Read(JsonElement e, TokenizerJsonReader r, string field, List<int> prefix, List<int> suffix, int maxVocabulary)
    {
        if (e.ValueKind == JsonValueKind.Null) return;
        string? type = TokenizerJsonReader.TypeOf(e);
        switch (type)
        {
            case "ByteLevel":
                return;                                             // offsets only
            case "Sequence":
                int i = 0;
                foreach (var p in r.Array(e, "processors", field).EnumerateArray()) Read(p, r, $"{field}.processors[{i++}]", prefix, suffix, maxVocabulary);
                return;
            case "TemplateProcessing":
                var specials = r.Required(e, "special_tokens", field);
                bool seenSequence = false;
                int k = 0;
                foreach (var item in r.Array(e, "single", field).EnumerateArray())
                {
                    string f = $"{field}.single[{k++}]";
                    if (item.TryGetProperty("Sequence", out _)) { seenSequence = true; continue; }
                    if (!item.TryGetProperty("SpecialToken", out var st)) throw r.Error(f, "expected Sequence or SpecialToken");
                    string name = r.String(st, "id", f);
                    if (!specials.TryGetProperty(name, out var spec)) throw r.Error(f, $"'{name}' is not in {field}.special_tokens");
                    foreach (var id in r.Array(spec, "ids", $"{field}.special_tokens.{name}").EnumerateArray())
                        (seenSequence ? suffix : prefix).Add(r.Id(id, $"{field}.special_tokens.{name}.ids", maxVocabulary));
                }
                return;
            default:
                throw r.Unsupported(field, type);
        }
    }

    private SpecialTokenTemplate WithConfig(string path, Func<string, int> idOf)
    {
        var r = new TokenizerJsonReader(path);
        try
        {
            if (new FileInfo(path).Length > 64 << 20) throw r.Error("file", "larger than 64 MiB");
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            var result = this;
            if (root.ValueKind != JsonValueKind.Object) throw r.Error("root", "expected an object");
            if (root.TryGetProperty("add_bos_token", out var bos) && bos.ValueKind is JsonValueKind.True or JsonValueKind.False)
                result = result with { Prefix = bos.ValueKind == JsonValueKind.True ? [TokenId(root, "bos_token", r, idOf)] : [] };
            if (root.TryGetProperty("add_eos_token", out var eos) && eos.ValueKind is JsonValueKind.True or JsonValueKind.False)
                result = result with { Suffix = eos.ValueKind == JsonValueKind.True ? [TokenId(root, "eos_token", r, idOf)] : [] };
            return result;
        }
        catch (JsonException e) { throw new ModelPackageException(path, $"not readable JSON ({e.Message})", e); }
    }

    private static int TokenId(JsonElement root, string name, TokenizerJsonReader r, Func<string, int> idOf)
    {
        var v = r.Required(root, name, "root");
        string? content = v.ValueKind == JsonValueKind.String ? v.GetString() : v.ValueKind == JsonValueKind.Object ? r.String(v, "content", name) : null;
        if (content is null) throw r.Error(name, $"expected a token string, found {v.ValueKind}");
        int id = idOf(content);
        return id >= 0 ? id : throw r.Error(name, $"'{content}' is not a token of tokenizer.json");
    }
}
