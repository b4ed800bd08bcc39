using OnnxMultimodal.Generation;

namespace OnnxMultimodal.Tests;

public class SamplerTests
{
    [Test]
    public void SplitMix64_reproduces_the_python_draws()
    {
        var r = TestData.LoadTextReference("tiny-llama").Sampling;
        var rng = new SplitMix64(r.Seed);
        foreach (double u in r.Uniforms)
            Assert.That(rng.NextDouble(), Is.EqualTo(u), "bit-exact: both sides use (next >> 11) * 2^-53");
    }

    [Test]
    public void One_uniform_is_drawn_per_sampled_token_and_none_for_greedy()
    {
        var rng = new SplitMix64(99);
        var s = new Sampler(new SamplingOptions { Temperature = 1f, Seed = 99 });
        s.Next(new float[] { 0f, 1f, 2f }, []);
        Assert.That(s.LastUniform, Is.EqualTo(rng.NextDouble()));
        s.Next(new float[] { 0f, 1f, 2f }, []);
        Assert.That(s.LastUniform, Is.EqualTo(rng.NextDouble()));
        var greedy = new Sampler(SamplingOptions.Greedy);
        greedy.Next(new float[] { 0f, 1f }, []);
        Assert.That(greedy.LastUniform, Is.NaN);
    }

    [Test]
    public void Greedy_picks_the_argmax_and_the_lower_id_on_ties()
    {
        var s = new Sampler(SamplingOptions.Greedy);
        Assert.That(s.Next(new float[] { 0.1f, 3f, -2f, 3f }, []), Is.EqualTo(1));
    }

    [Test]
    public void Top_k_1_is_greedy_whatever_the_temperature()
    {
        var s = new Sampler(new SamplingOptions { Temperature = 5f, TopK = 1, Seed = 7 });
        for (int i = 0; i < 50; i++)
            Assert.That(s.Next(new float[] { 0.5f, 0.4f, 2f, 1.9f }, []), Is.EqualTo(2));
    }

    [Test]
    public void Top_p_keeps_only_the_nucleus()
    {
        // probabilities ~ [0.64, 0.24, 0.09, 0.03]: p = 0.7 keeps the first two only
        var logits = new[] { 3f, 2f, 1f, 0f };
        var s = new Sampler(new SamplingOptions { Temperature = 1f, TopP = 0.7f, Seed = 11 });
        var seen = Enumerable.Range(0, 2000).Select(_ => s.Next((float[])logits.Clone(), [])).ToHashSet();
        Assert.That(seen, Is.EquivalentTo(new[] { 0, 1 }));
    }

    [Test]
    public void Sampling_frequencies_follow_the_softmax()
    {
        var logits = new[] { 1f, 0f, 2f };
        double[] expected = logits.Select(x => Math.Exp(x)).ToArray();
        double z = expected.Sum();
        var s = new Sampler(new SamplingOptions { Temperature = 1f, Seed = 3 });
        var counts = new int[3];
        const int n = 20000;
        for (int i = 0; i < n; i++) counts[s.Next((float[])logits.Clone(), [])]++;
        for (int i = 0; i < 3; i++)
            Assert.That(counts[i] / (double)n, Is.EqualTo(expected[i] / z).Within(0.015), $"token {i}: 20000 draws, 4+ sigma bound");
    }

    [Test]
    public void Repetition_penalty_lowers_tokens_already_seen()
    {
        var s = new Sampler(new SamplingOptions { RepetitionPenalty = 2f });
        Assert.That(s.Next(new float[] { 1.0f, 1.5f }, [1]), Is.EqualTo(0), "1.5 / 2 < 1.0");
        Assert.That(s.Next(new float[] { -1.0f, -0.6f }, [1]), Is.EqualTo(0), "-0.6 * 2 < -1.0");
    }

    [Test]
    public void Invalid_options_are_refused_with_the_option_named()
    {
        Assert.That(Assert.Throws<InvalidInputException>(() => new Sampler(new SamplingOptions { TopP = 0f }))!.Input, Is.EqualTo("sampling.TopP"));
        Assert.That(Assert.Throws<InvalidInputException>(() => new Sampler(new SamplingOptions { Temperature = -1f }))!.Input, Is.EqualTo("sampling.Temperature"));
        Assert.That(Assert.Throws<InvalidInputException>(() => new Sampler(new SamplingOptions { MaxNewTokens = 0 }))!.Input, Is.EqualTo("sampling.MaxNewTokens"));
    }

