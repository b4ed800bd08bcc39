using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Text;

namespace OnnxMultimodal.Tests;

/// <summary>Hostile and unsupported tokenizer.json files fail at load with a <see cref="ModelPackageException"/>
/// naming the file and the field, before anything is sized from the file.</summary>
public class TokenizerLoadTests
{
    private const string Vocab = """{"a": 0, "b": 1, "ab": 2, "<s>": 3}""";

    private static string Write(string json)
    {
        string dir = Path.Combine(Path.GetTempPath(), "omm-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "tokenizer.json");
        File.WriteAllText(path, json);
        return path;
    }

    private static string Bpe(string vocab = Vocab, string merges = """["a b"]""", string added = "[]", string normalizer = "null",
        string pre = """{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}""", string decoder = """{"type": "ByteLevel"}""",
        string post = "null") => $$$"""
        {"added_tokens": {{{added}}}, "normalizer": {{{normalizer}}}, "pre_tokenizer": {{{pre}}}, "post_processor": {{{post}}}, "decoder": {{{decoder}}},
         "model": {"type": "BPE", "vocab": {{{vocab}}}, "merges": {{{merges}}}}}
        """;

    private static ModelPackageException Refused(string json, params string[] fragments)
    {
        string path = Write(json);
        var e = Assert.Throws<ModelPackageException>(() => TextTokenizer.Load(path))!;
        Assert.That(e.Path, Is.EqualTo(path));
        foreach (var f in fragments) Assert.That(e.Message, Does.Contain(f));
        return e;
    }

    [Test]
    public void A_well_formed_minimal_file_loads_and_encodes()
    {
        var tok = TextTokenizer.Load(Write(Bpe()));
        Assert.That(tok.Encode("ab"), Is.EqualTo(new[] { 2 }));
        Assert.That(tok.Decode([2, 0]), Is.EqualTo("aba"));
    }

    [Test]
    public void A_huge_token_id_is_refused_before_allocating()
    {
        long before = GC.GetTotalAllocatedBytes(precise: true);
        Refused(Bpe(vocab: """{"a": 0, "b": 1, "ab": 2000000000}"""), "model.vocab[\"ab\"]", "2000000000", "MaxVocabularySize");
        Assert.That(GC.GetTotalAllocatedBytes(precise: true) - before, Is.LessThan(64L << 20), "no table is sized from the id");
        Refused(Bpe(added: """[{"id": 2000000000, "content": "<x>", "special": true}]"""), "added_tokens[0].id", "2000000000");
        Refused(Bpe(post: """{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [2147483647], "tokens": ["<s>"]}}}"""),
            "post_processor.special_tokens.<s>.ids", "2147483647");
    }

    [Test]
    public void The_vocabulary_limit_comes_from_resource_limits()
    {
        string path = Write(Bpe());
        var e = Assert.Throws<ModelPackageException>(() => TextTokenizer.Load(path, new ResourceLimits { MaxVocabularySize = 3 }))!;
        Assert.That(e.Message, Does.Contain("<s>").And.Contain("3"));
    }

    [Test]
    public void An_oversized_file_and_a_template_id_outside_the_vocabulary_are_refused()
    {
        string path = Write(Bpe());
        var e = Assert.Throws<ModelPackageException>(() => TextTokenizer.Load(path, new ResourceLimits { MaxTokenizerFileBytes = 100 }))!;
        Assert.That(e.Message, Does.Contain("MaxTokenizerFileBytes"));
        Refused(Bpe(post: """{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [900], "tokens": ["<s>"]}}}"""),
            "post_processor", "900");
    }

    [Test]
    public void Negative_and_non_integer_ids_name_the_field()
    {
        Refused(Bpe(vocab: """{"a": 0, "b": -5, "ab": 2}"""), "model.vocab[\"b\"]", "negative");
        Refused(Bpe(vocab: """{"a": 0, "b": 1.5, "ab": 2}"""), "model.vocab[\"b\"]", "integer");
        Refused(Bpe(added: """[{"id": -1, "content": "<x>"}]"""), "added_tokens[0].id", "negative");
        Refused(Bpe(added: """[{"content": "<x>"}]"""), "added_tokens[0].id", "missing");
    }

    [Test]
    public void Malformed_merges_name_the_merge()
    {
        Refused(Bpe(merges: """["ab"]"""), "model.merges[0]");
        Refused(Bpe(merges: """["a b", "a c"]"""), "model.merges[1]", "'c' is not in model.vocab");
        Refused(Bpe(merges: """["b b"]"""), "model.merges[0]", "'bb' is not in model.vocab");
        Refused(Bpe(merges: """[["a"]]"""), "model.merges[0]");
        Refused(Bpe(merges: """[17]"""), "model.merges[0]");
        Refused(Bpe(merges: "null"), "model.merges", "missing");
    }

    [Test]
    public void Malformed_unigram_vocabularies_name_the_entry()
    {
        string Unigram(string vocab, string unk = "0") => $$$"""
            {"pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
             "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
             "model": {"type": "Unigram", "unk_id": {{{unk}}}, "vocab": {{{vocab}}}}}
            """;
        var tok = TextTokenizer.Load(Write(Unigram("""[["<unk>", 0], ["▁a", -1], ["b", -2], ["▁", -3]]""")));
        Assert.That(tok.Encode("a b ab"), Is.EqualTo(new[] { 1, 3, 2, 1, 2 }));
        Refused(Unigram("""[["<unk>", 0], ["a"]]"""), "model.vocab[1]");
        Refused(Unigram("""[["<unk>", 0], ["a", "x"]]"""), "model.vocab[1]", "number");
        Refused(Unigram("""[["<unk>", 0]]""", unk: "7"), "model.unk_id", "7");
        Refused(Unigram("""[["<unk>", 0]]""", unk: "-1"), "model.unk_id", "negative");
    }

    [TestCase("normalizer", """{"type": "Lowercase"}""", "normalizer 'Lowercase' is not supported")]
    [TestCase("normalizer", """{"type": "Precompiled", "precompiled_charsmap": "AAAA"}""", "normalizer 'Precompiled' is not supported")]
    [TestCase("normalizer", """{"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "StripAccents"}]}""", "normalizer.normalizers[1] 'StripAccents' is not supported")]
    [TestCase("pre", """{"type": "Whitespace"}""", "pre_tokenizer 'Whitespace' is not supported")]
    [TestCase("pre", """{"type": "Digits", "individual_digits": true}""", "pre_tokenizer 'Digits' is not supported")]
    [TestCase("pre", """{"type": "Split", "pattern": {"Regex": "x"}, "behavior": "Isolated", "invert": true}""", "invert")]
    [TestCase("decoder", """{"type": "WordPiece"}""", "decoder 'WordPiece' is not supported")]
    [TestCase("decoder", "null", "decoder 'null' is not supported")]
    [TestCase("decoder", """{"type": "Sequence", "decoders": [{"type": "Strip", "content": " ", "start": 1, "stop": 0}]}""", "per-token Strip")]
    [TestCase("post", """{"type": "BertProcessing", "sep": ["[SEP]", 102], "cls": ["[CLS]", 101]}""", "post_processor 'BertProcessing' is not supported")]
    public void Unsupported_pieces_are_refused_by_name(string stage, string json, string message)
    {
        string file = stage switch
        {
            "normalizer" => Bpe(normalizer: json),
            "pre" => Bpe(pre: json),
            "decoder" => Bpe(decoder: json),
            _ => Bpe(post: json),
        };
        Refused(file, message);
    }

    [Test]
    public void Unsupported_models_and_bpe_options_are_refused()
    {
        Refused("""{"model": {"type": "WordLevel", "vocab": {}}}""", "model 'WordLevel' is not supported");
        Refused(Bpe().Replace("\"type\": \"BPE\",", "\"type\": \"BPE\", \"dropout\": 0.1,"), "model.dropout");
        Refused(Bpe().Replace("\"type\": \"BPE\",", "\"type\": \"BPE\", \"continuing_subword_prefix\": \"##\","), "continuing_subword_prefix");
        Refused("""[1, 2]""", "root");
        Refused("""{"model": null}""", "model", "missing");
    }
}
