using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The sampling head on CUDA, inside the step (and inside the captured CUDA graph): each seeded run must give token
/// for token what the host <see cref="Sampler"/> chooses from the same package's logits on the same device
/// (GraphTokenChoice off). Two heads, one fixture each: "onnx", the head as standard ops, and "omm", the head as our one
/// CUDA op (<c>omm.OmmSamplingHead</c>, src/OnnxMultimodal.Kernels/sampling_head.cu; convert <c>--sampling-op omm</c>; the
/// library from OMM_KERNELS_DIR/libomm_kernels.so, which tools/gpu_kernels.sh builds). CUDA's GroupQueryAttention runs
/// in fp16 only, so the packages are tiny-llama and tiny-chameleon converted with <c>--graph fused --precision fp16
/// --device-sampling</c>: for "onnx", the folders OMM_DEVICE_SAMPLING_PACKAGE and OMM_DEVICE_SAMPLING_CHAMELEON name,
/// else converted here into a temporary folder with <c>python3 -m omm_export</c> (needs the onnx package). Skipped, with
/// the reason, without CUDA, either package or (for "omm") the library. Tolerance: none on tokens; as on the CPU, the
/// heads' float32 (the op: float32 exponentials summed as exact integers) and the host's float64 could only disagree where
/// a draw falls within float32 rounding of a boundary, and the seeds are fixed.
/// </summary>
[Category("Cuda")]
[TestFixture("onnx")]
[TestFixture("omm")]
public class DeviceSamplingCudaTests(string head)
{
    private static readonly int[][] Prompts = [[1, 300, 200, 100, 50, 7, 99], [1, 42, 42, 42, 600, 17, 3, 250, 11]];
    private string _package = "", _chameleon = "", _temporary = "", _library = "";

