using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The sampling head as our one CUDA op (<c>omm.OmmSamplingHead</c>, src/OnnxMultimodal.Kernels/sampling_head.cu) in place
/// of the head's ~80 standard ops: each seeded run must give token for token what the host <see cref="Sampler"/> chooses
/// from the same package's logits on the same device, as <see cref="DeviceSamplingCudaTests"/> asks of the standard head.
/// Packages: tiny-llama and tiny-chameleon converted here with <c>--graph fused --precision fp16 --device-sampling
/// --sampling-op omm</c>; the library: OMM_KERNELS_DIR/libomm_kernels.so (tools/gpu_kernels.sh builds it). Skipped, with
/// the reason, without CUDA, the library or python3 with onnx. Tolerance: none on tokens (the op sums probabilities in
/// float64 from float32 exponentials; a draw could differ only within float32 rounding of a boundary, and the seeds are
/// fixed).
/// </summary>
[Category("Cuda")]
public class OmmSamplingHeadCudaTests
{
    private static readonly int[][] Prompts = [[1, 300, 200, 100, 50, 7, 99], [1, 42, 42, 42, 600, 17, 3, 250, 11]];
    private string _library = "", _package = "", _chameleon = "", _temporary = "";

    [OneTimeSetUp]
    public void RequireCudaKernelsAndPackages()
    {
        CudaTestSupport.RequireCuda();
        _library = Path.Combine(Environment.GetEnvironmentVariable("OMM_KERNELS_DIR") ?? "", "libomm_kernels.so");
        if (!File.Exists(_library)) Assert.Ignore("OMM_KERNELS_DIR does not hold libomm_kernels.so (tools/gpu_kernels.sh OUT_DIR builds it)");
        _temporary = Path.Combine(Path.GetTempPath(), $"omm-sampling-op-{Guid.NewGuid():N}");
        _package = SamplingHeadPackages.Convert("tiny-llama", "fp16", _temporary, "tiny-llama-fp16-sample-omm", "--sampling-op", "omm");
        _chameleon = SamplingHeadPackages.Convert("tiny-chameleon", "fp16", _temporary, "tiny-chameleon-fp16-sample-omm", "--sampling-op", "omm");
        foreach (string p in new[] { _package, _chameleon })
        {
            string graph = File.ReadAllText(Path.Combine(p, "decoder.onnx"), System.Text.Encoding.Latin1);
            Assert.That(graph, Does.Contain("OmmSamplingHead"), $"{p}: the head is our op");
            Assert.That(graph, Does.Not.Contain("TopK"), $"{p}: the standard head's sort is gone");
        }
    }

    [OneTimeTearDown]
    public void Clean()
    {
        if (_temporary.Length > 0 && Directory.Exists(_temporary)) Directory.Delete(_temporary, recursive: true);
    }

    private ExecutionOptions Cuda(bool cudaGraph) => new() { Providers = [ExecutionProviderKind.Cuda], CudaGraph = cudaGraph, CustomOpLibrary = _library };

