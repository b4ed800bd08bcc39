using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace OnnxMultimodal.Text;

/// <summary>
/// A tokenizer.json <c>decoder</c> chain (ByteLevel, ByteFallback, Fuse, Strip, Replace, Metaspace, Sequence) compiled
/// to what streaming needs: the bytes of each token, the bytes of a token when it is the first one decoded (Metaspace
/// drops its "▁" there), and how many leading characters a <c>Strip</c> after <c>Fuse</c> removes from the text.
/// Text is then UTF-8 of the concatenated bytes, which is what every supported chain amounts to.
/// </summary>
internal sealed class TokenDecoder
{
    private abstract record Step;
    private sealed record ReplaceStep(string? Literal, Regex? Pattern, string Content) : Step;
    private sealed record ByteFallbackStep : Step;
    private sealed record ByteLevelStep : Step;
    private sealed record MetaspaceStep(char Replacement, bool DropOnFirst) : Step;

    private readonly List<Step> _steps = [];

    /// <summary>The character a <c>Strip</c> after <c>Fuse</c> removes from the start of the text (ASCII), and how many.</summary>
    public byte StripByte { get; private set; }
    public int StripCount { get; private set; }
    /// <summary>Whether the first token decodes differently (Metaspace with a prepend scheme).</summary>
    public bool FirstTokenDiffers { get; private set; }

    public static TokenDecoder Create(JsonElement e, TokenizerJsonReader r)
    {
        var d = new TokenDecoder();
        if (e.ValueKind == JsonValueKind.Null) throw r.Unsupported("decoder", "null", "without a decoder, Hugging Face joins tokens with spaces");
        bool fused = false;
        d.Add(e, r, "decoder", ref fused);
        return d;
    }

    private void Add(JsonElement e, TokenizerJsonReader r, string field, ref bool fused)
    {
        string? type = TokenizerJsonReader.TypeOf(e);
        switch (type)
        {
            case "Sequence":
                int i = 0;
                foreach (var s in r.Array(e, "decoders", field).EnumerateArray()) Add(s, r, $"{field}.decoders[{i++}]", ref fused);
                return;
            case "Fuse":
                fused = true;
                return;
            case "Replace":
                var (pattern, isRegex) = r.Pattern(e, field);
                if (pattern.Length == 0) throw r.Error($"{field}.pattern", "empty");
                if (fused && (isRegex || pattern.Length != 1)) throw r.Unsupported(field, "Replace", "a multi-character pattern after Fuse");
                _steps.Add(new ReplaceStep(isRegex ? null : pattern, isRegex ? SplitPreTokenizer.CompileRegex(pattern, r, field) : null, r.String(e, "content", field)));
                return;
            case "ByteFallback" when !fused:
                _steps.Add(new ByteFallbackStep());
                return;
            case "ByteLevel" when !fused:
                _steps.Add(new ByteLevelStep());
                return;
            case "Metaspace" when !fused:
                var (rep, scheme, _) = MetaspacePreTokenizer.ReadOptions(e, r, field);
                _steps.Add(new MetaspaceStep(rep, scheme != MetaspacePreTokenizer.Prepend.Never));
                FirstTokenDiffers |= scheme != MetaspacePreTokenizer.Prepend.Never;
                return;
            case "Strip" when fused:
                string content = r.String(e, "content", field);
                if (content.Length != 1 || content[0] > 0x7F) throw r.Unsupported(field, "Strip", $"content '{content}' is not one ASCII character");
                var stop = r.Required(e, "stop", field);
                if (r.Number(stop, $"{field}.stop") != 0) throw r.Unsupported(field, "Strip", "stripping the end of the text");
                double start = r.Number(r.Required(e, "start", field), $"{field}.start");
                if (start < 0 || start > 64 || start != Math.Floor(start)) throw r.Error($"{field}.start", $"{start} is not a small count");
                if (StripCount > 0 && StripByte != (byte)content[0]) throw r.Unsupported(field, "Strip", "two Strip stages with different characters");
                (StripByte, StripCount) = ((byte)content[0], StripCount + (int)start);
                return;
            case "ByteFallback" or "ByteLevel" or "Metaspace":
                throw r.Unsupported(field, type, "after Fuse");
            case "Strip":
                throw r.Unsupported(field, type, "per-token Strip (before Fuse)");
            default:
                throw r.Unsupported(field, type);
        }
    }

    /// <summary>The bytes of one token's text through the chain.</summary>
    public byte[] Bytes(string token, bool first)
    {
        string? text = token;
        byte[]? bytes = null;
        foreach (var step in _steps)
        {
            if (text is null) break;                                // already raw bytes: later text steps do not apply
            switch (step)
            {
                case ReplaceStep s:
                    text = s.Pattern is not null ? s.Pattern.Replace(text, s.Content.Replace("$", "$$")) : text.Replace(s.Literal!, s.Content, StringComparison.Ordinal);
                    break;
                case ByteFallbackStep when text.Length == 6 && text.StartsWith("<0x", StringComparison.Ordinal) && text[5] == '>'
                        && byte.TryParse(text.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out byte b):
                    (bytes, text) = ([b], null);
                    break;
                case ByteLevelStep:
                    (bytes, text) = (ByteLevel.ToBytes(text), null);
                    break;
                case MetaspaceStep m:
                    text = first && m.DropOnFirst ? text.Replace(m.Replacement.ToString(), "", StringComparison.Ordinal) : text.Replace(m.Replacement, ' ');
                    break;
            }
        }
        return bytes ?? Encoding.UTF8.GetBytes(text!);
    }
}
