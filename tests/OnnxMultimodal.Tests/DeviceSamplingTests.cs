using System.Text.Json.Nodes;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The sampling head (tiny-llama-fused-sample: tiny-llama converted with <c>--graph fused --precision fp32
/// --device-sampling</c>) against the host <see cref="Sampler"/> on the same package (GraphTokenChoice off: the
/// host reads the very logits the head reads). Seeded runs must give token for token the host's tokens, and every
/// token after the first must come from the graph. Tolerance: none on tokens. The head computes in float32 and the
/// host in float64, so a draw could differ only where the uniform (or top_p) falls within float32 rounding (~1e-7
/// relative) of a cumulative-probability boundary; with fixed seeds these runs are deterministic, and a difference
/// would point at a real disagreement in the procedure, not at chance.
/// </summary>
public class DeviceSamplingTests
{
    private static readonly int[][] Prompts = [[1, 300, 200, 100, 50, 7, 99], [1, 5], [1, 42, 42, 42, 600, 17, 3, 250, 11]];
    private OrtDecodeEngine _head = null!, _host = null!;

    [OneTimeSetUp]
    public void Load()
    {
        var package = ModelPackage.Open(TestData.Model("tiny-llama-fused-sample"));
        _head = OrtDecodeEngine.Create(package, ExecutionOptions.Cpu);
        _host = OrtDecodeEngine.Create(package, ExecutionOptions.Cpu with { GraphTokenChoice = false });
    }

    [OneTimeTearDown]
    public void Unload()
    {
        _head.Dispose();
        _host.Dispose();
    }

    internal static (int[] Tokens, int GraphChoices) Run(OrtDecodeEngine engine, int[] prompt, SamplingOptions sampling,
                                                         IReadOnlyList<ILogitsProcessor>? processors = null)
    {
        using var seq = engine.Start(prompt, sampling, processors);
        while (!seq.IsDone) seq.GenerateNextToken();
        return (seq.Tokens.Skip(prompt.Length).ToArray(), OrtDecodeEngine.GraphChoices(seq));
    }

    /// <summary>The settings each test runs, 64 tokens each.</summary>
    internal static IEnumerable<(string Name, SamplingOptions Sampling)> Settings()
    {
        var s = new SamplingOptions { MaxNewTokens = 64, IgnoreStopTokens = true };
        yield return ("greedy", s);
        yield return ("temperature 0.8", s with { Temperature = 0.8f });
        yield return ("temperature 1.6", s with { Temperature = 1.6f });
        yield return ("top-k 20", s with { Temperature = 1f, TopK = 20 });
        yield return ("top-p 0.9", s with { Temperature = 1f, TopP = 0.9f });
        yield return ("top-k 40 + top-p 0.8, temperature 0.7", s with { Temperature = 0.7f, TopK = 40, TopP = 0.8f });
        yield return ("greedy + repetition penalty 1.3", s with { RepetitionPenalty = 1.3f });
        yield return ("repetition penalty 1.5 + temperature 0.9 + top-p 0.95", s with { Temperature = 0.9f, TopP = 0.95f, RepetitionPenalty = 1.5f });
        yield return ("repetition penalty 0.8 (rewards repeats) + top-k 5", s with { Temperature = 1f, TopK = 5, RepetitionPenalty = 0.8f });
    }

    [Test]
    public void Seeded_runs_give_the_host_samplers_tokens()
    {
        foreach (var (name, sampling) in Settings())
            for (int p = 0; p < Prompts.Length; p++)
                foreach (ulong seed in new ulong[] { 1, 20261127 })
                {
                    var options = sampling with { Seed = seed };
                    var (expected, hostChoices) = Run(_host, Prompts[p], options);
                    var (actual, choices) = Run(_head, Prompts[p], options);
                    Assert.That(actual, Is.EqualTo(expected), $"{name}, prompt {p}, seed {seed}");
                    Assert.That(choices, Is.EqualTo(options.MaxNewTokens - 1), $"{name}: every token after the prompt's is the head's");
                    Assert.That(hostChoices, Is.Zero);
                }
    }

    [Test]
    public void Concurrent_sequences_keep_their_own_head_inputs()
    {
        // Each request rents its own pooled cache, and with it its own head inputs: 6 sequences at once, each with its
        // own seed and settings, give what each gives alone on the host.
        var jobs = Settings().Skip(1).Take(6).Select((x, i) => (Prompt: Prompts[i % Prompts.Length], Sampling: x.Sampling with { Seed = 100 + (ulong)i }))
                             .ToArray();
        var expected = jobs.Select(j => Run(_host, j.Prompt, j.Sampling).Tokens).ToArray();
        var actual = new int[jobs.Length][];
        Parallel.For(0, jobs.Length, new ParallelOptions { MaxDegreeOfParallelism = jobs.Length }, i => actual[i] = Run(_head, jobs[i].Prompt, jobs[i].Sampling).Tokens);
        for (int i = 0; i < jobs.Length; i++) Assert.That(actual[i], Is.EqualTo(expected[i]), $"job {i}");
    }

    [Test]
    public void A_fixed_mask_is_applied_on_the_device()
    {
        // Suppressed ids (a fixed mask) are what the head expresses; the sampled tokens avoid them as the host's do.
        var banned = Enumerable.Range(0, 721).Where(i => i % 3 != 0).ToArray();   // two thirds of the vocabulary
        foreach (var sampling in new[] { new SamplingOptions { MaxNewTokens = 48, IgnoreStopTokens = true, Temperature = 1.2f, TopP = 0.95f, Seed = 5 },
                                         new SamplingOptions { MaxNewTokens = 48, IgnoreStopTokens = true, RepetitionPenalty = 1.4f } })
        {
            var (expected, _) = Run(_host, Prompts[0], sampling, [new SuppressTokensProcessor(banned)]);
            var (actual, choices) = Run(_head, Prompts[0], sampling, [new SuppressTokensProcessor(banned)]);
            Assert.That(actual, Is.EqualTo(expected));
            Assert.That(choices, Is.EqualTo(sampling.MaxNewTokens - 1));
            Assert.That(actual.All(t => t % 3 == 0), Is.True, "only allowed ids");
        }
    }

    [Test]
    public void Guidance_and_the_constraint_on_the_device_give_the_host_tokens()
    {
        // Classifier-free guidance's 2-row step on a decoder-only graph: row 0 conditional, row 1 unconditional,
        // g = u + s * (c - u), an image-span-style constraint (ids 100..499 allowed), one token for both rows.
        var constraint = new ImageSpanConstraint(721, Enumerable.Range(100, 400));
        int[] conditional = Prompts[2], unconditional = [1, 7];
        var cases = new[]
        {
            (3f, new SamplingOptions { Temperature = 1f, TopP = 0.9f, Seed = 11 }),
            (1.5f, new SamplingOptions { Temperature = 0.7f, TopK = 50, Seed = 12 }),
            (4f, new SamplingOptions { RepetitionPenalty = 1.2f }),
            (2f, new SamplingOptions { Temperature = 1f, TopP = 0.95f, RepetitionPenalty = 1.3f, Seed = 13 }),
        };
        foreach (var (scale, sampling) in cases)
        {
            var expected = ClassifierFreeGuidance.Generate(_host, conditional, unconditional, 40, scale, sampling, constraint);
            Assert.That(ClassifierFreeGuidance.LastDeviceChoices, Is.Zero);
            var actual = ClassifierFreeGuidance.Generate(_head, conditional, unconditional, 40, scale, sampling, constraint);
            Assert.That(ClassifierFreeGuidance.LastDeviceChoices, Is.EqualTo(39), "every token after the prompt's from the head");
            Assert.That(actual, Is.EqualTo(expected), $"scale {scale}, {sampling}");
            Assert.That(actual.All(constraint.IsAllowed), Is.True);
        }
    }

    [Test]
    public void Chameleon_image_tokens_with_the_head_are_the_host_samplers()
    {
        // The real guided path on Chameleon's graph (qk-norm), converted here (not committed: the size budget): the
        // pipeline's 2-row step, its image-token constraint, guidance scale 3 and seeded draws.
        string folder = Path.Combine(Path.GetTempPath(), $"omm-device-sampling-{Guid.NewGuid():N}");
        try
        {
            string package = SamplingHeadPackages.Convert("tiny-chameleon", "fp32", folder, "tiny-chameleon-fused-sample");
            foreach (var sampling in new[] { new SamplingOptions { Temperature = 1f, TopP = 0.9f, Seed = 2026 },
                                             new SamplingOptions { Temperature = 0.7f, TopK = 100, RepetitionPenalty = 1.2f, Seed = 7 } })
            {
                var expected = DeviceSamplingCudaTests.ImageTokens(package, ExecutionOptions.Cpu with { GraphTokenChoice = false }, sampling);
                Assert.That(ClassifierFreeGuidance.LastDeviceChoices, Is.Zero);
                var actual = DeviceSamplingCudaTests.ImageTokens(package, ExecutionOptions.Cpu, sampling);
                Assert.That(ClassifierFreeGuidance.LastDeviceChoices, Is.EqualTo(actual.Length - 1), "every token after the prompt's from the head");
                Assert.That(actual, Is.EqualTo(expected));
            }
        }
        finally
        {
            if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        }
    }

    [Test]
    public void Bad_head_inputs_are_refused_with_the_input_named()
    {
        var constraint = new ImageSpanConstraint(721, Enumerable.Range(100, 400));
        var nan = Assert.Throws<InvalidInputException>(() => ClassifierFreeGuidance.Generate(_head, Prompts[0], [1], 4, float.NaN,
            new SamplingOptions { Temperature = 1f, Seed = 1 }, constraint))!;
        Assert.That(nan.Message, Does.Contain("GuidanceScale"));
        var topP = Assert.Throws<InvalidInputException>(() => _head.Start(Prompts[0], new SamplingOptions { Temperature = 1f, TopP = float.NaN }))!;
        Assert.That(topP.Message, Does.Contain("TopP"));
        Assert.That(OrtDecodeEngine.LiveSequences, Is.Zero, "nothing leaked by the refused requests");
    }

    [TestCase("version", "2", "version")]
    [TestCase("inputs", """{"params": "sample_params", "uniform": "no_such_input", "rows": "sample_rows", "seen": "sample_seen", "mask": "sample_mask"}""", "no_such_input")]
    [TestCase("inputs", """{"params": "sample_params", "uniform": "sample_uniform", "rows": "sample_rows", "seen": "sample_mask", "mask": "sample_seen"}""", "sample_mask")]
    [TestCase("params", """["top_k", "temperature", "top_p", "repetition_penalty", "guidance_scale"]""", "params")]
    public void A_head_manifest_that_does_not_fit_the_graph_is_refused(string key, string json, string named)
    {
        string dir = TestData.CopyModel("tiny-llama-fused-sample");
        try
        {
            string path = Path.Combine(dir, "multimodal.json");
            var manifest = JsonNode.Parse(File.ReadAllText(path))!;
            manifest["decoder"]!["sampling_head"]![key] = JsonNode.Parse(json);
            File.WriteAllText(path, manifest.ToJsonString());
            var e = Assert.Throws<ModelPackageException>(() => OrtDecodeEngine.Create(ModelPackage.Open(dir), ExecutionOptions.Cpu))!;
            Assert.That(e.Message, Does.Contain(named));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
