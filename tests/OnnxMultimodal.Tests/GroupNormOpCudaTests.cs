using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The VQ image encoder's GroupNorms, and the SiLU after most of them, as our CUDA op (<c>omm.OmmGroupNorm</c>,
/// src/OnnxMultimodal.Kernels/group_norm.cu), written by <c>custom_ops.fuse_group_norm</c> (what <c>convert --custom-ops
/// elementwise</c> applies to a package's image encoder), against the exporter's standard ops on CUDA. tiny-chameleon's
/// encoder twice: as committed (norm weights 1, biases 0), where the fused graph must give PyTorch's reference codes; and
/// with seeded random per-channel norm weights and biases (so a swapped or misplaced weight shows), where the nearest-code
/// distances the quantizer takes its argmin over (exposed as a second output) must agree with the standard graph's within
/// 1e-4 of their largest magnitude: fp32 throughout, the kernel within a few fp32 ulps of a float64 GroupNorm
/// (check_group_norm.py). A wrong group, channel, mean or variance moves them by a large fraction. Needs
/// OMM_KERNELS_DIR/libomm_kernels.so and python3 with onnx; skipped, with the reason, otherwise.
/// </summary>
[Category("Cuda")]
public class GroupNormOpCudaTests
{
    private static readonly ChameleonReference Ref = ChameleonReference.Load();
    private string _library = "", _temporary = "";
    private JsonElement _fused;

    [OneTimeSetUp]
    public void RequireCudaKernelsAndGraphs()
    {
        CudaTestSupport.RequireCuda();
        _library = Path.Combine(Environment.GetEnvironmentVariable("OMM_KERNELS_DIR") ?? "", "libomm_kernels.so");
        if (!File.Exists(_library)) Assert.Ignore("OMM_KERNELS_DIR does not hold libomm_kernels.so (tools/gpu_kernels.sh OUT_DIR builds it)");
        string python = SamplingHeadPackages.PythonWithOnnx();
        _temporary = Path.Combine(Path.GetTempPath(), $"omm-group-norm-{Guid.NewGuid():N}");
        Directory.CreateDirectory(_temporary);
        var start = new System.Diagnostics.ProcessStartInfo(python, ["-c", MakeGraphs, Path.Combine(TestData.Model("tiny-chameleon"), "image_encoder.onnx"), _temporary])
        { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.Combine(TestData.RepoRoot, "onnx-export") };
        using var process = System.Diagnostics.Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        Assert.That(process.WaitForExit(120_000) && process.ExitCode == 0, Is.True, error.Result);
        _fused = JsonDocument.Parse(output.Trim().Split('\n')[^1]).RootElement;
        TestContext.Out.WriteLine(output.Trim());
        // every InstanceNormalization of the exported encoder is a GroupNorm; all but the mid attention block's feed a SiLU
        Assert.That(_fused.GetProperty("fused").GetInt32(), Is.EqualTo(_fused.GetProperty("instance_norms").GetInt32()), "every GroupNorm is our op");
        Assert.That(_fused.GetProperty("silu").GetInt32(), Is.EqualTo(_fused.GetProperty("instance_norms").GetInt32() - 1), "the SiLU after each is folded in");
        Assert.That(_fused.GetProperty("randomised").GetInt32(), Is.GreaterThan(0));
    }