    /// <summary>The procedure of onnx-export/omm_export/sampling.py spelled out with a full sort and
    /// sequential float64 sums (the softmax denominator in descending order, or in id order for top-p
    /// alone), against which <see cref="Sampler"/>'s shortcuts are checked: zero-probability ids not
    /// ordered, a heap for small top-k, only the nucleus's buckets ordered for top-p.</summary>
    private static int Reference(float[] logits, IReadOnlyList<int> seen, SplitMix64 rng, SamplingOptions o)
    {
        var x = logits.Select(v => (double)v).ToArray();
        if (o.RepetitionPenalty != 1.0f)
            foreach (int t in seen.Distinct()) x[t] = x[t] > 0 ? x[t] / o.RepetitionPenalty : x[t] * o.RepetitionPenalty;
        for (int i = 0; i < x.Length; i++) x[i] /= o.Temperature;
        var order = Enumerable.Range(0, x.Length).OrderByDescending(i => x[i]).ThenBy(i => i).ToArray();
        if (o.TopK > 0) order = order.Take(o.TopK).ToArray();
        double max = x[order[0]], sum = 0;
        var probs = new double[order.Length];
        for (int j = 0; j < order.Length; j++) { probs[j] = Math.Exp(x[order[j]] - max); sum += probs[j]; }
        if (o.TopK <= 0 && o.TopP < 1)   // top-p alone: the denominator summed in id order (same value to rounding)
        {
            sum = 0;
            for (int i = 0; i < x.Length; i++) sum += Math.Exp(x[i] - max);
        }
        for (int j = 0; j < order.Length; j++) probs[j] /= sum;
        double cum = 0;
        int keep = order.Length;
        for (int j = 0; j < order.Length; j++) { cum += probs[j]; if (cum >= o.TopP) { keep = j + 1; break; } }
        double keptSum = 0;
        for (int j = 0; j < keep; j++) keptSum += probs[j];
        double u = rng.NextDouble();
        cum = 0;
        for (int j = 0; j < keep; j++) { cum += probs[j] / keptSum; if (u < cum) return order[j]; }
        return order[keep - 1];
    }

    [Test]
    public void Fast_paths_draw_exactly_what_the_full_sort_draws()
    {
        // Constrained vocabularies (most logits floored, as inside an image span), coarse logits (many
        // ties), small and large top-k, top-p up to 1, penalties: 1080 seeded draws, token for token.
        var rng = new Random(5);
        int mismatches = 0, cases = 0;
        foreach (int v in new[] { 50, 700, 4096 })
            foreach (var (topK, topP) in new[] { (0, 0.9f), (0, 1.0f), (3, 1.0f), (v / 2, 0.95f), (0, 0.5f), (0, 0.999f) })
                foreach (float temperature in new[] { 0.7f, 1.0f, 1.6f })
                {
                    var options = new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP, RepetitionPenalty = rng.Next(2) == 0 ? 1f : 1.3f, Seed = (ulong)cases };
                    var constraint = rng.Next(2) == 0 ? null : new ImageSpanConstraint(v, Enumerable.Range(v / 4, v / 8));
                    var sampler = new Sampler(options, constraint is null ? null : [constraint]);
                    var reference = new SplitMix64((ulong)cases);
                    var seen = new List<int> { 1, 2, 3 };
                    for (int draw = 0; draw < 20; draw++)
                    {
                        var logits = Enumerable.Range(0, v).Select(_ => rng.Next(3) == 0 ? (float)Math.Round(rng.NextDouble() * 4, 1) : (float)(rng.NextDouble() * 8 - 4)).ToArray();
                        constraint?.Process(logits, seen);
                        int expected = Reference(logits, seen, reference, options);
                        int actual = sampler.Next(logits.ToArray(), seen);
                        if (actual != expected) mismatches++;
                        seen.Add(expected);
                    }
                    cases++;
                }
        Assert.That(mismatches, Is.Zero, $"over {cases * 20} draws");
    }
}
