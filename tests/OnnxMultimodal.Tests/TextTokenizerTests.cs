using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Text;

namespace OnnxMultimodal.Tests;

public class TextTokenizerTests
{
    private static readonly TextReference Ref = TestData.LoadTextReference("tiny-llama");
    private static readonly TextTokenizer Tokenizer = TextTokenizer.Load(Path.Combine(TestData.TinyLlama, "tokenizer.json"));

    private static IEnumerable<TestCaseData> Probes() =>
        Ref.Tokenizer.Select(c => new TestCaseData(c.Text, c.Ids).SetArgDisplayNames(c.Text.Length > 20 ? c.Text[..20] : c.Text));

    [TestCaseSource(nameof(Probes))]
    public void Ids_equal_the_python_tokenizer(string text, int[] expected)
    {
        Assert.That(Tokenizer.Encode(text), Is.EqualTo(expected));
    }

    [Test]
    public void Prompt_ids_equal_the_reference_with_bos_first()
    {
        var bos = ModelPackage.Open(TestData.TinyLlama).Manifest.Tokens.Bos!.Value;
        foreach (var p in Ref.Prompts)
            Assert.That(new[] { bos }.Concat(Tokenizer.Encode(p.Text)), Is.EqualTo(p.Ids), p.Text);
    }

    [TestCaseSource(nameof(Probes))]
    public void Decode_round_trips(string text, int[] ids)
    {
        Assert.That(Tokenizer.Decode(ids), Is.EqualTo(text));
    }

    [Test]
    public void Streaming_decode_emits_only_whole_characters()
    {
        const string text = "naïve café — 日本語 🙂 emoji";
        var ids = Tokenizer.Encode(text);
        var decoder = Tokenizer.CreateStreamingDecoder();
        var pieces = ids.Select(decoder.Append).ToList();
        pieces.Add(decoder.Flush());
        Assert.That(string.Concat(pieces), Is.EqualTo(text));
        Assert.That(pieces.All(p => !p.Contains('\uFFFD')), "no replacement characters: multi-byte characters are held back until complete");
        Assert.That(pieces.Any(p => p.Length == 0), "some tokens end inside a character (byte-level BPE), so some deltas must be empty");
        foreach (var p in pieces)
            Assert.That(p.Length == 0 || !char.IsHighSurrogate(p[^1]), $"'{p}' ends inside a surrogate pair");
    }

    [Test]
    public void Special_tokens_encode_to_their_ids_and_can_be_skipped()
    {
        int user = Tokenizer.SpecialTokens["<|user|>"], end = Tokenizer.SpecialTokens["<|end|>"];
        var ids = Tokenizer.Encode("<|user|>Hello<|end|>");
        Assert.That(ids[0], Is.EqualTo(user));
        Assert.That(ids[^1], Is.EqualTo(end));
        Assert.That(Tokenizer.Decode(ids, skipSpecialTokens: true), Is.EqualTo("Hello"));
        Assert.That(Tokenizer.Decode(ids), Is.EqualTo("<|user|>Hello<|end|>"));
    }

    [Test]
    public void Unfinished_character_at_the_end_becomes_a_replacement()
    {
        var ids = Tokenizer.Encode("🙂");
        Assert.That(ids, Has.Count.GreaterThan(1), "the emoji is several byte tokens");
        var decoder = Tokenizer.CreateStreamingDecoder();
        Assert.That(decoder.Append(ids[0]), Is.Empty);
        Assert.That(decoder.Flush(), Is.EqualTo("\uFFFD"));
    }

    [Test]
    public void Bad_tokenizer_files_name_the_file()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omm-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "tokenizer.json");
        File.WriteAllText(path, "{ not json");
        var e = Assert.Throws<ModelPackageException>(() => TextTokenizer.Load(path))!;
        Assert.That(e.Path, Is.EqualTo(path));
        File.WriteAllText(path, """{"model": {"type": "WordPiece"}, "pre_tokenizer": null}""");
        Assert.That(Assert.Throws<ModelPackageException>(() => TextTokenizer.Load(path))!.Message, Does.Contain("WordPiece"));
        Assert.Throws<ModelPackageException>(() => TextTokenizer.Load(Path.Combine(dir, "missing.json")));
    }

    [Test]
    public void Ids_past_the_tokenizer_but_inside_a_padded_model_vocabulary_decode_as_replacement_characters()
    {
        var tok = Tokenizer;
        var hello = tok.Encode("hello");
        var stream = tok.CreateStreamingDecoder();
        string text = string.Concat(hello.Select(stream.Append)) + stream.Append(tok.VocabularySize + 100) + stream.Flush();
        Assert.That(text, Is.EqualTo("hello\uFFFD"));
        Assert.That(tok.Decode([.. hello, 1_000_000]), Is.EqualTo("hello\uFFFD"));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.Decode([-1]));
    }
}
