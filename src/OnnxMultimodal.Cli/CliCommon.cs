using System.CommandLine;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Cli;

/// <summary>Options shared by the commands, and turning them into library options.</summary>
internal static class CliCommon
{
    public static string DefaultModel => DefaultModels.PathOf(DefaultModels.Code);

    public static readonly Option<string?> Model = new("--model", "-m") { Description = "Model folder (default: the embedded model of the command: code, shapes or speech)" };
    public static readonly Option<string> Engine = new("--engine") { Description = "Decode engine: ort | genai", DefaultValueFactory = _ => "ort" };
    public static readonly Option<string> Provider = new("--provider") { Description = "Execution providers in fallback order, e.g. cuda,cpu", DefaultValueFactory = _ => "cpu" };
    public static readonly Option<int> Threads = new("--threads") { Description = "CPU threads per operator (0 = ONNX Runtime's choice)", DefaultValueFactory = _ => 0 };
    public static readonly Option<bool> CudaGraph = new("--cuda-graph") { Description = "CUDA: capture the decode step once and replay it (fused graphs)" };
    public static readonly Option<bool> HostKv = new("--host-kv") { Description = "CUDA: keep the KV cache on the host (the naive baseline)" };
    public static readonly Option<int> MaxTokens = new("--max-tokens") { Description = "Most tokens to generate", DefaultValueFactory = _ => 64 };
    public static readonly Option<ulong?> Seed = new("--seed") { Description = "Sampling seed" };
    public static readonly Option<float> Temperature = new("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 0f };
    public static readonly Option<int> TopK = new("--top-k") { Description = "0 = off", DefaultValueFactory = _ => 0 };
    public static readonly Option<float> TopP = new("--top-p") { Description = "1 = off", DefaultValueFactory = _ => 1f };
    public static readonly Option<float> RepetitionPenalty = new("--repetition-penalty") { Description = "1 = off", DefaultValueFactory = _ => 1f };
    public static readonly Option<bool> IgnoreEos = new("--ignore-eos") { Description = "Generate exactly --max-tokens" };
    public static readonly Option<string?> CustomOpLibrary = new("--custom-op-library") { Description = "CUDA: libomm_kernels.so, for packages converted with --custom-ops omm" };

    public static readonly Option<bool> HostTokenChoice = new("--host-token-choice") { Description = "Copy the logits out and choose each token on the host, even where the package's graph can choose it on the device (--device-sampling / --next-token packages): the baseline of that lever" };

    public static readonly Option<bool> Xqa = new("--xqa") { Description = "CUDA: decode attention by ONNX Runtime's XQA kernel (its own default). Without it, Hopper cards use its flash attention path (cuDNN's; faster at batch 1-2 on an H200) and older cards ONNX Runtime's own choice; a process that sets ORT_ENABLE_XQA itself decides" };

    public static readonly Option<bool> Tf32 = new("--tf32") { Description = "CUDA: let fp32 graphs (the VQ image encoder and decoder, fp32 speech encoders) use TF32 tensor cores (~1e-3 relative; off: fp32 results)" };

    public static readonly Option<bool> EncoderGraph = new("--encoder-graph") { Description = "CUDA: replay the speech encoder as a CUDA graph per exact input length (captured at a length's second request)" };

    public static void AddSampling(Command c)
    {
        foreach (var o in new Option[] { Model, Engine, Provider, Threads, CudaGraph, HostKv, MaxTokens, Seed, Temperature, TopK, TopP, RepetitionPenalty, IgnoreEos, CustomOpLibrary, EncoderGraph, HostTokenChoice, Xqa, Tf32 })
            c.Options.Add(o);
    }

    public static string ModelPath(ParseResult r) => r.GetValue(Model) ?? DefaultModel;

    /// <summary>The request of a task (text | caption | imagine | transcribe; auto: from the model family), with the tiny
    /// models' reference image and WAV as defaults.</summary>
    public static (string Kind, string Family, GenerationRequest Request) TaskRequest(string task, string model, string prompt, string? image, string? audio)
    {
        string family = ModelPackage.Open(model).Manifest.Family;
        string kind = task is "auto" ? family switch { "chameleon" => "caption", "seamless" => "transcribe", _ => "text" } : task;
        GenerationRequest request = kind switch
        {
            "caption" => new([Part.Image(image ?? Path.Combine(model, "reference", "shapes.png")), Part.Text(prompt)]),
            "imagine" => new(prompt) { Output = OutputModality.Image },
            "transcribe" => new([Part.Audio(audio ?? Path.Combine(model, "reference", "robot_16k.wav"))]),
            "text" => new(prompt),
            var other => throw new InvalidInputException("--task", $"'{other}' is not one of text, caption, imagine, transcribe"),
        };
        return (kind, family, request);
    }

    public static PipelineOptions PipelineOptions(ParseResult r) => new()
    {
        Engine = ParseEngine(r.GetValue(Engine)!),
        Execution = Execution(r),
    };

    public static ExecutionOptions Execution(ParseResult r) => new()
    {
        Providers = ParseProviders(r.GetValue(Provider)!),
        IntraOpThreads = NonNegative(r.GetValue(Threads), "--threads", "0 = ONNX Runtime's choice"),
        CudaGraph = r.GetValue(CudaGraph),
        DeviceResident = !r.GetValue(HostKv),
        CustomOpLibrary = r.GetValue(CustomOpLibrary),
        EncoderCudaGraph = r.GetValue(EncoderGraph),
        GraphTokenChoice = !r.GetValue(HostTokenChoice),
        CudaXqaAttention = r.GetValue(Xqa),
        CudaTf32 = r.GetValue(Tf32),
    };

    private static int NonNegative(int value, string option, string hint) =>
        value >= 0 ? value : throw new InvalidInputException(option, $"{value} is negative ({hint})");

    public static EngineKind ParseEngine(string s) => s.ToLowerInvariant() switch
    {
        "ort" => EngineKind.Ort,
        "genai" => EngineKind.GenAi,
        _ => throw new InvalidInputException("--engine", $"'{s}' is not ort or genai"),
    };

    public static IReadOnlyList<ExecutionProviderKind> ParseProviders(string s) =>
        s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p => p.ToLowerInvariant() switch
        {
            "cpu" => ExecutionProviderKind.Cpu,
            "cuda" => ExecutionProviderKind.Cuda,
            "tensorrt" or "trt" => ExecutionProviderKind.TensorRt,
            _ => throw new InvalidInputException("--provider", $"'{p}' is not cpu, cuda or tensorrt"),
        }).ToArray();

