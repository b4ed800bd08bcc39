using System.Text.Json;

namespace OnnxMultimodal.Text;

/// <summary>Typed access to the fields of a <c>tokenizer.json</c>; every problem becomes a
/// <see cref="ModelPackageException"/> naming the file and the field.</summary>
internal sealed class TokenizerJsonReader(string path)
{
    public string Path { get; } = path;

    public ModelPackageException Error(string field, string problem) => new(Path, $"{field}: {problem}");

    /// <summary>"normalizer 'NFKC' is not supported": the stage and its type.</summary>
    public ModelPackageException Unsupported(string stage, string? type, string? detail = null) =>
        new(Path, $"{stage} '{type}' is not supported{(detail is null ? "" : $" ({detail})")}");

    public static string? TypeOf(JsonElement e) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;

    public JsonElement Required(JsonElement e, string name, string field)
    {
        if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null)
            throw Error($"{field}.{name}", "missing");
        return v;
    }

    public string String(JsonElement e, string name, string field)
    {
        var v = Required(e, name, field);
        return v.ValueKind == JsonValueKind.String ? v.GetString()! : throw Error($"{field}.{name}", $"expected a string, found {v.ValueKind}");
    }

    public string? OptionalString(JsonElement e, string name, string field)
    {
        if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw Error($"{field}.{name}", $"expected a string, found {v.ValueKind}");
    }

    public bool Bool(JsonElement e, string name, string field, bool fallback)
    {
        if (e.ValueKind != JsonValueKind.Object || !e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw Error($"{field}.{name}", $"expected true or false, found {v.ValueKind}"),
        };
    }

    /// <summary>A token id: an integer in [0, <paramref name="limit"/>), checked before anything is sized from it.</summary>
    public int Id(JsonElement v, string field, int limit)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long id))
            throw Error(field, $"expected an integer token id, found {v.ValueKind} {Short(v)}");
        if (id < 0) throw Error(field, $"token id {id} is negative");
        if (id >= limit) throw Error(field, $"token id {id} is not below the vocabulary limit of {limit} (ResourceLimits.MaxVocabularySize)");
        return (int)id;
    }

    public double Number(JsonElement v, string field)
    {
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out double d) || !double.IsFinite(d))
            throw Error(field, $"expected a finite number, found {v.ValueKind} {Short(v)}");
        return d;
    }

    public JsonElement Array(JsonElement e, string name, string field)
    {
        var v = Required(e, name, field);
        return v.ValueKind == JsonValueKind.Array ? v : throw Error($"{field}.{name}", $"expected an array, found {v.ValueKind}");
    }

    /// <summary>A <c>pattern</c> field: <c>{"String": "x"}</c> or <c>{"Regex": "x"}</c>.</summary>
    public (string Text, bool IsRegex) Pattern(JsonElement e, string field)
    {
        var p = Required(e, "pattern", field);
        if (p.ValueKind == JsonValueKind.Object && p.TryGetProperty("String", out var s) && s.ValueKind == JsonValueKind.String) return (s.GetString()!, false);
        if (p.ValueKind == JsonValueKind.Object && p.TryGetProperty("Regex", out var r) && r.ValueKind == JsonValueKind.String) return (r.GetString()!, true);
        throw Error($"{field}.pattern", "expected {\"String\": ...} or {\"Regex\": ...}");
    }

    private static string Short(JsonElement v)
    {
        string raw = v.GetRawText();
        return raw.Length > 40 ? raw[..40] + "..." : raw;
    }
}
