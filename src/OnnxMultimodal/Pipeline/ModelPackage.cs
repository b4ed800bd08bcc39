using System.Text.Json;

namespace OnnxMultimodal.Pipeline;

/// <summary>
/// A model folder: <c>multimodal.json</c>, the ONNX graphs it names, the tokenizer. Loading checks
/// everything that can be checked without running a graph, and names the file at fault.
/// </summary>
internal sealed class ModelPackage
{
    public static readonly IReadOnlySet<string> KnownFamilies = new HashSet<string> { "llama", "chameleon", "seamless" };

    public string Directory { get; }
    public ModelManifest Manifest { get; }
    public DecoderManifest Decoder => Manifest.Decoder!;
    public string DecoderPath => Path.Combine(Directory, Manifest.Components["decoder"]);
    public string TokenizerPath => Path.Combine(Directory, Manifest.Components.GetValueOrDefault("tokenizer", "tokenizer.json"));
    public bool HasGenAiConfig => File.Exists(Path.Combine(Directory, "genai_config.json"));
    public string ManifestPath => Path.Combine(Directory, "multimodal.json");
    public bool Has(string component) => Manifest.Components.ContainsKey(component);

    /// <exception cref="ModelPackageException">The manifest names no such component.</exception>
    public string ComponentPath(string component) => Manifest.Components.TryGetValue(component, out var file)
        ? Path.Combine(Directory, file)
        : throw new ModelPackageException(ManifestPath, $"no '{component}' component (family '{Manifest.Family}')");

    private ModelPackage(string directory, ModelManifest manifest)
    {
        Directory = directory;
        Manifest = manifest;
    }

    /// <summary>Opens and validates a model folder: every size and token id it declares is checked against
    /// <paramref name="limits"/> (default <see cref="ResourceLimits.Default"/>) and every component path
    /// against the folder, before anything is allocated or opened from them.</summary>
    /// <exception cref="ModelPackageException">The folder, a file, or the manifest is missing or wrong.</exception>
    public static ModelPackage Open(string directory, ResourceLimits? limits = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        limits ??= ResourceLimits.Default;
        directory = Path.GetFullPath(directory);
        if (File.Exists(directory))
            throw new ModelPackageException(directory, "is a file, not a model folder");
        if (!System.IO.Directory.Exists(directory))
            throw new ModelPackageException(directory, "model folder not found");
        string manifestPath = Path.Combine(directory, "multimodal.json");
        if (!File.Exists(manifestPath) && !System.IO.Directory.Exists(manifestPath) && new FileInfo(manifestPath).LinkTarget is null)
            throw new ModelPackageException(manifestPath, "missing: a model folder needs multimodal.json (is this an OnnxMultimodal export?)");
        InputFiles.RequireForModel(manifestPath, "");
        ModelManifest manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<ModelManifest>(File.ReadAllText(manifestPath), ModelManifest.Json)
                       ?? throw new ModelPackageException(manifestPath, "empty manifest");
        }
        catch (JsonException e)
        {
            throw new ModelPackageException(manifestPath, $"not valid JSON ({e.Message})", e);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelPackageException(manifestPath, $"cannot be read: {e.Message}", e);
        }
        LimitChecks.NoNulls(manifest, manifestPath);
        if (manifest.FormatVersion != 1)
            throw new ModelPackageException(manifestPath, $"format_version {manifest.FormatVersion} is not supported (expected 1)");
        if (!KnownFamilies.Contains(manifest.Family))
            throw new ModelPackageException(manifestPath, $"unknown family '{manifest.Family}' (expected one of {string.Join(", ", KnownFamilies)})");
        if (!manifest.Components.ContainsKey("decoder") || manifest.Decoder is null)
            throw new ModelPackageException(manifestPath, "no decoder component: every family needs decoder.onnx and a 'decoder' section");
        var d = manifest.Decoder;
        if (d.NumLayers <= 0 || d.NumHeads <= 0 || d.NumKvHeads <= 0 || d.HeadDim <= 0 || d.VocabSize <= 0 || d.ContextLength <= 0)
            throw new ModelPackageException(manifestPath, "decoder section needs positive num_layers, num_heads, num_kv_heads, head_dim, vocab_size, context_length");
        if (d.KvCache is not ("concat" or "shared"))
            throw new ModelPackageException(manifestPath, $"decoder.kv_cache '{d.KvCache}' is not 'concat' or 'shared'");
        if (d.Logits is not ("all" or "last"))
            throw new ModelPackageException(manifestPath, $"decoder.logits '{d.Logits}' is not 'all' or 'last'");
        if (d.Logits == "last" && !d.SharedCache)
            throw new ModelPackageException(manifestPath, "decoder.logits 'last' is written only for shared-cache (fused) graphs");

        if (manifest.Components.ContainsKey("prefill_decoder") && !d.SharedCache)
            throw new ModelPackageException(manifestPath, "a prefill_decoder component needs a shared-cache (fused) decoder: the two graphs share one in-place KV cache");

        if (manifest.Components.ContainsKey("image_encoder") || manifest.Components.ContainsKey("image_decoder"))
        {
            var img = manifest.Image;
            if (img is null || img.Size <= 0 || img.TokensPerImage <= 0 || img.CodeToToken.Length == 0)
                throw new ModelPackageException(manifestPath, "image components need an 'image' section with size, tokens_per_image and code_to_token");
        }
        LimitChecks.Sizes(manifest, manifestPath, limits);
        string realDirectory;
        try { realDirectory = InputFiles.RealPath(directory); }
        catch (IOException e) { throw new ModelPackageException(directory, $"cannot be resolved: {e.Message}", e); }
        foreach (var (role, file) in manifest.Components)
        {
            string path = Path.Combine(directory, file);
            if (!File.Exists(path) && !System.IO.Directory.Exists(path) && new FileInfo(path).LinkTarget is null)
                throw new ModelPackageException(path, $"missing: multimodal.json names it as the {role} component");
            InputFiles.RequireForModel(path, role);
            if (!limits.AllowPathsOutsideModel && !InputFiles.IsAllowedComponent(InputFiles.RealPath(path), realDirectory))
                throw new ModelPackageException(path, $"the {role} component lies outside the model folder (at {InputFiles.RealPath(path)}): " +
                    "refused unless ResourceLimits.AllowPathsOutsideModel is set (a sibling model folder's file, ../<model>/<file>, is allowed)");
            if (file.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
                OnnxHeader.Read(path).EnsureSupported(path);
        }
        return new ModelPackage(directory, manifest);
    }

    /// <summary>Checks that a graph's inputs and outputs are the ones the manifest names.</summary>
    /// <exception cref="ModelPackageException">A name the manifest expects is not in the graph.</exception>
    internal static void CheckNames(string path, IEnumerable<string> actual, IEnumerable<string> expected, string kind)
    {
        var have = actual.ToHashSet();
        var missing = expected.Where(n => !have.Contains(n)).ToList();
        if (missing.Count > 0)
            throw new ModelPackageException(path, $"graph {kind} do not match multimodal.json: expected {string.Join(", ", missing)}; the graph has {string.Join(", ", have.Order())}");
    }
}