    public static SamplingOptions Sampling(ParseResult r) => new()
    {
        Temperature = r.GetValue(Temperature),
        TopK = r.GetValue(TopK),
        TopP = r.GetValue(TopP),
        RepetitionPenalty = r.GetValue(RepetitionPenalty),
        Seed = r.GetValue(Seed),
        MaxNewTokens = r.GetValue(MaxTokens),
        IgnoreStopTokens = r.GetValue(IgnoreEos),
    };

    /// <summary>Checks that <paramref name="path"/> can take an output file before any work is done: its folder
    /// exists, it is not a folder, and it can be created (the probe file is removed again).</summary>
    /// <exception cref="InvalidInputException">It cannot; names <paramref name="option"/> and the path.</exception>
    public static string CheckOutputFile(string path, string option)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new InvalidInputException(option, $"{path} is a folder: give a file name, e.g. {Path.Combine(path, "image.png")}");
        string folder = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(folder)) throw new InvalidInputException(option, $"the folder {folder} does not exist");
        bool existed = File.Exists(full);
        try
        {
            using (new FileStream(full, FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite)) { }
            if (!existed) File.Delete(full);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidInputException(option, $"{path} cannot be written: {e.Message}", e);
        }
        return full;
    }

    /// <summary>Writes an output file; a full disk or a vanished folder becomes one line naming the option.</summary>
    /// <exception cref="InvalidInputException">The write failed.</exception>
    public static async Task WriteOutputFile(string path, byte[] bytes, string option, CancellationToken ct)
    {
        try
        {
            await File.WriteAllBytesAsync(path, bytes, ct);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidInputException(option, $"{path} cannot be written: {e.Message}", e);
        }
    }

    /// <summary>Runs a command body; library errors become one clear line and exit code 2. <paramref name="words"/>
    /// turns the library's names for inputs into the command's (e.g. ("parts[0]", "--image")).</summary>
    public static async Task<int> Guard(Func<Task<int>> body, params (string Library, string Cli)[] words)
    {
        try
        {
            return await body();
        }
        catch (OnnxMultimodalException e)
        {
            string message = words.Aggregate(e.Message, (m, w) => m.Replace(w.Library, w.Cli));
            Console.Error.WriteLine($"error: {message}");
            return 2;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("cancelled");
            return 130;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"internal error ({e.GetType().Name}): {e.Message}");
            return 1;
        }
    }
}
