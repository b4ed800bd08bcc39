using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Playground;

/// <summary>The pipelines the page talks to, one per task, chosen at start:
/// <c>--models DIR</c> (or OMM_MODELS) holds tiny-llama, tiny-chameleon and tiny-seamless by default;
/// <c>--text-model</c>, <c>--vision-model</c>, <c>--speech-model</c> name other folders; <c>--provider cpu|cuda</c>.
/// A task whose model is missing or does not load is switched off, with the reason shown on the page.</summary>
public sealed class Models : IAsyncDisposable
{
    private readonly Dictionary<string, MultimodalPipeline> _loaded = new();
    private readonly Dictionary<string, string> _unavailable = new();

    /// <summary>The provider the models were loaded for.</summary>
    public string Provider { get; private init; } = "cpu";

    /// <summary>The pipeline of a task (text, vision, speech), or null with the reason.</summary>
    public MultimodalPipeline? For(string task, out string? reason)
    {
        _unavailable.TryGetValue(task, out reason);
        return _loaded.GetValueOrDefault(task);
    }

    /// <summary>What the page shows: each task's model, or why it is off.</summary>
    public object Describe() => new
    {
        provider = Provider,
        tasks = new[] { "text", "vision", "speech" }.ToDictionary(t => t, t => _loaded.TryGetValue(t, out var p)
            ? (object)new { available = true, model = p.Model.Name, family = p.Model.Family, precision = p.Model.Precision }
            : new { available = false, reason = _unavailable.GetValueOrDefault(t, "not configured") }),
    };

    /// <summary>Loads the configured models (see the type's summary).</summary>
    public static async Task<Models> LoadAsync(IConfiguration config, ILogger log)
    {
        string provider = config["provider"] ?? "cpu";
        var providers = provider.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(p => p.ToLowerInvariant() switch
        {
            "cpu" => ExecutionProviderKind.Cpu,
            "cuda" => ExecutionProviderKind.Cuda,
            _ => throw new InvalidInputException("--provider", $"'{p}' is not cpu or cuda"),
        }).ToList();
        if (!providers.Contains(ExecutionProviderKind.Cpu)) providers.Add(ExecutionProviderKind.Cpu);
        var options = new PipelineOptions { Execution = new ExecutionOptions { Providers = providers } };
        string? root = config["models"] ?? Environment.GetEnvironmentVariable("OMM_MODELS");
        var models = new Models { Provider = provider };
        foreach (var (task, key, name) in new[] { ("text", "text-model", "tiny-llama"), ("vision", "vision-model", "tiny-chameleon"), ("speech", "speech-model", "tiny-seamless") })
        {
            string? folder = config[key] ?? (root is null ? null : Path.Combine(root, name));
            if (folder is null) { models._unavailable[task] = $"no model: start with --models DIR, OMM_MODELS or --{key} DIR"; continue; }
            try
            {
                models._loaded[task] = await MultimodalPipeline.LoadAsync(folder, options);
                log.LogInformation("{Task}: {Folder} on {Provider}", task, folder, provider);
            }
            catch (OnnxMultimodalException e)
            {
                models._unavailable[task] = e.Message;
                log.LogWarning("{Task} off: {Reason}", task, e.Message);
            }
        }
        return models;
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        foreach (var p in _loaded.Values) await p.DisposeAsync();
    }
}