    // plain.onnx / fused.onnx: the encoder with the quantizer's distances as a second output ("distances"), before and after
    // fuse_group_norm; the -random pair the same with seeded random GroupNorm weights and biases (the [C, 1, 1] initializers)
    internal const string MakeGraphs = """
        import copy, json, os, sys
        import numpy as np, onnx
        from onnx import helper, numpy_helper
        sys.path.insert(0, ".")
        from omm_export.custom_ops import fuse_group_norm
        src, out = sys.argv[1:3]
        m = onnx.load(src)
        argmin = next(n for n in m.graph.node if n.op_type == "ArgMin")
        m.graph.node.append(helper.make_node("Identity", [argmin.input[0]], ["distances"]))
        m.graph.output.append(helper.make_tensor_value_info("distances", onnx.TensorProto.FLOAT, None))
        norms = sum(n.op_type == "InstanceNormalization" for n in m.graph.node)
        def save(model, name, fuse):
            model = copy.deepcopy(model)
            done = fuse_group_norm(model) if fuse else None
            onnx.save(model, os.path.join(out, name))
            return done
        save(m, "plain.onnx", False)
        done = save(m, "fused.onnx", True)
        rng = np.random.default_rng(20261128)
        randomised = 0
        for i, t in enumerate(m.graph.initializer):
            if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 3 and list(t.dims[1:]) == [1, 1]:
                a = numpy_helper.to_array(t)
                r = 1 + 0.5 * rng.standard_normal(a.shape) if (a == 1).all() else 0.3 * rng.standard_normal(a.shape)
                m.graph.initializer[i].CopyFrom(numpy_helper.from_array(r.astype(np.float32), t.name))
                randomised += 1
        save(m, "plain-random.onnx", False)
        again = save(m, "fused-random.onnx", True)
        assert again["fused"] == done["fused"], (again, done)
        print(json.dumps(dict(done, instance_norms=norms, randomised=randomised)))
        """;

    [OneTimeTearDown]
    public void Clean()
    {
        if (_temporary.Length > 0 && Directory.Exists(_temporary)) Directory.Delete(_temporary, recursive: true);
    }

    private InferenceSession Session(string file) =>
        SessionFactory.Create(Path.Combine(_temporary, file), new ExecutionOptions { Providers = [ExecutionProviderKind.Cuda], CustomOpLibrary = _library }).Session;

    private static (long[] Codes, float[] Distances) Encode(InferenceSession session, float[] pixels, int size)
    {
        using var input = OrtValue.CreateTensorValueFromMemory(pixels, [1, 3, size, size]);
        using var run = new RunOptions();
        using var outputs = session.Run(run, ["pixel_values"], [input], ["codes", "distances"]);
        return (outputs[0].GetTensorDataAsSpan<long>().ToArray(), outputs[1].GetTensorDataAsSpan<float>().ToArray());
    }

    private static int Size(float[] pixels) => (int)Math.Round(Math.Sqrt(pixels.Length / 3.0));

    [Test]
    public void The_fused_encoder_gives_pytorchs_codes()
    {
        using var fused = Session("fused.onnx");
        foreach (var image in Ref.Images)
        {
            float[] pixels = TestData.ReadFloats(Ref.PathOf(image.PixelsFile));
            Assert.That(Encode(fused, pixels, Size(pixels)).Codes, Is.EqualTo(image.Codes.Select(c => (long)c)), image.Name);
        }
    }

    [Test]
    public void Random_norm_weights_give_the_standard_ops_distances()
    {
        using var plain = Session("plain-random.onnx");
        using var fused = Session("fused-random.onnx");
        var inputs = Ref.Images.Select(i => (i.Name, Pixels: TestData.ReadFloats(Ref.PathOf(i.PixelsFile)))).ToList();
        int size = Size(inputs[0].Pixels);
        var rng = new Random(11);
        inputs.Add(("noise", Enumerable.Range(0, 3 * size * size).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray()));
        double worst = 0;
        int equal = 0, total = 0;
        foreach (var (name, pixels) in inputs)
        {
            var (codes, expected) = Encode(plain, pixels, size);
            var (actualCodes, actual) = Encode(fused, pixels, size);
            double scale = expected.Max(v => Math.Abs(v)), diff = 0;
            for (int i = 0; i < expected.Length; i++) diff = Math.Max(diff, Math.Abs(expected[i] - actual[i]));
            double rel = diff / scale;
            worst = Math.Max(worst, rel);
            Assert.That(rel, Is.LessThanOrEqualTo(1e-4), $"{name}: max |diff| {diff:E2} of max |distance| {scale:E2}");
            equal += codes.Zip(actualCodes).Count(p => p.First == p.Second);
            total += codes.Length;
        }
        TestContext.Out.WriteLine($"worst max |diff| / max |distance| {worst:E2}; codes equal at {equal} of {total} positions");
        // a distance within 1e-4 of the largest can flip only a near-tie: nearly every code is the standard graph's
        Assert.That(equal, Is.GreaterThanOrEqualTo(total * 0.95), "codes");
    }
}
