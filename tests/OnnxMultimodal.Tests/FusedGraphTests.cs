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
[TestFixture("tiny-llama-fused-sample", 1e-4, 1.0)]   // tiny-llama-fused + the sampling head: greedy steps take the graph's choice
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

/// <summary>
/// A package whose prompts run through a second decoder graph (its prefill_decoder: e.g. fp16 weights,
/// fast for long prompts) into the same in-place cache that the decoder (e.g. int4) then steps on.
/// Here: tiny-llama-int4 decoding after tiny-llama-fused's fp32 prefill.
/// </summary>
public class PrefillDecoderTests
{
    /// <summary>A package folder holding only a manifest: <paramref name="decoderModel"/>'s, its components
    /// named by absolute path, plus <paramref name="prefillModel"/>'s decoder as the prefill decoder.</summary>
    private static string MixedPackage(string decoderModel, string prefillModel) =>
        TestData.PackageWith(decoderModel, ("prefill_decoder", prefillModel, "decoder"));

    private static int[] Greedy(OrtDecodeEngine engine, int[] prompt, int n, out float[] prefill)
    {
        using var seq = engine.Start(prompt, new SamplingOptions { MaxNewTokens = n, IgnoreStopTokens = true });
        prefill = OrtDecodeEngine.AllPrefillLogits(seq).ToArray();
        while (!seq.IsDone) seq.GenerateNextToken();
        return seq.Tokens.Skip(prompt.Length).ToArray();
    }

    [Test]
    public void Prompts_run_on_the_prefill_decoder_and_steps_on_the_decoder()
    {
        string same = MixedPackage("tiny-llama-int4", "tiny-llama-int4");    // the plumbing: its own graph as prefill
        string mixed = MixedPackage("tiny-llama-int4", "tiny-llama-fused");  // fp32 prompts, int4 steps
        try
        {
            var reference = TestData.LoadTextReference("tiny-llama-int4");
            using var viaSame = OrtDecodeEngine.Create(ModelPackage.Open(same), ExecutionOptions.Cpu);
            using var viaMixed = OrtDecodeEngine.Create(ModelPackage.Open(mixed), ExecutionOptions.Cpu);
            using var fused = OrtDecodeEngine.Create(ModelPackage.Open(TestData.Model("tiny-llama-fused")), ExecutionOptions.Cpu);
            using var int4 = OrtDecodeEngine.Create(ModelPackage.Open(TestData.Model("tiny-llama-int4")), ExecutionOptions.Cpu);
            Assert.That(viaMixed.PrefillSession, Is.Not.Null);
            foreach (var p in reference.Prompts)
            {
                int n = p.Greedy.Length;
                var expected = Greedy(int4, p.Ids, n, out var int4Prefill);
                Assert.That(Greedy(viaSame, p.Ids, n, out _), Is.EqualTo(expected), $"{p}: a prefill session sharing the cache changes nothing");
                var tokens = Greedy(viaMixed, p.Ids, n, out var mixedPrefill);
                Greedy(fused, p.Ids, 1, out var fusedPrefill);
                Assert.That(mixedPrefill, Is.EqualTo(fusedPrefill), $"{p}: the prompt ran on the fp32 prefill graph");
                Assert.That(mixedPrefill, Is.Not.EqualTo(int4Prefill), $"{p}: not on the int4 graph");
                // The tiny random model has no margins to speak of, so the mixed run's tokens are reported, not bounded.
                TestContext.Out.WriteLine($"{p}: fp32 prefill + int4 steps agree with int4 alone on {tokens.Zip(expected).Count(x => x.First == x.Second)}/{n} tokens");
            }
        }
        finally
        {
            Directory.Delete(same, true);
            Directory.Delete(mixed, true);
        }
    }

    [Test]
    public void Speech_int4_decoder_after_an_fp16_prefill_decoder() => SpeechWithFp16Prefill(ExecutionOptions.Cpu, ExecutionOptions.Cpu);

    /// <summary>tiny-seamless-int4 with tiny-seamless-fp16 as its prefill decoder: the first logits are the
    /// fp16 graph's, and <paramref name="execution"/> (e.g. captured) steps equal <paramref name="plain"/> ones.</summary>
    internal static void SpeechWithFp16Prefill(ExecutionOptions execution, ExecutionOptions plain)
    {
        string dir = MixedPackage("tiny-seamless-int4", "tiny-seamless-fp16");
        try
        {
            var features = TestData.ReadFloats(Path.Combine(TestData.Model("tiny-seamless"), "reference", "robot_16k.features.bin"));
            float[] Run(string model, ExecutionOptions options, out int[] tokens)
            {
                using var pipeline = MultimodalPipeline.LoadAsync(model, new PipelineOptions { Execution = options }).GetAwaiter().GetResult();
                using var encoder = pipeline.SpeechEncoder!.Encode(features);
                using var seq = ((OrtDecodeEngine)pipeline.Engine).StartWithEncoder(encoder, [3, 4], new SamplingOptions { MaxNewTokens = 12, IgnoreStopTokens = true });
                var first = seq.PrefillLogits.ToArray();
                while (!seq.IsDone) seq.GenerateNextToken();
                tokens = seq.Tokens.Skip(2).ToArray();
                return first;
            }
            var mixed = Run(dir, execution, out var mixedTokens);
            var fp16 = Run(TestData.Model("tiny-seamless-fp16"), plain, out _);
            Run(dir, plain, out var plainTokens);
            Assert.That(mixed, Is.EqualTo(fp16), "the prompt ran on the fp16 graph");
            Assert.That(mixedTokens, Is.EqualTo(plainTokens), "the int4 steps after the fp16 prefill");
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Test]
    public void A_prefill_decoder_with_another_cache_is_refused_by_name()
    {
        string dir = MixedPackage("tiny-llama-fp16", "tiny-llama-fused");   // fp16 cache vs an fp32 one
        try
        {
            var e = Assert.Throws<ModelPackageException>(() => OrtDecodeEngine.Create(ModelPackage.Open(dir), ExecutionOptions.Cpu))!;
            Assert.That(e.Message, Does.Contain("tiny-llama-fused").And.Contain("cache"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
        dir = MixedPackage("tiny-llama", "tiny-llama-fused");   // a concat decoder cannot share its cache
        try
        {
            var e = Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!;
            Assert.That(e.Message, Does.Contain("prefill_decoder").And.Contain("shared-cache"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
