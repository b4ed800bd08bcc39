using System.Text;
using System.Text.Json;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Text;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c>: BPE (byte-level, Split + byte-level, SentencePiece-style with byte fallback)
/// or Unigram, with its normalizer, pre-tokenizer, added tokens, special-token template and decoder, giving the ids
/// Hugging Face tokenizers gives. Anything else is refused at load, naming the file and the piece. Immutable and safe
/// to share between threads. See docs/tokenizers.md.
/// </summary>
internal sealed class TextTokenizer
{
    private readonly TextNormalizer? _normalizer;
    private readonly PreTokenizer? _preTokenizer;
    private readonly TokenModel _model;
    private readonly AddedTokenMatcher _raw, _rawNonSpecial, _normalized, _normalizedNonSpecial;
    private readonly TokenDecoder _decoder;
    private readonly string?[] _tokens;          // id -> token text (model piece or added token)
    private readonly byte[][] _tokenBytes;       // id -> bytes through the decoder chain
    private readonly bool[] _isSpecial;
    private readonly SpecialTokenTemplate _template;

    /// <summary>Every added token of the file (special or not), by its text.</summary>
    public IReadOnlyDictionary<string, int> SpecialTokens { get; }
    /// <summary>Number of ids the tokenizer defines (largest id + 1).</summary>
    public int VocabularySize => _tokenBytes.Length;
    /// <summary>Ids put before the text when <c>addSpecialTokens</c> is set (e.g. BOS).</summary>
    public IReadOnlyList<int> PrefixTokens => _template.Prefix;
    /// <summary>Ids put after the text when <c>addSpecialTokens</c> is set (e.g. EOS).</summary>
    public IReadOnlyList<int> SuffixTokens => _template.Suffix;

    private TextTokenizer(TextNormalizer? normalizer, PreTokenizer? preTokenizer, TokenModel model, IReadOnlyList<AddedToken> added,
        TokenDecoder decoder, string?[] tokens, SpecialTokenTemplate template)
    {
        (_normalizer, _preTokenizer, _model, _decoder, _tokens, _template) = (normalizer, preTokenizer, model, decoder, tokens, template);
        _raw = new(added.Where(t => !t.Normalized));
        _rawNonSpecial = new(added.Where(t => !t.Normalized && !t.Special));
        _normalized = new(added.Where(t => t.Normalized));
        _normalizedNonSpecial = new(added.Where(t => t.Normalized && !t.Special));
        _isSpecial = new bool[tokens.Length];
        foreach (var t in added) _isSpecial[t.Id] |= t.Special;
        _tokenBytes = new byte[tokens.Length][];
        for (int i = 0; i < tokens.Length; i++) _tokenBytes[i] = tokens[i] is { } s ? decoder.Bytes(s, first: false) : Replacement;
        var specials = new Dictionary<string, int>();
        foreach (var t in added) specials.TryAdd(t.Content, t.Id);
        SpecialTokens = specials;
    }

    /// <summary>Loads a <c>tokenizer.json</c> (and reads <c>add_bos_token</c>/<c>add_eos_token</c> from a
    /// <c>tokenizer_config.json</c> beside it).</summary>
    /// <param name="path">The tokenizer.json file.</param>
    /// <param name="limits">Bounds on the file and on sizes read from it (<see cref="ResourceLimits.MaxTokenizerFileBytes"/>,
    /// token ids below <see cref="ResourceLimits.MaxVocabularySize"/>).</param>
    /// <exception cref="ModelPackageException">The file is missing or malformed, or uses a piece this class does not
    /// implement; the message names the file and the field.</exception>
    public static TextTokenizer Load(string path, ResourceLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new ModelPackageException(path, Directory.Exists(path) ? "is a directory, not a tokenizer.json" : "tokenizer file not found");
        limits ??= ResourceLimits.Default;
        int maxVocabulary = limits.MaxVocabularySize;
        var r = new TokenizerJsonReader(path);
        long length = new FileInfo(path).Length;
        if (length > limits.MaxTokenizerFileBytes)
            throw r.Error("file", $"{length} bytes exceed the limit of {limits.MaxTokenizerFileBytes} (ResourceLimits.MaxTokenizerFileBytes)");
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { MaxDepth = 64 });
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw r.Error("root", "expected an object");
            var model = TokenModel.FromJson(r.Required(root, "model", "root"), r, maxVocabulary);
            var normalizer = root.TryGetProperty("normalizer", out var n) ? TextNormalizer.FromJson(n, r) : null;
            var pre = root.TryGetProperty("pre_tokenizer", out var p) ? PreTokenizer.FromJson(p, r) : null;
            var decoder = TokenDecoder.Create(root.TryGetProperty("decoder", out var d) ? d : default, r);

