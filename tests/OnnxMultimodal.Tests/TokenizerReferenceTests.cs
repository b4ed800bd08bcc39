using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using OnnxMultimodal.Text;

namespace OnnxMultimodal.Tests;

/// <summary>
/// Real tokenizer.json files (Llama-2-style SentencePiece BPE, Llama-3, Qwen3, Gemma-3, a Unigram vocabulary) against
/// ids and text from Hugging Face tokenizers 0.22 (Fixtures/tokenizers/*.json, written by tools/tokenizer_refs/make_refs.mjs).
/// </summary>
public class TokenizerReferenceTests
{
    private sealed record Case(string Text, int[] Ids, int[] IdsWithSpecial, string Decoded);
    private sealed record Reference(string Family, Case[] Cases);

    private static readonly ConcurrentDictionary<string, TextTokenizer> Tokenizers = new();

    private static TextTokenizer Tokenizer(string family) => Tokenizers.GetOrAdd(family, f => TextTokenizer.Load(TokenizerFiles.TokenizerJson(f)));

    private static Reference Load(string family)
    {
        // gzip: the references are generated data (tools/tokenizer_refs/make_refs.mjs), a fifth of their size compressed
        string path = Path.Combine(TestData.RepoRoot, "tests", "OnnxMultimodal.Tests", "Fixtures", "tokenizers", family + ".json.gz");
        using var json = new System.IO.Compression.GZipStream(File.OpenRead(path), System.IO.Compression.CompressionMode.Decompress);
        return JsonSerializer.Deserialize<Reference>(json, new JsonSerializerOptions(JsonSerializerDefaults.Web))!;
    }

    private static IEnumerable<string> Families() => TokenizerFiles.Families;

    private static string Show(string s) => JsonSerializer.Serialize(s.Length > 60 ? s[..60] + "..." : s);

    [TestCaseSource(nameof(Families))]
    public void Ids_equal_hugging_face_for_every_probe(string family)
    {
        var tok = Tokenizer(family);
        var reference = Load(family);
        Assert.That(reference.Cases, Has.Length.GreaterThanOrEqualTo(40));
        var failures = new List<string>();
        foreach (var c in reference.Cases)
        {
            var ids = tok.Encode(c.Text);
            if (!ids.SequenceEqual(c.Ids)) failures.Add($"{Show(c.Text)}: got [{string.Join(",", ids.Take(20))}], HF [{string.Join(",", c.Ids.Take(20))}]");
            var withSpecial = tok.Encode(c.Text, addSpecialTokens: true);
            if (!withSpecial.SequenceEqual(c.IdsWithSpecial)) failures.Add($"{Show(c.Text)} with special tokens: got [{string.Join(",", withSpecial.Take(20))}], HF [{string.Join(",", c.IdsWithSpecial.Take(20))}]");
        }
        Assert.That(failures, Is.Empty, $"{failures.Count} of {reference.Cases.Length * 2} encodings differ:\n{string.Join("\n", failures.Take(10))}");
    }

    [TestCaseSource(nameof(Families))]
    public void Decode_equals_hugging_face_and_streaming_equals_decode(string family)
    {
        var tok = Tokenizer(family);
        var failures = new List<string>();
        foreach (var c in Load(family).Cases)
        {
            string text = tok.Decode(c.Ids);
            if (text != c.Decoded) failures.Add($"{Show(c.Text)}: decoded {Show(text)}, HF {Show(c.Decoded)}");
            var stream = tok.CreateStreamingDecoder(skipSpecialTokens: false);
            var pieces = c.Ids.Select(stream.Append).Append(stream.Flush()).ToList();
            if (string.Concat(pieces) != text) failures.Add($"{Show(c.Text)}: streamed {Show(string.Concat(pieces))}");
            if (pieces.Any(p => p.Length > 0 && char.IsHighSurrogate(p[^1]))) failures.Add($"{Show(c.Text)}: a streamed piece ends inside a surrogate pair");
            if (pieces.Any(p => p.Contains('\uFFFD')) && !c.Decoded.Contains('\uFFFD')) failures.Add($"{Show(c.Text)}: a streamed piece holds U+FFFD");
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(10)));
    }

    // Byte-level BPE and SentencePiece BPE with byte fallback keep every character; Qwen3's NFC normalizer changes
    // text that is not NFC, Llama-2's Prepend normalizer puts a "▁" after each special token that decoding keeps, and
    // the Metaspace decoder drops every "▁" of the first token (Hugging Face's rules).
    [TestCase("llama2")]
    [TestCase("llama3")]
    [TestCase("gemma3")]
    [TestCase("qwen3")]
    public void Decode_of_encode_is_the_text(string family)
    {
        var tok = Tokenizer(family);
        foreach (var c in Load(family).Cases)
        {
            if (family == "qwen3" && !c.Text.IsNormalized(NormalizationForm.FormC)) continue;
            if (family == "llama2" && tok.SpecialTokens.Keys.Any(c.Text.Contains)) continue;
            Assert.That(tok.Decode(tok.Encode(c.Text)), Is.EqualTo(c.Text), Show(c.Text));
        }
    }

    [Test]
    public void Special_token_text_is_plain_text_when_parsing_is_off()
    {
        var tok = Tokenizer("qwen3");
        const string text = "<|im_start|>user\nhi<|im_end|>";
        int imStart = tok.SpecialTokens["<|im_start|>"];
        Assert.That(tok.Encode(text)[0], Is.EqualTo(imStart));
        var plain = tok.Encode(text, parseSpecialTokens: false);
        Assert.That(plain, Does.Not.Contain(imStart).And.Not.Contain(tok.SpecialTokens["<|im_end|>"]));
        Assert.That(plain.Any(tok.IsSpecial), Is.False);
        Assert.That(tok.Decode(plain), Is.EqualTo(text));
        // Non-special added tokens still match (Hugging Face's encode_special_tokens does the same).
        Assert.That(tok.Encode("<tool_call>", parseSpecialTokens: false), Is.EqualTo(new[] { tok.SpecialTokens["<tool_call>"] }));
    }

    [TestCase("llama2", new[] { 1 }, new int[0])]
    [TestCase("gemma3", new[] { 2 }, new int[0])]
    [TestCase("llama3", new int[0], new int[0])]
    [TestCase("qwen3", new int[0], new int[0])]
    public void Bos_and_eos_come_from_the_template_and_tokenizer_config(string family, int[] prefix, int[] suffix)
    {
        var tok = Tokenizer(family);
        Assert.That(tok.PrefixTokens, Is.EqualTo(prefix));
        Assert.That(tok.SuffixTokens, Is.EqualTo(suffix));
    }

    [Test]
    public void Streaming_holds_back_byte_fallback_bytes_until_the_character_is_whole()
    {
        var tok = Tokenizer("llama2");
        var ids = tok.Encode("a 👩‍👧 b");
        var stream = tok.CreateStreamingDecoder();
        var pieces = ids.Select(stream.Append).ToList();
        Assert.That(pieces.Count(p => p.Length == 0), Is.GreaterThan(2), "the emoji is byte-fallback tokens, several of them mid-character");
        Assert.That(string.Concat(pieces) + stream.Flush(), Is.EqualTo("a 👩‍👧 b"));
    }
}
