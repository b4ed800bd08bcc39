using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The sampling head on CUDA, inside the step (and inside the captured CUDA graph): each seeded run must give token
/// for token what the host <see cref="Sampler"/> chooses from the same package's logits on the same device
/// (GraphTokenChoice off). CUDA's GroupQueryAttention runs in fp16 only, so the packages are tiny-llama and
/// tiny-chameleon converted with <c>--graph fused --precision fp16 --device-sampling</c>: the folders
/// OMM_DEVICE_SAMPLING_PACKAGE and OMM_DEVICE_SAMPLING_CHAMELEON name, else converted here into a temporary folder
/// with <c>python3 -m omm_export</c> (needs the onnx package). Skipped, with the reason, without CUDA or without either. Tolerance: none on tokens; as on the CPU, the head's float32 and the
/// host's float64 could only disagree where a draw falls within float32 rounding of a boundary, and the seeds are fixed.
/// </summary>
[Category("Cuda")]
public class DeviceSamplingCudaTests
{
    private static readonly int[][] Prompts = [[1, 300, 200, 100, 50, 7, 99], [1, 42, 42, 42, 600, 17, 3, 250, 11]];
    private string _package = "", _chameleon = "", _temporary = "";

    [OneTimeSetUp]
    public void RequireCudaAndPackage()
    {
        CudaTestSupport.RequireCuda();
        _temporary = Path.Combine(Path.GetTempPath(), $"omm-device-sampling-{Guid.NewGuid():N}");
        _package = Environment.GetEnvironmentVariable("OMM_DEVICE_SAMPLING_PACKAGE") is { Length: > 0 } given ? given
            : SamplingHeadPackages.Convert("tiny-llama", "fp16", _temporary, "tiny-llama-fp16-sample");
        _chameleon = Environment.GetEnvironmentVariable("OMM_DEVICE_SAMPLING_CHAMELEON") is { Length: > 0 } chameleon ? chameleon
            : SamplingHeadPackages.Convert("tiny-chameleon", "fp16", _temporary, "tiny-chameleon-fp16-sample");
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

    [TestCase(false)]
    [TestCase(true)]
    public void Cuda_chameleon_image_tokens_with_the_head_are_the_host_samplers(bool cudaGraph)
    {
        // The real guided path: Chameleon's 2-row step (conditional, unconditional), its image-token constraint, the
        // manifest's guidance defaults (temperature 1, top-p 0.9, scale 3) and a seeded draw, through the pipeline.
        var sampling = new SamplingOptions { Temperature = 1f, TopP = 0.9f, Seed = 2026 };
        var expected = ImageTokens(_chameleon, Cuda(cudaGraph) with { GraphTokenChoice = false }, sampling);
        var actual = ImageTokens(_chameleon, Cuda(cudaGraph), sampling);
        Assert.That(ClassifierFreeGuidance.LastDeviceChoices, Is.EqualTo(actual.Length - 1), "every token after the prompt's from the head");
        Assert.That(actual, Is.EqualTo(expected));
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
