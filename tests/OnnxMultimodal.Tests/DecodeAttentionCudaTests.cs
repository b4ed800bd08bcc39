using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// Decode attention by ONNX Runtime's flash attention path (our default on Hopper) against its XQA kernel
/// (<see cref="ExecutionOptions.CudaXqaAttention"/>): a Llama-style fused fp16 decoder with head dimension 64 and
/// grouped-query attention 4:2, which both kernels take (the committed tiny models' head dimension 16 takes neither),
/// exported here with synthetic weights (<c>omm_export llama --preset hd64</c>, needs python3 with torch and
/// transformers; skipped, with the reason, without them). XQA's own greedy tokens are forced on the flash run, and every
/// step's logits must agree within fp16 attention rounding (1e-3 of max |logit| a layer, set from the kernels' fp32
/// softmax and fp16 outputs); a wrong cache position, head or scale moves them by a large fraction of their range.
/// Below Hopper both runs take ONNX Runtime's own choice unless XQA is asked for, so the comparison is then weaker.
/// </summary>
[Category("Cuda")]
[NonParallelizable]
public class DecodeAttentionCudaTests
{
    private static readonly int[][] Prompts = [[1, 300, 200, 100, 50, 7, 99], [1, 42, 42, 42, 600, 17, 3, 250, 11, 5, 700]];
    private string _package = "", _temporary = "";

    [OneTimeSetUp]
    public void ExportAHeadDim64Decoder()
    {
        CudaTestSupport.RequireCuda();
        _temporary = Path.Combine(Path.GetTempPath(), $"omm-attention-{Guid.NewGuid():N}");
        _package = Path.Combine(_temporary, "hd64-fp16");
        string? failure = SamplingHeadPackages.Exporter("python3", ["llama", "--preset", "hd64", "--graph", "fused", "--precision", "fp16",
                                                                   "--no-reference", "--out", _package], 300);
        if (failure is not null) Assert.Ignore($"cannot export the hd64 decoder here (python3 with torch and transformers): {failure}");
        var decoder = Pipeline.ModelPackage.Open(_package).Manifest.Decoder!;
        Assert.That((decoder.HeadDim, decoder.NumHeads, decoder.NumKvHeads), Is.EqualTo((64, 4, 2)), "the shapes both kernels take");
    }

    [OneTimeTearDown]
    public void Clean()
    {
        if (_temporary.Length > 0 && Directory.Exists(_temporary)) Directory.Delete(_temporary, recursive: true);
    }

    [TestCase(false)]
    [TestCase(true)]
    public void Flash_decode_attention_gives_XQAs_logits_within_fp16_rounding(bool cudaGraph)
    {
        var xqa = new ExecutionOptions { Providers = [ExecutionProviderKind.Cuda], CudaGraph = cudaGraph, GraphTokenChoice = false, CudaXqaAttention = true };
        var flash = xqa with { CudaXqaAttention = false };
        string? before = NativeEnvironment.Get(XqaSwitch.Variable);
        int layers = Pipeline.ModelPackage.Open(_package).Manifest.Decoder!.NumLayers;
        // Both kernels round q.k and the softmax-weighted sum to fp16 in their own order: 2.6e-3 of the largest logit
        // measured through this 2-layer model on an H100 (2026-11-27), against O(1) for a wrong cache or mask.
        double bound = 4e-3 * layers;
        // XQA's own greedy tokens, forced on flash
        var (worst, failures) = CustomOpsCudaTests.CompareForced(_package, xqa, _package, flash, Prompts, 48, bound);
        TestContext.Out.WriteLine($"worst max |diff| / max |logit| {worst:E2} (bound {bound:E2}), CUDA graph {cudaGraph}, " +
                                  $"compute capability {CudaRuntime.ComputeCapabilityMajor(0)}");
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(20)));
        Assert.That(NativeEnvironment.Get(XqaSwitch.Variable), Is.EqualTo(before), "the switch is put back after each session");
    }
}
