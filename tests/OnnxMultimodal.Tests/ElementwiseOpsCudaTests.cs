using System.Text.RegularExpressions;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// <c>convert --custom-ops elementwise</c>: Chameleon's qk-norm (<c>omm.OmmQkvHeadNorm</c>) and each MLP's Split + SiLU + Mul
/// (<c>omm.OmmSwiGlu</c>, src/OnnxMultimodal.Kernels/swiglu.cu) as our ops, the projections stock: the form for long prompts
/// and fp16 prefill decoders. tiny-chameleon with seeded random qk-norm weights (as <see cref="QkNormOpCudaTests"/>), converted
/// here to fp16 and to int4 (fp16 activations) with and without the ops; the logits of every step of teacher-forced
/// sequences on CUDA, prompts of 7 to 40 tokens (the prompt pass runs many rows through the ops), with and without CUDA
/// graphs. Tolerance per layer: the qk-norm's 3e-3 (<see cref="QkNormOpCudaTests"/>) plus 1e-3 for SiLU·up, whose product
/// is rounded as the graph rounds it (within 2 fp16 ulps, check_swiglu.py). A swapped half or a wrong row stride moves the
/// logits by a large fraction of their range. The conversion also writes the image encoder's GroupNorms as
/// <c>omm.OmmGroupNorm</c> (counted here, checked by <see cref="GroupNormOpCudaTests"/>). Needs OMM_KERNELS_DIR/libomm_kernels.so and python3 with onnx; skipped,
/// with the reason, otherwise.
/// </summary>
[Category("Cuda")]
public class ElementwiseOpsCudaTests
{
    private static readonly int[][] Prompts =
        [[1, 300, 200, 100, 50, 7, 99], [1, 42, 42, 42, 600, 17, 3, 250, 11], [1, .. Enumerable.Range(0, 39).Select(i => 20 + i * 17 % 600)]];
    private readonly Dictionary<string, (string Plain, string Ops)> _packages = [];
    private string _library = "", _temporary = "";

    [OneTimeSetUp]
    public void RequireCudaKernelsAndPackages()
    {
        CudaTestSupport.RequireCuda();
        _library = Path.Combine(Environment.GetEnvironmentVariable("OMM_KERNELS_DIR") ?? "", "libomm_kernels.so");
        if (!File.Exists(_library)) Assert.Ignore("OMM_KERNELS_DIR does not hold libomm_kernels.so (tools/gpu_kernels.sh OUT_DIR builds it)");
        string python = SamplingHeadPackages.PythonWithOnnx();
        _temporary = Path.Combine(Path.GetTempPath(), $"omm-elementwise-{Guid.NewGuid():N}");
        string source = Path.Combine(_temporary, "tiny-chameleon-random-qk-norm");
        QkNormOpCudaTests.CopyFolder(TestData.Model("tiny-chameleon"), source);
        var start = new System.Diagnostics.ProcessStartInfo(python, ["-c", QkNormOpCudaTests.RandomiseNorms, Path.Combine(source, "decoder.onnx")])
        { RedirectStandardOutput = true, RedirectStandardError = true };
        using (var process = System.Diagnostics.Process.Start(start)!)
        {
            var error = process.StandardError.ReadToEndAsync();
            process.StandardOutput.ReadToEnd();
            Assert.That(process.WaitForExit(60_000) && process.ExitCode == 0, Is.True, error.Result);
        }
        int layers = ModelPackage.Open(source).Manifest.Decoder!.NumLayers;
        foreach (var (name, precision) in new[] { ("fp16", new[] { "--precision", "fp16" }), ("int4", new[] { "--precision", "int4", "--int4-activation", "fp16", "--block-size", "32" }) })
        {
            string plain = Convert(python, source, name, precision);
            string ops = Convert(python, source, name + "-elementwise", [.. precision, "--custom-ops", "elementwise"]);
            string graph = File.ReadAllText(Path.Combine(ops, "decoder.onnx"), System.Text.Encoding.Latin1);
            // a node's op_type as serialized: field 4 (0x22), then its length
            Assert.That(Regex.Matches(graph, "\u0022\u0009OmmSwiGlu").Count, Is.EqualTo(layers), $"{name}: every layer's SiLU·up is our op");
            Assert.That(Regex.Matches(graph, "\u0022\u000eOmmQkvHeadNorm").Count, Is.EqualTo(layers), $"{name}: every layer's qk-norm is our op");
            Assert.That(File.ReadAllText(Path.Combine(plain, "decoder.onnx"), System.Text.Encoding.Latin1), Does.Not.Contain("OmmSwiGlu"));
            // the image encoder's GroupNorms too (GroupNormOpCudaTests checks their numbers)
            string encoder = File.ReadAllText(Path.Combine(ops, "image_encoder.onnx"), System.Text.Encoding.Latin1);
            Assert.That(Regex.Matches(encoder, "\u0022\u000cOmmGroupNorm").Count, Is.GreaterThan(0).And.EqualTo(Regex.Matches(
                File.ReadAllText(Path.Combine(plain, "image_encoder.onnx"), System.Text.Encoding.Latin1), "\u0022\u0015InstanceNormalization").Count),
                $"{name}: every GroupNorm of the image encoder is our op");
            Assert.That(encoder, Does.Not.Contain("\u0022\u0015InstanceNormalization"));
            _packages[name] = (plain, ops);
        }
    }

    /// <summary>A fused conversion with the sampling head; a failure is the test's (python and onnx are here).</summary>
    private string Convert(string python, string source, string name, string[] extra)
    {
        string output = Path.Combine(_temporary, name);
        string? failure = SamplingHeadPackages.Exporter(python, ["convert", "--from", source, "--out", output, "--graph", "fused", "--device-sampling", .. extra], 120);
        Assert.That(failure, Is.Null, $"convert {name}");
        return output;
    }

    [OneTimeTearDown]
    public void Clean()
    {
        if (_temporary.Length > 0 && Directory.Exists(_temporary)) Directory.Delete(_temporary, recursive: true);
    }

    [TestCase("fp16", false)]
    [TestCase("fp16", true)]
    [TestCase("int4", false)]
    [TestCase("int4", true)]
    public void The_elementwise_ops_give_the_standard_ops_logits_within_fp16_rounding(string precision, bool cudaGraph)
    {
        var (plain, ops) = _packages[precision];
        var cuda = new ExecutionOptions { Providers = [ExecutionProviderKind.Cuda], CudaGraph = cudaGraph, CustomOpLibrary = _library, GraphTokenChoice = false };
        int layers = ModelPackage.Open(plain).Manifest.Decoder!.NumLayers;
        double bound = (1e-3 + 3e-3) * layers;
        var (worst, failures) = CustomOpsCudaTests.CompareForced(plain, cuda, ops, cuda, Prompts, 24, bound);   // plain's tokens, forced on both
        TestContext.Out.WriteLine($"{precision}: worst max |diff| / max |logit| {worst:E2} (bound {bound:E2}), CUDA graph {cudaGraph}");
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(20)));
    }
}