            var added = new List<AddedToken>();
            if (root.TryGetProperty("added_tokens", out var a) && a.ValueKind != JsonValueKind.Null)
            {
                int i = 0;
                foreach (var t in r.Array(root, "added_tokens", "root").EnumerateArray()) added.Add(AddedToken.Read(t, r, $"added_tokens[{i++}]", maxVocabulary));
            }
            int size = Math.Max(model.Pieces.Length, added.Count == 0 ? 0 : added.Max(t => t.Id) + 1);
            var tokens = new string?[size];
            model.Pieces.CopyTo(tokens, 0);
            foreach (var t in added) tokens[t.Id] = t.Content;
            var byText = new Dictionary<string, int>();
            for (int i = tokens.Length - 1; i >= 0; i--) if (tokens[i] is { } s) byText[s] = i;
            foreach (var t in added) byText[t.Content] = t.Id;
            var template = SpecialTokenTemplate.Create(root, r, s => byText.TryGetValue(s, out int id) ? id : -1, maxVocabulary);
            foreach (int id in template.Prefix.Concat(template.Suffix))
                if (id >= size || tokens[id] is null) throw r.Error("post_processor", $"special token id {id} is not a token of the vocabulary");
            return new TextTokenizer(normalizer, pre, model, added, decoder, tokens, template);
        }
        catch (JsonException e)
        {
            throw new ModelPackageException(path, $"not a readable tokenizer.json ({e.Message})", e);
        }
    }

    /// <summary>Token ids of <paramref name="text"/>, equal to Hugging Face tokenizers' <c>encode</c>.</summary>
    /// <param name="text">The text.</param>
    /// <param name="addSpecialTokens">Add the template's ids (BOS/EOS) around the text.</param>
    /// <param name="parseSpecialTokens">Map special-token text (e.g. <c>&lt;|im_start|&gt;</c>) to its id; turn off
    /// for untrusted text, which is then tokenized as plain characters (non-special added tokens still match).</param>
    /// <exception cref="InvalidInputException">A regex of the file's pre-tokenizer or normalizer ran past its 10 s timeout.</exception>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false, bool parseSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        try { return EncodeCore(text, addSpecialTokens, parseSpecialTokens); }
        catch (System.Text.RegularExpressions.RegexMatchTimeoutException e)
        {
            throw new InvalidInputException("text", $"the tokenizer's pattern '{e.Pattern}' ran past {e.MatchTimeout.TotalSeconds:F0} s on this text", e);
        }
    }

    private List<int> EncodeCore(string text, bool addSpecialTokens, bool parseSpecialTokens)
    {
        text = WithoutLoneSurrogates(text);
        var ids = new List<int>(text.Length / 3 + 4);
        if (addSpecialTokens) ids.AddRange(_template.Prefix);
        var segments = new List<(string Text, int Id, int Offset)>();
        (parseSpecialTokens ? _raw : _rawNonSpecial).Split(text, 0, segments);
        var sub = new List<(string Text, int Id, int Offset)>();
        var normalizedMatcher = parseSpecialTokens ? _normalized : _normalizedNonSpecial;
        foreach (var (segment, id, offset) in segments)
        {
            if (id >= 0) { ids.Add(id); continue; }
            string normalized = _normalizer?.Normalize(segment) ?? segment;
            sub.Clear();
            normalizedMatcher.Split(normalized, offset, sub);
            for (int k = 0; k < sub.Count; k++)
            {
                if (sub[k].Id >= 0) { ids.Add(sub[k].Id); continue; }
                if (_preTokenizer is null) { _model.Tokenize(sub[k].Text, ids); continue; }
                foreach (string piece in _preTokenizer.Split([sub[k].Text], atStart: offset == 0 && k == 0)) _model.Tokenize(piece, ids);
            }
        }
        if (addSpecialTokens) ids.AddRange(_template.Suffix);
        return ids;
    }

    /// <summary>Text of <paramref name="ids"/> through the tokenizer's decoder; invalid UTF-8, and ids past the
    /// tokenizer's vocabulary (a model's embedding table may be padded beyond it), become U+FFFD.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is negative.</exception>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var stream = CreateStreamingDecoder(skipSpecialTokens);
        var text = new StringBuilder();
        foreach (int id in ids) text.Append(stream.Append(id));
        return text.Append(stream.Flush()).ToString();
    }

    private static readonly byte[] Replacement = [0xEF, 0xBF, 0xBD];   // U+FFFD in UTF-8

    /// <summary>Whether <paramref name="id"/> is a special added token (skipped by <c>skipSpecialTokens</c>).</summary>
    public bool IsSpecial(int id) => (uint)id < (uint)_isSpecial.Length && _isSpecial[id];

    internal ReadOnlySpan<byte> TokenBytes(int id, bool first = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(id);
        if (id >= _tokenBytes.Length) return Replacement;
        return first && _decoder.FirstTokenDiffers && _tokens[id] is { } s ? _decoder.Bytes(s, first: true) : _tokenBytes[id];
    }

    internal (byte Byte, int Count) LeadingStrip => (_decoder.StripByte, _decoder.StripCount);

    /// <summary>A decoder for a stream of ids that returns only complete UTF-8 characters.</summary>
    public StreamingTextDecoder CreateStreamingDecoder(bool skipSpecialTokens = true) => new(this, skipSpecialTokens);

    private static string WithoutLoneSurrogates(string text)
    {
        int i = 0;
        for (; i < text.Length; i++)
        {
            if (!char.IsSurrogate(text[i])) continue;
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { i++; continue; }
            break;
        }
        if (i >= text.Length) return text;
        var sb = new StringBuilder(text.Length);
        for (int k = 0; k < text.Length; k++)
        {
            if (char.IsHighSurrogate(text[k]) && k + 1 < text.Length && char.IsLowSurrogate(text[k + 1])) { sb.Append(text, k++, 2); continue; }
            sb.Append(char.IsSurrogate(text[k]) ? '\uFFFD' : text[k]);
        }
        return sb.ToString();
    }
}
