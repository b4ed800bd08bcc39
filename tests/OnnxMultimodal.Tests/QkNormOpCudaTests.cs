using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// Chameleon's qk-norm as our one CUDA op (<c>omm.OmmQkvHeadNorm</c>, src/OnnxMultimodal.Kernels/qk_norm.cu), written by
/// <c>convert --custom-ops omm-fused</c> with the SwiGLU epilogue, against the same int4 weights with <c>--custom-ops omm</c>
/// (our GEMV, the qk-norm as standard ops): tiny-chameleon with seeded random qk-norm weights and biases, converted here
/// (int4, fp16 activations, block 32), the logits
/// of every step of a teacher-forced sequence on CUDA, with and without CUDA graphs. Tolerance: the SwiGLU epilogue's
/// rounding (1e-3 of max |logit| a layer, as in <see cref="CustomOpsCudaTests"/>) plus the qk-norm's, set from measurement
/// rather than derived: 3e-3 a layer (q and k within a few fp16 ulps, src/OnnxMultimodal.Kernels/check_qk_norm.py; the
/// first H100 run, with the model's unit weights, measured 3.8e-3 in all over 4 layers). A wrong head, weight, bias, mean
/// or variance moves the logits by a large fraction of their range. Needs OMM_KERNELS_DIR/libomm_kernels.so and python3 with onnx and onnxruntime; skipped, with
/// the reason, otherwise.
/// </summary>
[Category("Cuda")]
public class QkNormOpCudaTests
{
    private static readonly int[][] Prompts = [[1, 300, 200, 100, 50, 7, 99], [1, 42, 42, 42, 600, 17, 3, 250, 11]];
    private string _library = "", _plain = "", _fused = "", _temporary = "";

    [OneTimeSetUp]
    public void RequireCudaKernelsAndPackages()
    {
        CudaTestSupport.RequireCuda();
        _library = Path.Combine(Environment.GetEnvironmentVariable("OMM_KERNELS_DIR") ?? "", "libomm_kernels.so");
        if (!File.Exists(_library)) Assert.Ignore("OMM_KERNELS_DIR does not hold libomm_kernels.so (tools/gpu_kernels.sh OUT_DIR builds it)");
        _temporary = Path.Combine(Path.GetTempPath(), $"omm-qk-norm-{Guid.NewGuid():N}");
        // tiny-chameleon's qk-norm weights are all 1 and its biases 0, under which a swapped, misplaced or ignored weight
        // would not show: a copy gets seeded random ones (weight 1 + N(0, 0.5), bias N(0, 0.3), per head and element)
        string source = Path.Combine(_temporary, "tiny-chameleon-random-qk-norm");
        CopyFolder(TestData.Model("tiny-chameleon"), source);
        string python = SamplingHeadPackages.PythonWithOnnx();
        var start = new System.Diagnostics.ProcessStartInfo(python, ["-c", RandomiseNorms, Path.Combine(source, "decoder.onnx")])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using (var process = System.Diagnostics.Process.Start(start)!)
        {
            var error = process.StandardError.ReadToEndAsync();
            string output = process.StandardOutput.ReadToEnd();
            Assert.That(process.WaitForExit(60_000) && process.ExitCode == 0, Is.True, error.Result);
            Assert.That(output, Does.StartWith("randomised 16"), "every layer's q and k weight and bias");
        }
        string[] int4 = ["--int4-activation", "fp16", "--block-size", "32", "--custom-ops"];
        _plain = SamplingHeadPackages.Convert(source, "int4", _temporary, "omm", [.. int4, "omm"]);
        _fused = SamplingHeadPackages.Convert(source, "int4", _temporary, "omm-fused", [.. int4, "omm-fused"]);
        string plain = File.ReadAllText(Path.Combine(_plain, "decoder.onnx"), System.Text.Encoding.Latin1);
        string fused = File.ReadAllText(Path.Combine(_fused, "decoder.onnx"), System.Text.Encoding.Latin1);
        // a node's op_type as serialized: field 4 (0x22), length 18 (0x12), the name (so not SkipSimplifiedLayerNormalization)
        const string layerNorm = "\u0022\u0012LayerNormalization";
        Assert.That(plain, Does.Contain(layerNorm).And.Not.Contain("OmmQkvHeadNorm"));
        Assert.That(fused, Does.Contain("OmmQkvHeadNorm").And.Not.Contain(layerNorm), "every layer's qk-norm is our op");
    }

    internal const string RandomiseNorms = """
        import sys, numpy as np, onnx
        from onnx import numpy_helper
        path = sys.argv[1]
        m = onnx.load(path)
        rng = np.random.default_rng(20261127)
        n = 0
        for i, t in enumerate(m.graph.initializer):
            if (".q_norm." in t.name or ".k_norm." in t.name) and t.name.endswith((".weight", ".bias")):
                a = numpy_helper.to_array(t)
                r = 1 + 0.5 * rng.standard_normal(a.shape) if t.name.endswith(".weight") else 0.3 * rng.standard_normal(a.shape)
                m.graph.initializer[i].CopyFrom(numpy_helper.from_array(r.astype(a.dtype), t.name))
                n += 1
        onnx.save(m, path)
        print("randomised", n)
        """;

    internal static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (string dir in Directory.GetDirectories(from)) CopyFolder(dir, Path.Combine(to, Path.GetFileName(dir)));
    }

    [OneTimeTearDown]
    public void Clean()
    {
        if (_temporary.Length > 0 && Directory.Exists(_temporary)) Directory.Delete(_temporary, recursive: true);
    }

    private ExecutionOptions Cuda(bool cudaGraph) =>
        new() { Providers = [ExecutionProviderKind.Cuda], CudaGraph = cudaGraph, CustomOpLibrary = _library, GraphTokenChoice = false };

    [TestCase(false)]
    [TestCase(true)]
    public void The_fused_qk_norm_gives_the_standard_ops_logits_within_fp16_rounding(bool cudaGraph)
    {
        int layers = ModelPackage.Open(_plain).Manifest.Decoder!.NumLayers;
        double bound = (1e-3 + 3e-3) * layers;
        double worst = 0;
        var failures = new List<string>();
        foreach (int[] prompt in Prompts)
        {
            var (tokens, expected) = CustomOpsCudaTests.Run(_plain, Cuda(cudaGraph), prompt, 24);   // its own greedy tokens, forced on both
            var (_, actual) = CustomOpsCudaTests.Run(_fused, Cuda(cudaGraph), prompt, 24, tokens);
            var (_, again) = CustomOpsCudaTests.Run(_plain, Cuda(cudaGraph), prompt, 24, tokens);
            Assert.That(actual, Has.Count.EqualTo(expected.Count));
            for (int t = 0; t < expected.Count; t++)
            {
                var (rel, _) = CustomOpsCudaTests.Difference(again[t], actual[t]);
                worst = Math.Max(worst, rel);
                if (rel > bound) failures.Add($"prompt {prompt.Length} ids, step {t}: {rel:E2} > {bound:E2}");
            }
        }
        TestContext.Out.WriteLine($"worst max |diff| / max |logit| {worst:E2} (bound {bound:E2}), CUDA graph {cudaGraph}");
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(20)));
    }
}
