using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;
using OnnxMultimodal.Text;

namespace OnnxMultimodal.Tests;

/// <summary>
/// Packages exported by `omm_export --checkpoint` from Hugging Face checkpoints built with save_pretrained
/// from real models' config fields (CodeLlama-7B: rope_theta 1e6, vocab 32016, Llama-2 tokenizer;
/// Llama-3.2-1B-Instruct: llama3 RoPE scaling, explicit head_dim, GQA, tied embeddings, three EOS ids,
/// Llama-3 tokenizer), tiny in size, on the CPU against PyTorch's greedy tokens and the Hugging Face
/// tokenizer's ids. fp32 graph against fp32 PyTorch: the tokens must be exactly equal (the references
/// record PyTorch's margins; the proof checkpoints are seeded for decisive logits).
/// </summary>
[TestFixture("proof-codellama-7b")]
[TestFixture("proof-llama-3.2-1b")]
public class RealCheckpointTests(string model)
{
    private string _dir = null!;

    [OneTimeSetUp]
    public void Materialize() => _dir = ProofPackages.Materialize(model);

    [OneTimeTearDown]
    public void Remove()
    {
        if (_dir is not null && Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true);
    }

    internal static int[] Greedy(string dir, ExecutionOptions execution, IReadOnlyList<int> prompt, int tokens)
    {
        using var engine = OrtDecodeEngine.Create(ModelPackage.Open(dir), execution);
        using var seq = engine.Start(prompt, new SamplingOptions { MaxNewTokens = tokens, IgnoreStopTokens = true });
        while (!seq.IsDone) seq.GenerateNextToken();
        return seq.Tokens.Skip(prompt.Count).ToArray();
    }

    [Test]
    public void Decoder_gives_exactly_pytorchs_greedy_tokens_on_the_cpu()
    {
        var (prompts, _) = ProofPackages.Reference(_dir);
        Assert.That(prompts, Is.Not.Empty);
        foreach (var p in prompts)
            Assert.That(Greedy(_dir, new ExecutionOptions(), p.Ids, p.Greedy.Length), Is.EqualTo(p.Greedy), p.ToString());
    }

    [Test]
    public void Manifest_carries_the_checkpoints_stop_ids_and_shapes()
    {
        var m = ModelPackage.Open(_dir).Manifest;
        if (model == "proof-llama-3.2-1b")
        {
            // Llama-3.2-1B-Instruct: config.json's three EOS ids; head_dim 16 with hidden 6 (explicit head_dim, not hidden/heads)
            Assert.That(m.Tokens!.Eos, Is.EquivalentTo(new[] { 128001, 128008, 128009 }));
            Assert.That(m.Decoder!.HeadDim, Is.EqualTo(16));
            Assert.That(m.Decoder.HiddenSize, Is.EqualTo(6));
            Assert.That(m.Decoder.VocabSize, Is.EqualTo(128256));
        }
        else
        {
            Assert.That(m.Tokens!.Eos, Is.EqualTo(new[] { 2 }));
            Assert.That(m.Decoder!.VocabSize, Is.EqualTo(32016));
        }
        Assert.That(m.Decoder.ContextLength, Is.EqualTo(256), "exported with --context-length 256");
    }

    /// <summary>Needs the real-tokenizer support of issue 12 part 1 (TextTokenizer for Split+ByteLevel and the
    /// SentencePiece-style BPE); fails with the tokenizer's refusal until that lands.</summary>
    [Test]
    public void Tokenizer_gives_the_hugging_face_ids()
    {
        var tokenizer = TextTokenizer.Load(Path.Combine(_dir, "tokenizer.json"));
        var (prompts, probes) = ProofPackages.Reference(_dir);
        foreach (var p in prompts)
            Assert.That(tokenizer.Encode(p.Text), Is.EqualTo(p.Ids.Skip(1).ToArray()), $"prompt {p} (reference ids after BOS)");
        foreach (var (text, ids) in probes)
            Assert.That(tokenizer.Encode(text), Is.EqualTo(ids), $"probe {text}");
    }

    /// <summary>`omm run` end to end: prompt text -> the package's tokenizer -> decoder -> PyTorch's tokens.
    /// Needs the real-tokenizer support of issue 12 part 1, like the test above.</summary>
    [Test]
    public async Task Pipeline_turns_the_prompt_text_into_pytorchs_tokens()
    {
        var (prompts, _) = ProofPackages.Reference(_dir);
        await using var pipeline = await MultimodalPipeline.LoadAsync(_dir, new PipelineOptions());
        foreach (var p in prompts)
        {
            var request = new GenerationRequest(p.Text) { Sampling = new SamplingOptions { MaxNewTokens = p.Greedy.Length, IgnoreStopTokens = true } };
            var (_, stats) = await pipeline.GenerateTextAsync(request);
            Assert.That(stats.Tokens, Is.EqualTo(p.Greedy), p.ToString());
        }
    }
}
