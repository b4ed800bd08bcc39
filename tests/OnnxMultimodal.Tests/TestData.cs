using System.Text.Json;
using System.Text.Json.Serialization;

namespace OnnxMultimodal.Tests;

/// <summary>Finds the repository's committed models and reads their PyTorch references.</summary>
internal static class TestData
{
    public static string RepoRoot { get; } = FindRoot();

    public static string Model(string name) => Path.Combine(RepoRoot, "models", name);

    public static string TinyLlama => Model("tiny-llama");

    private static string FindRoot()
    {
        // A published test executable (the GPU bundle) may live outside the checkout: OMM_REPO_ROOT names it.
        if (Environment.GetEnvironmentVariable("OMM_REPO_ROOT") is { Length: > 0 } root)
            return File.Exists(Path.Combine(root, "OnnxMultimodal.sln")) ? root
                : throw new InvalidOperationException($"OMM_REPO_ROOT={root} holds no OnnxMultimodal.sln");
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "OnnxMultimodal.sln"))) return dir.FullName;
        throw new InvalidOperationException("OnnxMultimodal.sln not found above " + AppContext.BaseDirectory);
    }

    /// <summary>A scratch copy of a model folder that a test may damage.</summary>
    /// <summary>A package in a fresh temporary folder (delete it after use): <paramref name="model"/>'s
    /// manifest with every component copied into the folder (a subfolder per role and source model, external .data
    /// beside its graph: component paths may not leave a model folder), and each (role, component of
    /// another model) in <paramref name="borrowed"/> taken from that model's manifest.</summary>
    public static string PackageWith(string model, params (string Role, string FromModel, string FromRole)[] borrowed)
    {
        static string Component(string m, string role)
        {
            var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(Model(m), "multimodal.json")))!;
            return Path.GetFullPath(Path.Combine(Model(m), json["components"]![role]!.GetValue<string>()));
        }
        string dir = Path.Combine(Path.GetTempPath(), $"omm-package-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        var manifest = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(Model(model), "multimodal.json")))!;
        string Copy(string role, string source)
        {
            // <role>/<source model>/<file>: errors name the model a graph came from.
            string folder = Path.Combine(role, Path.GetFileName(Path.GetDirectoryName(source))!);
            Directory.CreateDirectory(Path.Combine(dir, folder));
            string name = Path.GetFileName(source);
            File.Copy(source, Path.Combine(dir, folder, name), overwrite: true);
            if (File.Exists(source + ".data")) File.Copy(source + ".data", Path.Combine(dir, folder, name + ".data"), overwrite: true);
            return Path.Combine(folder, name);
        }
        foreach (var (role, _) in manifest["components"]!.AsObject().ToList())
            manifest["components"]![role] = Copy(role, Component(model, role));
        foreach (var (role, fromModel, fromRole) in borrowed)
            manifest["components"]![role] = Copy(role, Component(fromModel, fromRole));
        File.WriteAllText(Path.Combine(dir, "multimodal.json"), manifest.ToJsonString());
        return dir;
    }

    public static string CopyModel(string name)
    {
        string dest = Path.Combine(Path.GetTempPath(), "omm-tests", $"{name}-{Guid.NewGuid():N}");
        foreach (var file in Directory.EnumerateFiles(Model(name), "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(dest, Path.GetRelativePath(Model(name), file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        return dest;
    }

    /// <summary>The GenAI engine, or the test is skipped with the reason where its native library is not
    /// in this build (the CUDA build of the suite leaves it out: its CPU runtime would clash).</summary>
    public static Generation.GenAiDecodeEngine GenAi(Pipeline.ModelPackage package)
    {
        try
        {
            return Generation.GenAiDecodeEngine.Create(package);
        }
        catch (ExecutionProviderException e)
        {
            Assert.Ignore(e.Message);
            throw;
        }
    }

    public static TextReference LoadTextReference(string model)
    {
        string dir = Path.Combine(Model(model), "reference");
        return JsonSerializer.Deserialize<TextReference>(File.ReadAllText(Path.Combine(dir, "reference.json")))!
               with { Directory = dir };
    }

    public static float[] ReadFloats(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var result = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, result, 0, bytes.Length);   // little-endian float32, as numpy wrote it
        return result;
    }
}

/// <summary>reference/reference.json, format_version 1 (written by onnx-export/omm_export/reference.py).</summary>
internal sealed record TextReference
{
    [JsonPropertyName("format_version")] public int FormatVersion { get; init; }
    [JsonPropertyName("tokenizer")] public List<TokenizerCase> Tokenizer { get; init; } = [];
    [JsonPropertyName("prompts")] public List<PromptCase> Prompts { get; init; } = [];
    [JsonPropertyName("sampling")] public SamplingCase Sampling { get; init; } = new();
    [JsonIgnore] public string Directory { get; init; } = "";
}

internal sealed record TokenizerCase([property: JsonPropertyName("text")] string Text, [property: JsonPropertyName("ids")] int[] Ids);

public sealed record PromptCase
{
    [JsonPropertyName("text")] public string Text { get; init; } = "";
    [JsonPropertyName("ids")] public int[] Ids { get; init; } = [];
    [JsonPropertyName("logits_file")] public string LogitsFile { get; init; } = "";
    [JsonPropertyName("logits_shape")] public int[] LogitsShape { get; init; } = [];
    [JsonPropertyName("greedy")] public int[] Greedy { get; init; } = [];
    [JsonPropertyName("greedy_min_margin")] public double GreedyMinMargin { get; init; }
    public override string ToString() => Text.Replace("\n", "\\n");
}

internal sealed record SamplingCase
{
    [JsonPropertyName("seed")] public ulong Seed { get; init; }
    [JsonPropertyName("temperature")] public float Temperature { get; init; }
    [JsonPropertyName("top_k")] public int TopK { get; init; }
    [JsonPropertyName("top_p")] public float TopP { get; init; }
    [JsonPropertyName("repetition_penalty")] public float RepetitionPenalty { get; init; }
    [JsonPropertyName("steps")] public int Steps { get; init; }
    [JsonPropertyName("ids")] public int[] Ids { get; init; } = [];
    [JsonPropertyName("tokens")] public int[] Tokens { get; init; } = [];
    [JsonPropertyName("uniforms")] public double[] Uniforms { get; init; } = [];
}
