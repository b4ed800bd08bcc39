using System.Text.Json;
using System.Text.RegularExpressions;

namespace OnnxMultimodal.Text;

/// <summary>One stage of a tokenizer.json <c>pre_tokenizer</c>: splits each piece of a normalized segment into
/// smaller pieces (Hugging Face tokenizers semantics). Pieces are never empty.</summary>
internal abstract class PreTokenizer
{
    /// <summary>Replaces <paramref name="pieces"/> by their splits. <paramref name="atStart"/>: the first piece begins
    /// at offset 0 of the caller's text (Metaspace's <c>prepend_scheme: first</c> needs it).</summary>
    public abstract List<string> Split(List<string> pieces, bool atStart);

    public static PreTokenizer? FromJson(JsonElement e, TokenizerJsonReader r, string field = "pre_tokenizer")
    {
        if (e.ValueKind == JsonValueKind.Null) return null;
        string? type = TokenizerJsonReader.TypeOf(e);
        return type switch
        {
            "Sequence" => new SequencePreTokenizer([.. r.Array(e, "pretokenizers", field).EnumerateArray()
                .Select((p, i) => FromJson(p, r, $"{field}.pretokenizers[{i}]") ?? throw r.Error($"{field}.pretokenizers[{i}]", "null"))]),
            "Split" => SplitPreTokenizer.Create(e, r, field),
            "ByteLevel" => new ByteLevelPreTokenizer(r.Bool(e, "add_prefix_space", field, true), r.Bool(e, "use_regex", field, true)),
            "Metaspace" => MetaspacePreTokenizer.Create(e, r, field),
            _ => throw r.Unsupported(field, type),
        };
    }
}

internal sealed class SequencePreTokenizer(IReadOnlyList<PreTokenizer> stages) : PreTokenizer
{
    public override List<string> Split(List<string> pieces, bool atStart)
    {
        foreach (var s in stages) pieces = s.Split(pieces, atStart);
        return pieces;
    }
}

/// <summary>How matches of a split pattern become pieces.</summary>
internal enum SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>Splits on a string or regex (Llama-3's and Qwen's word pattern, Gemma's " ").</summary>
internal sealed class SplitPreTokenizer(Regex pattern, SplitBehavior behavior) : PreTokenizer
{
    public static SplitPreTokenizer Create(JsonElement e, TokenizerJsonReader r, string field)
    {
        var (text, isRegex) = r.Pattern(e, field);
        if (text.Length == 0) throw r.Error($"{field}.pattern", "empty");
        if (r.Bool(e, "invert", field, false)) throw r.Unsupported(field, "Split", "invert: true");
        string b = r.String(e, "behavior", field);
        if (!Enum.TryParse<SplitBehavior>(b, out var behavior)) throw r.Unsupported($"{field}.behavior", b);
        return new(isRegex ? CompileRegex(text, r, field) : new Regex(Regex.Escape(text), RegexOptions.CultureInvariant), behavior);
    }

    /// <summary>Compiles a pattern written for Oniguruma (Hugging Face tokenizers); .NET reads the constructs these
    /// tokenizers use ((?i:...), \p{L}, \p{N}, lookahead).</summary>
    public static Regex CompileRegex(string pattern, TokenizerJsonReader r, string field)
    {
        try { return new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled, TimeSpan.FromSeconds(10)); }
        catch (ArgumentException e) { throw r.Error($"{field}.pattern", $"regex not readable by .NET ({e.Message})"); }
    }

    public override List<string> Split(List<string> pieces, bool atStart)
    {
        var result = new List<string>(pieces.Count * 2);
        var parts = new List<(int Start, int End, bool IsMatch)>();
        foreach (string piece in pieces)
        {
            parts.Clear();
            int prev = 0;
            for (var m = pattern.Match(piece); m.Success; m = m.NextMatch())
            {
                if (m.Length == 0) continue;
                if (m.Index > prev) parts.Add((prev, m.Index, false));
                parts.Add((m.Index, m.Index + m.Length, true));
                prev = m.Index + m.Length;
            }
            if (prev < piece.Length) parts.Add((prev, piece.Length, false));
            foreach (var (s, e) in Apply(behavior, parts)) result.Add(piece[s..e]);
        }
        return result;
    }

    /// <summary>Hugging Face's rules for turning matches and gaps into pieces.</summary>
    internal static List<(int Start, int End)> Apply(SplitBehavior behavior, List<(int Start, int End, bool IsMatch)> parts)
    {
        var acc = new List<(int Start, int End)>(parts.Count);
        switch (behavior)
        {
            case SplitBehavior.Isolated:
                foreach (var p in parts) acc.Add((p.Start, p.End));
                break;
            case SplitBehavior.Removed:
                foreach (var p in parts) if (!p.IsMatch) acc.Add((p.Start, p.End));
                break;
            case SplitBehavior.Contiguous:
                bool prevMatch = false;
                foreach (var p in parts)
                {
                    if (p.IsMatch && prevMatch) acc[^1] = (acc[^1].Start, p.End);
                    else acc.Add((p.Start, p.End));
                    prevMatch = p.IsMatch;
                }
                break;
            case SplitBehavior.MergedWithPrevious:
                prevMatch = false;
                foreach (var p in parts)
                {
                    if (p.IsMatch && !prevMatch && acc.Count > 0) acc[^1] = (acc[^1].Start, p.End);
                    else acc.Add((p.Start, p.End));
                    prevMatch = p.IsMatch;
                }
                break;
            case SplitBehavior.MergedWithNext:
                prevMatch = false;
                for (int i = parts.Count - 1; i >= 0; i--)
                {
                    var p = parts[i];
                    if (p.IsMatch && !prevMatch && acc.Count > 0) acc[^1] = (p.Start, acc[^1].End);
                    else acc.Add((p.Start, p.End));
                    prevMatch = p.IsMatch;
                }
                acc.Reverse();
                break;
        }
        return acc;
    }
}