    [OneTimeSetUp]
    public void RequireCudaAndPackages()
    {
        CudaTestSupport.RequireCuda();
        _temporary = Path.Combine(Path.GetTempPath(), $"omm-device-sampling-{Guid.NewGuid():N}");
        if (head == "onnx")
        {
            _package = Environment.GetEnvironmentVariable("OMM_DEVICE_SAMPLING_PACKAGE") is { Length: > 0 } given ? given
                : SamplingHeadPackages.Convert("tiny-llama", "fp16", _temporary, "tiny-llama-fp16-sample");
            _chameleon = Environment.GetEnvironmentVariable("OMM_DEVICE_SAMPLING_CHAMELEON") is { Length: > 0 } chameleon ? chameleon
                : SamplingHeadPackages.Convert("tiny-chameleon", "fp16", _temporary, "tiny-chameleon-fp16-sample");
            return;
        }
        _library = Path.Combine(Environment.GetEnvironmentVariable("OMM_KERNELS_DIR") ?? "", "libomm_kernels.so");
        if (!File.Exists(_library)) Assert.Ignore("OMM_KERNELS_DIR does not hold libomm_kernels.so (tools/gpu_kernels.sh OUT_DIR builds it)");
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

    private ExecutionOptions Cuda(bool cudaGraph) =>
        new() { Providers = [ExecutionProviderKind.Cuda], CudaGraph = cudaGraph, CustomOpLibrary = head == "omm" ? _library : null };

    [TestCase(false)]
    [TestCase(true)]
    public void Cuda_device_sampling_gives_the_host_samplers_tokens(bool cudaGraph)
    {
        var package = ModelPackage.Open(_package);
        using var device = OrtDecodeEngine.Create(package, Cuda(cudaGraph));
        using var host = OrtDecodeEngine.Create(package, Cuda(cudaGraph) with { GraphTokenChoice = false });
        Assert.That(device.DeviceSampling && device.Device is not null, Is.True, "the head's inputs and next_token live on the device");
        foreach (var (name, sampling) in DeviceSamplingTests.Settings())
            for (int p = 0; p < Prompts.Length; p++)
                foreach (ulong seed in new ulong[] { 42, 20261127 })
                {
                    var options = sampling with { Seed = seed + (ulong)p };
                    var (expected, hostChoices) = DeviceSamplingTests.Run(host, Prompts[p], options);
                    var (actual, choices) = DeviceSamplingTests.Run(device, Prompts[p], options);
                    Assert.That(actual, Is.EqualTo(expected), $"{name}, prompt {p}, seed {seed}, CUDA graph {cudaGraph}");
                    Assert.That(choices, Is.EqualTo(options.MaxNewTokens - 1), $"{name}: every token after the prompt's is the head's");
                    Assert.That(hostChoices, Is.Zero);
                }
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Cuda_guided_steps_on_the_device_give_the_host_tokens(bool cudaGraph)
    {
        var package = ModelPackage.Open(_package);
        using var device = OrtDecodeEngine.Create(package, Cuda(cudaGraph));
        using var host = OrtDecodeEngine.Create(package, Cuda(cudaGraph) with { GraphTokenChoice = false });
        var constraint = new ImageSpanConstraint(721, Enumerable.Range(100, 400));
        foreach (var (scale, sampling) in new[] { (3f, new SamplingOptions { Temperature = 1f, TopP = 0.9f, Seed = 11 }),
                                                  (2f, new SamplingOptions { Temperature = 0.8f, TopK = 30, RepetitionPenalty = 1.3f, Seed = 12 }),
                                                  (4f, new SamplingOptions { RepetitionPenalty = 1.2f }) })
        {
            var expected = ClassifierFreeGuidance.Generate(host, Prompts[1], [1, 7], 40, scale, sampling, constraint);
            var actual = ClassifierFreeGuidance.Generate(device, Prompts[1], [1, 7], 40, scale, sampling, constraint);
            Assert.That(ClassifierFreeGuidance.LastDeviceChoices, Is.EqualTo(39));
            Assert.That(actual, Is.EqualTo(expected), $"scale {scale}, CUDA graph {cudaGraph}");
            Assert.That(actual.All(constraint.IsAllowed), Is.True);
        }
    }

    [Test]
    public void Concurrent_sequences_on_the_device_keep_their_own_choices()
    {
        // Each sequence rents its own pooled cache and head inputs (and our op allocates its scratch per run from the
        // session's arena): 6 sequences at once, each with its own seed and settings, give what each gives alone on the host.
        var package = ModelPackage.Open(_package);
        using var device = OrtDecodeEngine.Create(package, Cuda(false));
        using var host = OrtDecodeEngine.Create(package, Cuda(false) with { GraphTokenChoice = false });
        var jobs = DeviceSamplingTests.Settings().Skip(1).Take(6)
            .Select((x, i) => (Prompt: Prompts[i % Prompts.Length], Sampling: x.Sampling with { Seed = 300 + (ulong)i })).ToArray();
        var expected = jobs.Select(j => DeviceSamplingTests.Run(host, j.Prompt, j.Sampling).Tokens).ToArray();
        var actual = new int[jobs.Length][];
        Parallel.For(0, jobs.Length, new ParallelOptions { MaxDegreeOfParallelism = jobs.Length },
                     i => actual[i] = DeviceSamplingTests.Run(device, jobs[i].Prompt, jobs[i].Sampling).Tokens);
        for (int i = 0; i < jobs.Length; i++) Assert.That(actual[i], Is.EqualTo(expected[i]), $"job {i}");
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Cuda_chameleon_image_tokens_with_the_head_are_the_host_samplers(bool cudaGraph)
    {
        // The real guided path: Chameleon's 2-row step (conditional, unconditional), its image-token constraint, the
        // manifest's guidance defaults (temperature 1, top-p 0.9, scale 3) and seeded draws, through the pipeline.
        foreach (var sampling in new[] { new SamplingOptions { Temperature = 1f, TopP = 0.9f, Seed = 2026 },
                                         new SamplingOptions { Temperature = 0.7f, TopK = 100, RepetitionPenalty = 1.2f, Seed = 7 } })
        {
            var expected = ImageTokens(_chameleon, Cuda(cudaGraph) with { GraphTokenChoice = false }, sampling);
            var actual = ImageTokens(_chameleon, Cuda(cudaGraph), sampling);
            Assert.That(ClassifierFreeGuidance.LastDeviceChoices, Is.EqualTo(actual.Length - 1), "every token after the prompt's from the head");
            Assert.That(actual, Is.EqualTo(expected));
        }
    }

    [Test]
    public void A_sampling_op_package_is_refused_without_the_library()
    {
        Assume.That(head, Is.EqualTo("omm"), "only our op's package needs the library");
        var e = Assert.Throws<ModelPackageException>(() =>
            OrtDecodeEngine.Create(ModelPackage.Open(_package), Cuda(false) with { CustomOpLibrary = null }))!;
        Assert.That(e.Message, Does.Contain("CustomOpLibrary"));
    }

    /// <summary>The image tokens of one imagine request (the pipeline's guided decode on this thread).</summary>
    internal static int[] ImageTokens(string package, ExecutionOptions execution, SamplingOptions sampling)
    {
        using var pipeline = MultimodalPipeline.LoadAsync(package, new PipelineOptions { Execution = execution }).GetAwaiter().GetResult();
        var request = new GenerationRequest("a red circle") { Output = OutputModality.Image, Sampling = sampling };
        GenerationStats? stats = null;
        foreach (var update in pipeline.GenerateAsync(request).ToBlockingEnumerable()) stats = update.Stats ?? stats;
        return stats!.Tokens.ToArray();
    }
}
