using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace OnnxMultimodal.Text;

/// <summary>
/// Byte-level BPE tokenizer read from a Hugging Face <c>tokenizer.json</c>. Encoding runs on
/// Microsoft.ML.Tokenizers; decoding maps tokens back to bytes so that streamed output only ever
/// emits whole UTF-8 characters.
/// </summary>
internal sealed partial class TextTokenizer
{
    // GPT-2's pre-tokenization pattern (contractions, letters, digits, other, whitespace).
    [GeneratedRegex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")]
    private static partial Regex Gpt2Split();

    private readonly BpeTokenizer _bpe;
    private readonly byte[][] _tokenBytes;       // id -> raw bytes (special tokens: their UTF-8 text)
    private readonly bool[] _isSpecial;

    public IReadOnlyDictionary<string, int> SpecialTokens { get; }
    public int VocabularySize => _tokenBytes.Length;

    private TextTokenizer(BpeTokenizer bpe, byte[][] tokenBytes, bool[] isSpecial, IReadOnlyDictionary<string, int> specials)
    {
        _bpe = bpe;
        _tokenBytes = tokenBytes;
        _isSpecial = isSpecial;
        SpecialTokens = specials;
    }

    /// <summary>Loads a byte-level BPE <c>tokenizer.json</c>.</summary>
    /// <exception cref="ModelPackageException">The file is missing, not JSON, or not a byte-level BPE tokenizer.</exception>
    public static TextTokenizer Load(string path)
    {
        if (!File.Exists(path)) throw new ModelPackageException(path, "tokenizer file not found");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = doc.RootElement;
            var model = root.GetProperty("model");
            if (model.GetProperty("type").GetString() != "BPE")
                throw new ModelPackageException(path, $"tokenizer model type '{model.GetProperty("type").GetString()}' is not supported (expected BPE)");
            if (!root.TryGetProperty("pre_tokenizer", out var pre) || pre.ValueKind != JsonValueKind.Object || pre.GetProperty("type").GetString() != "ByteLevel")
                throw new ModelPackageException(path, "only byte-level BPE tokenizers (pre_tokenizer ByteLevel) are supported");

            var vocab = new Dictionary<string, int>();
            foreach (var p in model.GetProperty("vocab").EnumerateObject()) vocab[p.Name] = p.Value.GetInt32();
            var merges = new List<string>();
            foreach (var m in model.GetProperty("merges").EnumerateArray())
                merges.Add(m.ValueKind == JsonValueKind.Array ? $"{m[0].GetString()} {m[1].GetString()}" : m.GetString()!);
            var specials = new Dictionary<string, int>();
            if (root.TryGetProperty("added_tokens", out var added))
                foreach (var t in added.EnumerateArray())
                    specials[t.GetProperty("content").GetString()!] = t.GetProperty("id").GetInt32();

            int size = Math.Max(vocab.Values.DefaultIfEmpty(-1).Max(), specials.Values.DefaultIfEmpty(-1).Max()) + 1;
            var bytes = new byte[size][];
            var isSpecial = new bool[size];
            var unicodeToByte = ByteLevel.UnicodeToByte;
            foreach (var (token, id) in vocab) bytes[id] = ByteLevel.ToBytes(token, unicodeToByte);
            foreach (var (token, id) in specials) { bytes[id] = Encoding.UTF8.GetBytes(token); isSpecial[id] = true; }
            for (int i = 0; i < size; i++) bytes[i] ??= [];

            var bpe = BpeTokenizer.Create(new BpeOptions(vocab.Where(kv => !specials.ContainsKey(kv.Key)))
            {
                Merges = merges,
                ByteLevel = true,
                SpecialTokens = specials,
                PreTokenizer = new RegexPreTokenizer(Gpt2Split(), specials),
            });
            return new TextTokenizer(bpe, bytes, isSpecial, specials);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or ArgumentException or FormatException)
        {
            throw new ModelPackageException(path, $"not a readable tokenizer.json ({e.Message})", e);
        }
    }

    /// <summary>Token ids of <paramref name="text"/>; special-token text (e.g. <c>&lt;|user|&gt;</c>) maps to its id.</summary>
    public IReadOnlyList<int> Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return text.Length == 0 ? [] : _bpe.EncodeToIds(text);
    }

    /// <summary>Text of <paramref name="ids"/>; invalid UTF-8, and ids past the tokenizer's vocabulary (a model's
    /// embedding table may be padded beyond it), become U+FFFD.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is negative.</exception>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var buffer = new List<byte>();
        foreach (int id in ids)
        {
            if (skipSpecialTokens && IsSpecial(id)) continue;
            buffer.AddRange(TokenBytes(id));
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static readonly byte[] Replacement = [0xEF, 0xBF, 0xBD];   // U+FFFD in UTF-8

    public bool IsSpecial(int id) => (uint)id < (uint)_isSpecial.Length && _isSpecial[id];

    internal ReadOnlySpan<byte> TokenBytes(int id)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        return id < _tokenBytes.Length ? _tokenBytes[id] : Replacement;
    }

    /// <summary>A decoder for a stream of ids that returns only complete UTF-8 characters.</summary>
    public StreamingTextDecoder CreateStreamingDecoder(bool skipSpecialTokens = true) => new(this, skipSpecialTokens);
}

/// <summary>Turns ids into text one at a time, holding back bytes of an unfinished UTF-8 character.</summary>
internal sealed class StreamingTextDecoder
{
    private readonly TextTokenizer _tokenizer;
    private readonly bool _skipSpecial;
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private char[] _chars = new char[64];

    internal StreamingTextDecoder(TextTokenizer tokenizer, bool skipSpecial)
    {
        _tokenizer = tokenizer;
        _skipSpecial = skipSpecial;
    }

    /// <summary>Returns the text completed by <paramref name="id"/> (empty while a character is unfinished).</summary>
    public string Append(int id)
    {
        if (_skipSpecial && _tokenizer.IsSpecial(id)) return "";
        var bytes = _tokenizer.TokenBytes(id);
        int need = _utf8.GetCharCount(bytes, flush: false);
        if (need > _chars.Length) _chars = new char[Math.Max(need, _chars.Length * 2)];
        int n = _utf8.GetChars(bytes, _chars, flush: false);
        return new string(_chars, 0, n);
    }

    /// <summary>Ends the stream: returns U+FFFD for any unfinished character.</summary>
    public string Flush()
    {
        int n = _utf8.GetChars(ReadOnlySpan<byte>.Empty, _chars, flush: true);
        return new string(_chars, 0, n);
    }
}

/// <summary>GPT-2's reversible byte &lt;-&gt; printable-character table used by byte-level BPE.</summary>
internal static class ByteLevel
{
    public static readonly IReadOnlyDictionary<char, byte> UnicodeToByte = Build();

    private static Dictionary<char, byte> Build()
    {
        var map = new Dictionary<char, byte>();
        int extra = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[(char)(printable ? b : 256 + extra++)] = (byte)b;
        }
        return map;
    }

    public static byte[] ToBytes(string token, IReadOnlyDictionary<char, byte> table)
    {
        var result = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!table.TryGetValue(token[i], out result[i]))
                return Encoding.UTF8.GetBytes(token); // not a byte-level symbol: keep its text
        }
        return result;
    }
}
