using System.Diagnostics;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The sampling head on CUDA, inside the step (and inside the captured CUDA graph): each seeded run must give token
/// for token what the host <see cref="Sampler"/> chooses from the same package's logits on the same device
/// (GraphTokenChoice off). CUDA's GroupQueryAttention runs in fp16 only, so the package is tiny-llama converted with
/// <c>--graph fused --precision fp16 --device-sampling</c>: the folder OMM_DEVICE_SAMPLING_PACKAGE names, else
/// converted here into a temporary folder with <c>python3 -m omm_export</c> (needs the onnx package). Skipped, with
/// the reason, without CUDA or without either. Tolerance: none on tokens; as on the CPU, the head's float32 and the
/// host's float64 could only disagree where a draw falls within float32 rounding of a boundary, and the seeds are fixed.
/// </summary>
[Category("Cuda")]
public class DeviceSamplingCudaTests
{
    private static readonly int[][] Prompts = [[1, 300, 200, 100, 50, 7, 99], [1, 42, 42, 42, 600, 17, 3, 250, 11]];
    private string _package = "", _temporary = "";

    [OneTimeSetUp]
    public void RequireCudaAndPackage()
    {
        var probe = SessionFactory.Probe().Single(p => p.Kind == ExecutionProviderKind.Cuda);
        if (!probe.Loads) Assert.Ignore($"CUDA is not available in this test process: {probe.Detail}");
        if (Environment.GetEnvironmentVariable("OMM_DEVICE_SAMPLING_PACKAGE") is { Length: > 0 } given)
        {
            _package = given;
            return;
        }
        _temporary = Path.Combine(Path.GetTempPath(), $"omm-device-sampling-{Guid.NewGuid():N}");
        _package = Path.Combine(_temporary, "tiny-llama-fp16-sample");
        var start = new ProcessStartInfo("python3", ["-m", "omm_export", "convert", "--from", TestData.TinyLlama, "--out", _package,
                                                     "--graph", "fused", "--precision", "fp16", "--device-sampling"])
        {
            WorkingDirectory = Path.Combine(TestData.RepoRoot, "onnx-export"),
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        try
        {
            using var python = Process.Start(start)!;
            var error = python.StandardError.ReadToEndAsync();
            var output = python.StandardOutput.ReadToEndAsync();   // both drained, so neither pipe fills
            if (!python.WaitForExit(120_000)) { python.Kill(); Assert.Ignore("python3 -m omm_export convert took over 120 s"); }
            if (python.ExitCode != 0) Assert.Ignore($"no OMM_DEVICE_SAMPLING_PACKAGE and python3 -m omm_export convert failed here: {error.Result.Trim()}");
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Ignore($"no OMM_DEVICE_SAMPLING_PACKAGE and no python3 to convert one: {e.Message}");
        }
    }

    [OneTimeTearDown]
    public void Clean()
    {
        if (_temporary.Length > 0 && Directory.Exists(_temporary)) Directory.Delete(_temporary, recursive: true);
    }

    private static ExecutionOptions Cuda(bool cudaGraph) => new() { Providers = [ExecutionProviderKind.Cuda], CudaGraph = cudaGraph };

    [TestCase(false)]
    [TestCase(true)]
    public void Cuda_device_sampling_gives_the_host_samplers_tokens(bool cudaGraph)
    {
        var package = ModelPackage.Open(_package);
        using var head = OrtDecodeEngine.Create(package, Cuda(cudaGraph));
        using var host = OrtDecodeEngine.Create(package, Cuda(cudaGraph) with { GraphTokenChoice = false });
        Assert.That(head.DeviceSampling && head.Device is not null, Is.True, "the head's inputs and next_token live on the device");
        foreach (var (name, sampling) in DeviceSamplingTests.Settings())
            for (int p = 0; p < Prompts.Length; p++)
            {
                var options = sampling with { Seed = 42 + (ulong)p };
                var (expected, _) = DeviceSamplingTests.Run(host, Prompts[p], options);
                var (actual, choices) = DeviceSamplingTests.Run(head, Prompts[p], options);
                Assert.That(actual, Is.EqualTo(expected), $"{name}, prompt {p}, CUDA graph {cudaGraph}");
                Assert.That(choices, Is.EqualTo(options.MaxNewTokens - 1));
            }
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Cuda_guided_steps_on_the_device_give_the_host_tokens(bool cudaGraph)
    {
        var package = ModelPackage.Open(_package);
        using var head = OrtDecodeEngine.Create(package, Cuda(cudaGraph));
        using var host = OrtDecodeEngine.Create(package, Cuda(cudaGraph) with { GraphTokenChoice = false });
        var constraint = new ImageSpanConstraint(721, Enumerable.Range(100, 400));
        foreach (var (scale, sampling) in new[] { (3f, new SamplingOptions { Temperature = 1f, TopP = 0.9f, Seed = 11 }),
                                                  (2f, new SamplingOptions { Temperature = 0.8f, TopK = 30, RepetitionPenalty = 1.3f, Seed = 12 }) })
        {
            var expected = ClassifierFreeGuidance.Generate(host, Prompts[1], [1, 7], 40, scale, sampling, constraint);
            var actual = ClassifierFreeGuidance.Generate(head, Prompts[1], [1, 7], 40, scale, sampling, constraint);
            Assert.That(ClassifierFreeGuidance.LastDeviceChoices, Is.EqualTo(39));
            Assert.That(actual, Is.EqualTo(expected), $"scale {scale}, CUDA graph {cudaGraph}");
        }
    }
}
