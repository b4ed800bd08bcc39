using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace OnnxMultimodal.Text;

/// <summary>One stage of a tokenizer.json <c>normalizer</c>: text in, text out (Hugging Face tokenizers semantics).</summary>
internal abstract class TextNormalizer
{
    public abstract string Normalize(string text);

    /// <summary>Builds the normalizer of <paramref name="e"/>; null for JSON null. Refuses types it does not implement.</summary>
    public static TextNormalizer? FromJson(JsonElement e, TokenizerJsonReader r, string field = "normalizer")
    {
        if (e.ValueKind == JsonValueKind.Null) return null;
        string? type = TokenizerJsonReader.TypeOf(e);
        return type switch
        {
            "Sequence" => new SequenceNormalizer([.. r.Array(e, "normalizers", field).EnumerateArray()
                .Select((n, i) => FromJson(n, r, $"{field}.normalizers[{i}]") ?? throw r.Error($"{field}.normalizers[{i}]", "null"))]),
            "Prepend" => new PrependNormalizer(r.String(e, "prepend", field)),
            "Replace" => ReplaceNormalizer.Create(e, r, field),
            "NFC" or "NFD" or "NFKC" or "NFKD" when !UnicodeNormalizer.Available =>
                throw r.Unsupported(field, type, "this process runs with InvariantGlobalization, which has no Unicode normalization data: install ICU and set DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=false"),
            "NFC" => new UnicodeNormalizer(NormalizationForm.FormC),
            "NFD" => new UnicodeNormalizer(NormalizationForm.FormD),
            "NFKC" => new UnicodeNormalizer(NormalizationForm.FormKC),
            "NFKD" => new UnicodeNormalizer(NormalizationForm.FormKD),
            _ => throw r.Unsupported(field, type),
        };
    }
}

internal sealed class SequenceNormalizer(IReadOnlyList<TextNormalizer> stages) : TextNormalizer
{
    public override string Normalize(string text)
    {
        foreach (var s in stages) text = s.Normalize(text);
        return text;
    }
}

/// <summary>Adds a prefix to non-empty text (Llama-2's "▁").</summary>
internal sealed class PrependNormalizer(string prefix) : TextNormalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prefix + text;
}

/// <summary>Replaces every occurrence of a string or regex.</summary>
internal sealed class ReplaceNormalizer : TextNormalizer
{
    private readonly string? _literal;
    private readonly Regex? _regex;
    private readonly string _content;

    private ReplaceNormalizer(string? literal, Regex? regex, string content) => (_literal, _regex, _content) = (literal, regex, content);

    public static ReplaceNormalizer Create(JsonElement e, TokenizerJsonReader r, string field)
    {
        var (pattern, isRegex) = r.Pattern(e, field);
        string content = r.String(e, "content", field);
        if (pattern.Length == 0) throw r.Error($"{field}.pattern", "empty");
        return isRegex ? new(null, SplitPreTokenizer.CompileRegex(pattern, r, field), content) : new(pattern, null, content);
    }

    public override string Normalize(string text) =>
        _regex is not null ? _regex.Replace(text, _content.Replace("$", "$$")) : text.Replace(_literal!, _content, StringComparison.Ordinal);
}

/// <summary>Unicode normalization forms (NFC, NFD, NFKC, NFKD), from the ICU data .NET uses.</summary>
internal sealed class UnicodeNormalizer(NormalizationForm form) : TextNormalizer
{
    /// <summary>Whether .NET can normalize here: with InvariantGlobalization it leaves non-ASCII text unchanged.</summary>
    public static bool Available { get; } = "e\u0301".Normalize(NormalizationForm.FormC) == "\u00E9" && "\uFB01".Normalize(NormalizationForm.FormKC) == "fi";

    public override string Normalize(string text) => text.IsNormalized(form) ? text : text.Normalize(form);
}