    [TestCase(false)]
    [TestCase(true)]
    public void Our_sampling_op_gives_the_host_samplers_tokens(bool cudaGraph)
    {
        var package = ModelPackage.Open(_package);
        using var head = OrtDecodeEngine.Create(package, Cuda(cudaGraph));
        using var host = OrtDecodeEngine.Create(package, Cuda(cudaGraph) with { GraphTokenChoice = false });
        Assert.That(head.DeviceSampling && head.Device is not null, Is.True, "the head's inputs and next_token live on the device");
        foreach (var (name, sampling) in DeviceSamplingTests.Settings())
            for (int p = 0; p < Prompts.Length; p++)
                foreach (ulong seed in new ulong[] { 42, 20261127 })
                {
                    var options = sampling with { Seed = seed + (ulong)p };
                    var (expected, hostChoices) = DeviceSamplingTests.Run(host, Prompts[p], options);
                    var (actual, choices) = DeviceSamplingTests.Run(head, Prompts[p], options);
                    Assert.That(actual, Is.EqualTo(expected), $"{name}, prompt {p}, seed {seed}, CUDA graph {cudaGraph}");
                    Assert.That(choices, Is.EqualTo(options.MaxNewTokens - 1), $"{name}: every token after the prompt's is the op's");
                    Assert.That(hostChoices, Is.Zero);
                }
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Our_sampling_op_mixes_guidance_and_the_constraint_as_the_host(bool cudaGraph)
    {
        var package = ModelPackage.Open(_package);
        using var head = OrtDecodeEngine.Create(package, Cuda(cudaGraph));
        using var host = OrtDecodeEngine.Create(package, Cuda(cudaGraph) with { GraphTokenChoice = false });
        var constraint = new ImageSpanConstraint(721, Enumerable.Range(100, 400));
        foreach (var (scale, sampling) in new[] { (3f, new SamplingOptions { Temperature = 1f, TopP = 0.9f, Seed = 11 }),
                                                  (2f, new SamplingOptions { Temperature = 0.8f, TopK = 30, RepetitionPenalty = 1.3f, Seed = 12 }),
                                                  (4f, new SamplingOptions { RepetitionPenalty = 1.2f }) })
        {
            var expected = ClassifierFreeGuidance.Generate(host, Prompts[1], [1, 7], 40, scale, sampling, constraint);
            var actual = ClassifierFreeGuidance.Generate(head, Prompts[1], [1, 7], 40, scale, sampling, constraint);
            Assert.That(ClassifierFreeGuidance.LastDeviceChoices, Is.EqualTo(39));
            Assert.That(actual, Is.EqualTo(expected), $"scale {scale}, CUDA graph {cudaGraph}");
            Assert.That(actual.All(constraint.IsAllowed), Is.True);
        }
    }

    [Test]
    public void Our_sampling_op_keeps_concurrent_sequences_apart()
    {
        // Each sequence's step allocates the op's scratch from the session's arena: 6 sequences at once, each with its own
        // seed and settings, give what each gives alone on the host.
        var package = ModelPackage.Open(_package);
        using var head = OrtDecodeEngine.Create(package, Cuda(false));
        using var host = OrtDecodeEngine.Create(package, Cuda(false) with { GraphTokenChoice = false });
        var jobs = DeviceSamplingTests.Settings().Skip(1).Take(6)
            .Select((x, i) => (Prompt: Prompts[i % Prompts.Length], Sampling: x.Sampling with { Seed = 300 + (ulong)i })).ToArray();
        var expected = jobs.Select(j => DeviceSamplingTests.Run(host, j.Prompt, j.Sampling).Tokens).ToArray();
        var actual = new int[jobs.Length][];
        Parallel.For(0, jobs.Length, new ParallelOptions { MaxDegreeOfParallelism = jobs.Length },
                     i => actual[i] = DeviceSamplingTests.Run(head, jobs[i].Prompt, jobs[i].Sampling).Tokens);
        for (int i = 0; i < jobs.Length; i++) Assert.That(actual[i], Is.EqualTo(expected[i]), $"job {i}");
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Our_sampling_op_draws_chameleons_image_tokens_as_the_host(bool cudaGraph)
    {
        foreach (var sampling in new[] { new SamplingOptions { Temperature = 1f, TopP = 0.9f, Seed = 2026 },
                                         new SamplingOptions { Temperature = 0.7f, TopK = 100, RepetitionPenalty = 1.2f, Seed = 7 } })
        {
            var expected = DeviceSamplingCudaTests.ImageTokens(_chameleon, Cuda(cudaGraph) with { GraphTokenChoice = false }, sampling);
            var actual = DeviceSamplingCudaTests.ImageTokens(_chameleon, Cuda(cudaGraph), sampling);
            Assert.That(ClassifierFreeGuidance.LastDeviceChoices, Is.EqualTo(actual.Length - 1), "every token after the prompt's from the op");
            Assert.That(actual, Is.EqualTo(expected));
        }
    }

    [Test]
    public void A_sampling_op_package_is_refused_without_the_library()
    {
        var e = Assert.Throws<ModelPackageException>(() =>
            OrtDecodeEngine.Create(ModelPackage.Open(_package), Cuda(false) with { CustomOpLibrary = null }))!;
        Assert.That(e.Message, Does.Contain("CustomOpLibrary"));
    }
}