/// <summary>GPT-2's byte-level stage: optional prefix space, optional GPT-2 word split, then every UTF-8 byte
/// becomes one printable character of <see cref="ByteLevel"/>'s table.</summary>
internal sealed partial class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : PreTokenizer
{
    // GPT-2's pre-tokenization pattern (contractions, letters, digits, other, whitespace).
    [GeneratedRegex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.CultureInvariant)]
    private static partial Regex Gpt2Split();

    private static readonly SplitPreTokenizer Words = new(Gpt2Split(), SplitBehavior.Isolated);

    public override List<string> Split(List<string> pieces, bool atStart)
    {
        if (addPrefixSpace)
            for (int i = 0; i < pieces.Count; i++)
                if (!pieces[i].StartsWith(' ')) pieces[i] = " " + pieces[i];
        if (useRegex) pieces = Words.Split(pieces, atStart);
        for (int i = 0; i < pieces.Count; i++) pieces[i] = ByteLevel.ToChars(pieces[i]);
        return pieces;
    }
}

/// <summary>SentencePiece's whitespace marker: spaces become "▁", a "▁" is prepended per <c>prepend_scheme</c>,
/// and with <c>split</c> each "▁" starts a new piece.</summary>
internal sealed class MetaspacePreTokenizer(char replacement, MetaspacePreTokenizer.Prepend scheme, bool split) : PreTokenizer
{
    internal enum Prepend { Always, Never, First }

    public static MetaspacePreTokenizer Create(JsonElement e, TokenizerJsonReader r, string field)
    {
        var (replacement, scheme, split) = ReadOptions(e, r, field);
        return new(replacement, scheme, split);
    }

    /// <summary>The options shared by the Metaspace pre-tokenizer and decoder (old files: <c>add_prefix_space</c>).</summary>
    internal static (char Replacement, Prepend Scheme, bool Split) ReadOptions(JsonElement e, TokenizerJsonReader r, string field)
    {
        string rep = r.String(e, "replacement", field);
        if (rep.Length != 1) throw r.Unsupported(field, "Metaspace", $"replacement '{rep}' is not one UTF-16 character");
        string? s = r.OptionalString(e, "prepend_scheme", field);
        var scheme = s switch
        {
            "always" => Prepend.Always,
            "never" => Prepend.Never,
            "first" => Prepend.First,
            null => r.Bool(e, "add_prefix_space", field, true) ? Prepend.Always : Prepend.Never,
            _ => throw r.Unsupported($"{field}.prepend_scheme", s),
        };
        return (rep[0], scheme, r.Bool(e, "split", field, true));
    }

    public override List<string> Split(List<string> pieces, bool atStart)
    {
        var result = new List<string>(pieces.Count);
        var parts = new List<(int Start, int End, bool IsMatch)>();
        for (int i = 0; i < pieces.Count; i++)
        {
            string p = pieces[i].Replace(' ', replacement);
            bool prepend = scheme == Prepend.Always || (scheme == Prepend.First && atStart && i == 0);
            if (prepend && p[0] != replacement) p = replacement + p;
            if (!split) { result.Add(p); continue; }
            parts.Clear();
            int prev = 0;
            for (int c = 0; c < p.Length; c++)
            {
                if (p[c] != replacement) continue;
                if (c > prev) parts.Add((prev, c, false));
                parts.Add((c, c + 1, true));
                prev = c + 1;
            }
            if (prev < p.Length) parts.Add((prev, p.Length, false));
            foreach (var (s, e) in SplitPreTokenizer.Apply(SplitBehavior.MergedWithNext, parts)) result.Add(p[s..e]);
        }
        return result;
    }
}
