using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// Device token choice: tiny-llama-fused-sample is tiny-llama-fused converted again with <c>--device-sampling</c> (the
/// same weights plus the sampling head, output next_token). Greedy decoding must take its tokens from next_token
/// (8 bytes a row instead of the logits) and give exactly the tokens the logits path gives; what the head cannot
/// express (a processor that reads the logits, a near-zero temperature) must keep choosing from the logits. CPU, so CI
/// runs it. Sampled choices on the head: <see cref="DeviceSamplingTests"/>.
/// </summary>
public class GraphTokenChoiceTests
{
    private static readonly int[][] Prompts = [[1, 300, 200, 100, 50, 7, 99], [1, 5], [1, 42, 42, 42, 600, 17, 3, 250, 11]];
    private OrtDecodeEngine _plain = null!, _next = null!, _nextOff = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _plain = OrtDecodeEngine.Create(ModelPackage.Open(TestData.Model("tiny-llama-fused")), ExecutionOptions.Cpu);
        _next = OrtDecodeEngine.Create(ModelPackage.Open(TestData.Model("tiny-llama-fused-sample")), ExecutionOptions.Cpu);
        _nextOff = OrtDecodeEngine.Create(ModelPackage.Open(TestData.Model("tiny-llama-fused-sample")), ExecutionOptions.Cpu with { GraphTokenChoice = false });
    }

    [OneTimeTearDown]
    public void Unload()
    {
        _plain.Dispose();
        _next.Dispose();
        _nextOff.Dispose();
    }

    private static (int[] Tokens, int GraphChoices) Run(OrtDecodeEngine engine, int[] prompt, SamplingOptions sampling,
                                                        IReadOnlyList<ILogitsProcessor>? processors = null)
    {
        using var seq = engine.Start(prompt, sampling, processors);
        while (!seq.IsDone) seq.GenerateNextToken();
        return (seq.Tokens.Skip(prompt.Length).ToArray(), OrtDecodeEngine.GraphChoices(seq));
    }

    [Test]
    public void Greedy_tokens_come_from_next_token_and_equal_the_logits_path()
    {
        Assert.That(_next.NextTokenOutput, Is.True);
        Assert.That(_nextOff.NextTokenOutput, Is.False);
        var greedy = new SamplingOptions { MaxNewTokens = 60, IgnoreStopTokens = true };
        foreach (var prompt in Prompts)
        {
            var (expected, plainChoices) = Run(_plain, prompt, greedy);
            var (actual, choices) = Run(_next, prompt, greedy);
            var (off, offChoices) = Run(_nextOff, prompt, greedy);
            Assert.That(actual, Is.EqualTo(expected), $"prompt [{string.Join(", ", prompt)}]: next_token vs argmax of the logits");
            Assert.That(off, Is.EqualTo(expected), "GraphTokenChoice = false on the same package");
            // The first token comes from the prompt's logits; every later one from a step's next_token.
            Assert.That(choices, Is.EqualTo(greedy.MaxNewTokens - 1));
            Assert.That(plainChoices + offChoices, Is.Zero);
        }
    }

    [Test]
    public void What_the_head_cannot_express_keeps_choosing_from_the_logits()
    {
        var cases = new (SamplingOptions Sampling, ILogitsProcessor[]? Processors)[]
        {
            (new SamplingOptions { MaxNewTokens = 40, IgnoreStopTokens = true, Temperature = 1e-4f, Seed = 7 }, null),
            (new SamplingOptions { MaxNewTokens = 40, IgnoreStopTokens = true, RepetitionPenalty = 5000f }, null),
            (new SamplingOptions { MaxNewTokens = 40, IgnoreStopTokens = true }, [new BanGreedyToken()]),
            (new SamplingOptions { MaxNewTokens = 40, IgnoreStopTokens = true, Temperature = 0.9f, Seed = 3 }, [new BanGreedyToken()]),
        };
        foreach (var (sampling, processors) in cases)
        {
            var (expected, _) = Run(_plain, Prompts[0], sampling, processors);
            var (actual, choices) = Run(_next, Prompts[0], sampling, processors);
            Assert.That(choices, Is.Zero, "the host sampler chooses what the head cannot express");
            Assert.That(actual, Is.EqualTo(expected));
        }
    }

    [Test]
    public void A_guidance_batch_on_a_next_token_graph_reads_its_logits()
    {
        // Two rows in lockstep, as classifier-free guidance runs them: next_token is bound (the step's outputs are
        // fixed for the graph) but the rows' logits still arrive and match single-row decoding of each prompt.
        using var state = _next.StartBatch([Prompts[0], Prompts[1]], 4, CancellationToken.None);
        int[] step = [10, 20];
        state.Step(step, CancellationToken.None);
        for (int row = 0; row < 2; row++)
        {
            using var seq = _plain.Start(Prompts[row], new SamplingOptions { MaxNewTokens = 2, IgnoreStopTokens = true, StopTokenIds = [] },
                                         [new Force(step[row])]);
            seq.GenerateNextToken();
            int expected = seq.GenerateNextToken();
            Assert.That(System.Numerics.Tensors.TensorPrimitives.IndexOfMax<float>(state.Logits(row)), Is.EqualTo(expected), $"row {row}");
            Assert.That(state.GraphToken(row), Is.EqualTo(expected), $"row {row}: next_token");
        }
    }

    /// <summary>Makes the greedy choice impossible, so a processor that is skipped shows in the tokens.</summary>
    private sealed class BanGreedyToken : ILogitsProcessor
    {
        public void Process(Span<float> logits, IReadOnlyList<int> sequence) =>
            logits[System.Numerics.Tensors.TensorPrimitives.IndexOfMax<float>(logits)] = float.NegativeInfinity;
    }

    /// <summary>Forces the first generated token (then leaves the logits alone).</summary>
    private sealed class Force(int token) : ILogitsProcessor
    {
        private bool _done;

        public void Process(Span<float> logits, IReadOnlyList<int> sequence)
        {
            if (_done) return;
            _done = true;
            logits.Fill(float.NegativeInfinity);
            logits[token] = 0f;
        }
    }
}
