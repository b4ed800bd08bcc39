using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

/// <summary>Both engines against the PyTorch references of the tiny llama (fp32).</summary>
[TestFixture(EngineKind.Ort)]
[TestFixture(EngineKind.GenAi)]
public class DecodeEngineTests(EngineKind kind)
{
    // fp32 graph vs fp32 PyTorch: the error is float reassociation only; 1e-4 of the largest logit.
    private const double LogitTolerance = 1e-4;

    private static readonly TextReference Ref = TestData.LoadTextReference("tiny-llama");
    private IDecodeEngine _engine = null!;

    [OneTimeSetUp]
    public void Load()
    {
        var package = ModelPackage.Open(TestData.TinyLlama);
        _engine = kind == EngineKind.Ort ? OrtDecodeEngine.Create(package, Runtime.ExecutionOptions.Cpu) : TestData.GenAi(package);
    }

    [OneTimeTearDown]
    public void Unload() => _engine?.Dispose();

    private static IEnumerable<PromptCase> Prompts() => Ref.Prompts;

    private static double RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs(actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs(expected[i]));
        }
        return maxDiff / maxRef;
    }

    [TestCaseSource(nameof(Prompts))]
    public void First_step_logits_match_pytorch(PromptCase p)
    {
        var reference = TestData.ReadFloats(Path.Combine(Ref.Directory, p.LogitsFile));   // [S, V]
        int v = p.LogitsShape[1];
        using var seq = _engine.Start(p.Ids, SamplingOptions.Greedy);
        Assert.That(seq.PrefillLogits.Length, Is.EqualTo(v));
        Assert.That(RelativeError(seq.PrefillLogits, reference.AsSpan(reference.Length - v)), Is.LessThan(LogitTolerance), "last position");
        if (kind == EngineKind.Ort)   // our engine exposes every prompt position
            Assert.That(RelativeError(OrtDecodeEngine.AllPrefillLogits(seq), reference), Is.LessThan(LogitTolerance), "all positions");
    }

    [TestCaseSource(nameof(Prompts))]
    public void Greedy_tokens_equal_pytorch(PromptCase p)
    {
        // The closest top-1/top-2 gap in the reference is far above the logit error (~1e-5 absolute):
        // a token mismatch would be a real defect, not a near-tie flipping.
        Assert.That(p.GreedyMinMargin, Is.GreaterThan(1e-3));
        using var seq = _engine.Start(p.Ids, new SamplingOptions { MaxNewTokens = p.Greedy.Length, IgnoreStopTokens = true });
        while (!seq.IsDone) seq.GenerateNextToken();
        Assert.That(seq.Tokens.Skip(p.Ids.Length), Is.EqualTo(p.Greedy));
        Assert.That(seq.FinishReason, Is.EqualTo(FinishReason.MaxTokens));
    }

    [Test]
    public void Seeded_sampling_is_reproducible()
    {
        var s = Ref.Sampling;
        var options = new SamplingOptions { Temperature = s.Temperature, TopK = s.TopK, TopP = s.TopP, RepetitionPenalty = s.RepetitionPenalty,
                                            Seed = s.Seed, MaxNewTokens = s.Steps, IgnoreStopTokens = true };
        int[] Run()
        {
            using var seq = _engine.Start(s.Ids, options);
            while (!seq.IsDone) seq.GenerateNextToken();
            return seq.Tokens.Skip(s.Ids.Length).ToArray();
        }
        var first = Run();
        Assert.That(Run(), Is.EqualTo(first), "same seed, same tokens");
        Assert.That(first.Distinct().Count(), Is.GreaterThan(3), "sampling, not a constant");
        if (kind == EngineKind.Ort)
            Assert.That(first, Is.EqualTo(s.Tokens), "our sampler reproduces the documented Python procedure draw for draw");
    }

    [Test]
    public void Prompt_that_fills_the_context_is_refused()
    {
        var prompt = Enumerable.Repeat(5, _engine.ContextLength).ToArray();
        var e = Assert.Throws<PromptTooLongException>(() => _engine.Start(prompt, SamplingOptions.Greedy))!;
        Assert.That(e.PromptTokens, Is.EqualTo(_engine.ContextLength));
        Assert.That(e.Message, Does.Contain("context"));
    }

    [Test]
    public void Generation_stops_when_the_context_is_full()
    {
        var prompt = Enumerable.Repeat(5, _engine.ContextLength - 3).ToArray();
        using var seq = _engine.Start(prompt, new SamplingOptions { MaxNewTokens = 50, IgnoreStopTokens = true });
        int n = 0;
        while (!seq.IsDone) { seq.GenerateNextToken(); n++; }
        Assert.That(n, Is.EqualTo(3));
        Assert.That(seq.FinishReason, Is.EqualTo(FinishReason.ContextFull));
    }

    [Test]
    public void Token_ids_outside_the_vocabulary_are_refused()
    {
        Assert.Throws<InvalidInputException>(() => _engine.Start([1, _engine.VocabularySize + 7], SamplingOptions.Greedy));
        Assert.Throws<InvalidInputException>(() => _engine.Start([], SamplingOptions.Greedy));
    }

    [Test]
    public void Stop_tokens_end_the_sequence()
    {
        var p = Ref.Prompts[0];
        int stop = p.Greedy[3];
        using var seq = _engine.Start(p.Ids, new SamplingOptions { MaxNewTokens = 32, StopTokenIds = [stop] });
        while (!seq.IsDone) seq.GenerateNextToken();
        Assert.That(seq.FinishReason, Is.EqualTo(FinishReason.StopToken));
        Assert.That(seq.Tokens.Skip(p.Ids.Length), Is.EqualTo(p.Greedy.Take(p.Greedy.ToList().IndexOf(stop) + 1)));
    }
}

/// <summary>The two engines side by side on the same prompts.</summary>
public class EngineAgreementTests
{
    [Test]
    public void Ort_and_genai_generate_the_same_tokens()
    {
        var package = ModelPackage.Open(TestData.TinyLlama);
        using var ort = OrtDecodeEngine.Create(package, Runtime.ExecutionOptions.Cpu);
        using var genai = TestData.GenAi(package);
        var prompts = new[] { new[] { 1, 20, 30, 40 }, new[] { 1, 300, 200, 100, 50, 7 } };
        foreach (var prompt in prompts)
        {
            var options = new SamplingOptions { MaxNewTokens = 64, IgnoreStopTokens = true };
            using var a = ort.Start(prompt, options);
            using var b = genai.Start(prompt, options);
            while (!a.IsDone) a.GenerateNextToken();
            while (!b.IsDone) b.GenerateNextToken();
            Assert.That(a.Tokens, Is.EqualTo(b.Tokens));
        }
    }
}
