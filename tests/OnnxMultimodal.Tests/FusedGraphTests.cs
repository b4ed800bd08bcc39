using System.Text.Json;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The fused decoder graphs (GroupQueryAttention with one max-length cache bound as past and present,
/// SkipSimplifiedLayerNorm, MatMulNBits) through our engine's shared-cache path, and the fp16 reference graph through
/// its concat path, on CPU, against the PyTorch references.
/// </summary>
[TestFixture("tiny-llama-fused", 1e-4, 1.0)]   // fp32: float reassociation only
[TestFixture("tiny-llama-fp16", 1e-2, 0.9)]    // fp16 weights, activations and cache
[TestFixture("tiny-llama-int4", 1e-4, 1.0)]    // int4 weights at accuracy level 1 (fp32 compute) against the dequantized PyTorch model
[TestFixture("tiny-llama-ref16", 1e-2, 0.9)]   // the reference graph in fp16 (concat cache in fp16, weights in decoder.onnx.data), made by `omm_export convert`
public class FusedGraphTests(string model, double logitTolerance, double tokenAgreement)
{
    private TextReference _ref = null!;
    private OrtDecodeEngine _engine = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _ref = TestData.LoadTextReference(model);
        _engine = OrtDecodeEngine.Create(ModelPackage.Open(TestData.Model(model)), ExecutionOptions.Cpu);
    }

    [OneTimeTearDown]
    public void Unload() => _engine.Dispose();

    [Test]
    public void Prefill_logits_and_greedy_tokens_match_the_reference()
    {
        foreach (var p in _ref.Prompts)
        {
            var reference = TestData.ReadFloats(Path.Combine(_ref.Directory, p.LogitsFile));
            int v = p.LogitsShape[1];
            using var seq = _engine.Start(p.Ids, new SamplingOptions { MaxNewTokens = p.Greedy.Length, IgnoreStopTokens = true });
            var all = OrtDecodeEngine.AllPrefillLogits(seq);
            double maxDiff = 0, maxRef = 0;
            for (int i = 0; i < reference.Length; i++) { maxDiff = Math.Max(maxDiff, Math.Abs(all[i] - reference[i])); maxRef = Math.Max(maxRef, Math.Abs(reference[i])); }
            Assert.That(maxDiff / maxRef, Is.LessThan(logitTolerance), $"{p}: prefill logits, all {p.Ids.Length} positions of {v}");
            while (!seq.IsDone) seq.GenerateNextToken();
            int agree = seq.Tokens.Skip(p.Ids.Length).Zip(p.Greedy).Count(x => x.First == x.Second);
            TestContext.Out.WriteLine($"{model} '{p}': {agree}/{p.Greedy.Length} greedy tokens agree");
            Assert.That(agree, Is.GreaterThanOrEqualTo((int)Math.Ceiling(tokenAgreement * p.Greedy.Length)), p.ToString());
        }
    }
}

public class SharedCacheTests
{
    [Test]
    public void Shared_cache_and_concat_engines_agree_on_the_same_weights()
    {
        using var shared = OrtDecodeEngine.Create(ModelPackage.Open(TestData.Model("tiny-llama-fused")), ExecutionOptions.Cpu);
        using var concat = OrtDecodeEngine.Create(ModelPackage.Open(TestData.TinyLlama), ExecutionOptions.Cpu);
        var prompt = new[] { 1, 300, 200, 100, 50, 7, 99 };
        var options = new SamplingOptions { MaxNewTokens = 200, IgnoreStopTokens = true };
        using var a = shared.Start(prompt, options);
        using var b = concat.Start(prompt, options);
        while (!a.IsDone) a.GenerateNextToken();
        while (!b.IsDone) b.GenerateNextToken();
        Assert.That(a.Tokens, Is.EqualTo(b.Tokens), "200 tokens: GroupQueryAttention with the in-place cache vs the reference graph");
    }
}
