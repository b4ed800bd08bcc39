using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;
using OnnxMultimodal.Text;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The OmmMatMulInt4 custom op (and OmmMatMulInt4SwiGlu, the gate_up projection with the MLP's Split + SiLU + Mul folded
/// into its epilogue) on CUDA against the stock MatMulNBits graph. Needs what tools/gpu_kernels.sh writes (libomm_kernels.so, and
/// tiny-llama converted with fp16 int4 activations: tiny-llama-int4h stock, tiny-llama-int4h-omm with --custom-ops omm,
/// tiny-llama-int4h-ommf with --custom-ops omm-fused, tiny-llama-int4h-next with --next-token; packages.tar unpacked) in
/// the folder named by OMM_KERNELS_DIR, and for the trained-model test the code model converted the same three ways
/// (code-int4h, code-int4h-omm, code-int4h-ommf) in the folder named by OMM_CODE_INT4_PACKAGES; skipped, with the
/// reason, where CUDA or a folder is missing. The custom op is judged at the logits (teacher-forced, against a rounding bound) and by greedy tokens on
/// a model with real margins, not by greedy tokens of the random tiny model, whose near-ties let rounding fork them.
/// </summary>
[Category("Cuda")]
public class CustomOpsCudaTests
{
    private string dir = "";

    [OneTimeSetUp]
    public void RequireCudaAndKernels()
    {
        CudaTestSupport.RequireCuda();
        dir = Environment.GetEnvironmentVariable("OMM_KERNELS_DIR") ?? "";
        if (!File.Exists(Path.Combine(dir, "libomm_kernels.so")))
            Assert.Ignore("OMM_KERNELS_DIR does not hold libomm_kernels.so and the converted packages (tools/gpu_kernels.sh OUT_DIR writes them)");
    }

    private static int[] Greedy(string package, ExecutionOptions execution, IReadOnlyList<int> prompt, int tokens)
    {
        using var engine = OrtDecodeEngine.Create(ModelPackage.Open(package), execution);
        using var seq = engine.Start(prompt, new SamplingOptions { MaxNewTokens = tokens, IgnoreStopTokens = true });
        while (!seq.IsDone) seq.GenerateNextToken();
        return seq.Tokens.Skip(prompt.Count).ToArray();
    }

    /// <summary>
    /// What the two int4 paths may differ by, as max |logit difference| / max |stock logit| at one step: both use the
    /// same fp16 dequantized weights and differ only in how the products are summed. Per quantized matmul ours is
    /// within about 3u of the output's scale (u = 2^-11: the fp16 rounding of (q - zp) * scale, of the 16-term fp16
    /// partial sums, and of the fp16 output; phase 2 measured at most 8.9e-4 of max |y| against a fp32 reference at
    /// the 7B shapes), so 1.5e-3 per matmul; a fused graph runs 4 per layer (qkv, o, gate-up, down) plus the LM head,
    /// and the differences are added in full (the worst case along the residual stream). A bug is far outside it: a
    /// wrong zero point, scale, nibble or column, or a skipped chunk, moves a matmul's outputs by a large fraction of
    /// their range, not by a few ulps.
    /// With the SiLU·up fusion (<paramref name="siluMulFused"/>) the down projection's input may also differ: the
    /// epilogue rounds as the stock kernels do (gate and up, silu(gate), the product, each to fp16), but its SiLU is
    /// __expf in fp32 where the stock QuickGelu may differ by an ulp, so each input value can move by a rounding (u) and
    /// each down-projection output by about u of sum |w x| (omm_export.silu_mul_check's numpy model of the epilogue
    /// measured at most 1.4e-3 of max |y| against the stock subgraph on tiny-llama's layers with random inputs): 1e-3 per
    /// layer on top. A swapped gate/up or a wrong activation moves the output by about its own size.
    /// </summary>
    private static double RoundingBound(string package, bool siluMulFused = false)
    {
        int layers = ModelPackage.Open(package).Manifest.Decoder!.NumLayers;
        return 1.5e-3 * (4 * layers + 1) + (siluMulFused ? 1e-3 * layers : 0);
    }

    /// <summary>Records each choice's logits; with <paramref name="forced"/>, then makes the forced token the only
    /// choice (teacher forcing: both packages see the same inputs at every step).</summary>
    private sealed class StepLogits(IReadOnlyList<int>? forced) : ILogitsProcessor
    {
        public List<float[]> Steps { get; } = [];

        public void Process(Span<float> logits, IReadOnlyList<int> sequence)
        {
            Steps.Add(logits.ToArray());
            if (forced is null) return;
            int next = forced[Steps.Count - 1];
            logits.Fill(float.NegativeInfinity);
            logits[next] = 0f;
        }
    }

    /// <summary>Greedy tokens and each step's logits of <paramref name="package"/>; with <paramref name="forced"/>, teacher-forced.</summary>
    internal static (int[] Tokens, List<float[]> Logits) Run(string package, ExecutionOptions execution, IReadOnlyList<int> prompt,
                                                             int tokens, IReadOnlyList<int>? forced = null)
    {
        using var engine = OrtDecodeEngine.Create(ModelPackage.Open(package), execution);
        var record = new StepLogits(forced);
        using var seq = engine.Start(prompt, new SamplingOptions { MaxNewTokens = tokens, IgnoreStopTokens = true }, [record]);
        while (!seq.IsDone) seq.GenerateNextToken();
        return (seq.Tokens.Skip(prompt.Count).ToArray(), record.Steps);
    }

    private static int ArgMax(float[] v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    /// <summary>Top-1 minus top-2 logit.</summary>
    private static double Margin(float[] v)
    {
        int top = ArgMax(v);
        float second = float.NegativeInfinity;
        for (int i = 0; i < v.Length; i++) if (i != top && v[i] > second) second = v[i];
        return v[top] - second;
    }

    /// <summary>For each prompt, <paramref name="reference"/>'s own greedy tokens forced on <paramref name="candidate"/>:
    /// the worst step's max |diff| / max |logit|, and a line for every step over <paramref name="bound"/>.</summary>
    internal static (double Worst, List<string> Failures) CompareForced(string reference, ExecutionOptions referenceExecution,
        string candidate, ExecutionOptions candidateExecution, IEnumerable<int[]> prompts, int tokens, double bound)
    {
        double worst = 0;
        var failures = new List<string>();
        foreach (int[] prompt in prompts)
        {
            var (forced, expected) = Run(reference, referenceExecution, prompt, tokens);
            var (_, actual) = Run(candidate, candidateExecution, prompt, tokens, forced);
            Assert.That(actual, Has.Count.EqualTo(expected.Count));
            for (int t = 0; t < expected.Count; t++)
            {
                var (rel, _) = Difference(expected[t], actual[t]);
                worst = Math.Max(worst, rel);
                if (rel > bound) failures.Add($"prompt {prompt.Length} ids, step {t}: {rel:E2} > {bound:E2}");
            }
        }
        return (worst, failures);
    }

    /// <summary>max |ours - stock| / max |stock| of one step's logits, and the stock logits' max |value|.</summary>
    internal static (double Rel, double Scale) Difference(float[] stock, float[] ours)
    {
        double diff = 0, scale = 0;
        for (int i = 0; i < stock.Length; i++)
        {
            diff = Math.Max(diff, Math.Abs((double)ours[i] - stock[i]));
            scale = Math.Max(scale, Math.Abs((double)stock[i]));
        }
        return (diff / scale, scale);
    }

    [TestCase("tiny-llama-int4h-omm", false)]
    [TestCase("tiny-llama-int4h-omm", true)]
    [TestCase("tiny-llama-int4h-ommf", false)]
    [TestCase("tiny-llama-int4h-ommf", true)]
    public void Custom_op_logits_match_the_stock_op_within_fp16_rounding_at_every_teacher_forced_step(string package, bool cudaGraph)
    {
        // The random tiny model's top-2 margins are small, so greedy runs of the two paths may fork at a near-tie (phase 2:
        // after 65 of 96 tokens); at the logits, with the same inputs at every step, rounding and a bug are far apart.
        var stock = new ExecutionOptions { Providers = [ExecutionProviderKind.Cuda], CudaGraph = cudaGraph };
        var ours = stock with { CustomOpLibrary = Path.Combine(dir, "libomm_kernels.so") };
        string stockPackage = Path.Combine(dir, "tiny-llama-int4h");
        double bound = RoundingBound(stockPackage, siluMulFused: package.EndsWith("-ommf", StringComparison.Ordinal));
        double worst = 0;
        int steps = 0, flips = 0, checkedSteps = 0;
        var failures = new List<string>();
        foreach (var p in TestData.LoadTextReference("tiny-llama").Prompts)
        {
            // forced: PyTorch's fp32 greedy tokens, a sequence neither int4 path chose; step 0 is the prompt (M = prompt rows)
            var (_, expected) = Run(stockPackage, stock, p.Ids, p.Greedy.Length, p.Greedy);
            var (_, actual) = Run(Path.Combine(dir, package), ours, p.Ids, p.Greedy.Length, p.Greedy);
            Assert.That(actual, Has.Count.EqualTo(expected.Count).And.Count.EqualTo(p.Greedy.Length));
            for (int t = 0; t < expected.Count; t++, steps++)
            {
                var (rel, scale) = Difference(expected[t], actual[t]);
                worst = Math.Max(worst, rel);
                if (rel > bound) failures.Add($"prompt '{p.Text}' step {t}: max |diff| / max |logit| = {rel:E2} > {bound:E2}");
                double margin = Margin(expected[t]);
                bool same = ArgMax(expected[t]) == ArgMax(actual[t]);
                if (!same) flips++;
                if (margin > 2 * bound * scale)   // each logit moves by at most bound * scale, so their gap by twice that
                {
                    checkedSteps++;
                    if (!same) failures.Add($"prompt '{p.Text}' step {t}: argmax differs at a top-2 margin of {margin / scale:E2} of max |logit|");
                }
            }
        }
        TestContext.Out.WriteLine($"{package}: {steps} steps: worst max |diff| / max |logit| = {worst:E2} (bound {bound:E2}); argmax differs at {flips} steps; " +
                                  $"{checkedSteps} steps had a margin above the bound");
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(20)));
    }

    [TestCase("code-int4h-omm", false)]
    [TestCase("code-int4h-omm", true)]
    [TestCase("code-int4h-ommf", false)]
    [TestCase("code-int4h-ommf", true)]
    public void Custom_op_trained_code_model_gives_the_stock_greedy_tokens(string package, bool cudaGraph)
    {
        // The trained code model (models/code) converted to int4 stock and with --custom-ops omm / omm-fused: real margins, so
        // greedy tokens must agree. A fork is accepted only where the stock path's own top-2 margin is within the rounding
        // bound (a near-tie, reported); before it the two paths saw the same tokens, so their logits must also agree.
        string root = Environment.GetEnvironmentVariable("OMM_CODE_INT4_PACKAGES") ?? "";
        string stockPackage = Path.Combine(root, "code-int4h"), oursPackage = Path.Combine(root, package);
        if (!File.Exists(Path.Combine(stockPackage, "multimodal.json")) || !File.Exists(Path.Combine(oursPackage, "multimodal.json")))
            Assert.Ignore($"OMM_CODE_INT4_PACKAGES does not hold code-int4h and {package} (models/code converted with --precision int4 " +
                          "--int4-activation fp16, without and with --custom-ops omm / omm-fused; see docs/kernels.md)");
        var stock = new ExecutionOptions { Providers = [ExecutionProviderKind.Cuda], CudaGraph = cudaGraph };
        var ours = stock with { CustomOpLibrary = Path.Combine(dir, "libomm_kernels.so") };
        double bound = RoundingBound(stockPackage, siluMulFused: package.EndsWith("-ommf", StringComparison.Ordinal));
        var tokenizer = TextTokenizer.Load(ModelPackage.Open(stockPackage).TokenizerPath);
        string[] prompts = ["def fibonacci(n):", "import os\n\n\ndef list_files(path):", "class Stack:\n    def __init__(self):", "for i in range(10):"];
        int total = 0, same = 0;
        var failures = new List<string>();
        foreach (var prompt in prompts)
        {
            var ids = tokenizer.Encode(prompt, addSpecialTokens: true);
            const int n = 48;
            var (want, wantLogits) = Run(stockPackage, stock, ids, n);
            var (got, gotLogits) = Run(oursPackage, ours, ids, n);
            int agree = want.Zip(got).TakeWhile(x => x.First == x.Second).Count();
            total += n;
            same += agree;
            for (int t = 0; t <= Math.Min(agree, n - 1); t++)   // step `agree` still had the same inputs
            {
                var (rel, _) = Difference(wantLogits[t], gotLogits[t]);
                if (rel > bound) failures.Add($"'{prompt}' step {t}: max |diff| / max |logit| = {rel:E2} > {bound:E2}");
            }
            if (agree < n)
            {
                var (_, scale) = Difference(wantLogits[agree], gotLogits[agree]);
                double margin = Margin(wantLogits[agree]);
                string note = $"'{prompt}': tokens fork at step {agree} of {n}, stock top-2 margin {margin / scale:E2} of max |logit|";
                TestContext.Out.WriteLine(note);
                if (margin > 2 * bound * scale) failures.Add(note + $" > 2 x {bound:E2}: not a near-tie");
            }
        }
        TestContext.Out.WriteLine($"{package}: {same} of {total} greedy tokens agree before the first difference (bound {bound:E2})");
        Assert.That(failures, Is.Empty, string.Join("\n", failures));
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Next_token_package_on_the_device_gives_the_logits_path_tokens(bool cudaGraph)
    {
        // tiny-llama-int4h-next = tiny-llama-int4h + next_token: the same graph up to the ArgMax, so the same kernels
        // and the same logits; greedy steps bring back 8 bytes (the device's choice) instead of the logits.
        var execution = new ExecutionOptions { Providers = [ExecutionProviderKind.Cuda], CudaGraph = cudaGraph };
        using var engine = OrtDecodeEngine.Create(ModelPackage.Open(Path.Combine(dir, "tiny-llama-int4h-next")), execution);
        Assert.That(engine.NextTokenOutput, Is.True);
        foreach (var p in TestData.LoadTextReference("tiny-llama").Prompts)
        {
            var expected = Greedy(Path.Combine(dir, "tiny-llama-int4h"), execution, p.Ids, p.Greedy.Length);
            using var seq = engine.Start(p.Ids, new SamplingOptions { MaxNewTokens = p.Greedy.Length, IgnoreStopTokens = true });
            while (!seq.IsDone) seq.GenerateNextToken();
            Assert.That(seq.Tokens.Skip(p.Ids.Length).ToArray(), Is.EqualTo(expected), p.ToString());
            Assert.That(OrtDecodeEngine.GraphChoices(seq), Is.EqualTo(p.Greedy.Length - 1));
        }
    }

    [TestCase("tiny-llama-int4h-omm")]
    [TestCase("tiny-llama-int4h-ommf")]
    public void Custom_op_package_is_refused_without_the_library(string package)
    {
        var e = Assert.Throws<ModelPackageException>(() =>
            OrtDecodeEngine.Create(ModelPackage.Open(Path.Combine(dir, package)), new ExecutionOptions { Providers = [ExecutionProviderKind.Cuda] }))!;
        Assert.That(e.Message, Does.Contain("CustomOpLibrary"));
    }
}
