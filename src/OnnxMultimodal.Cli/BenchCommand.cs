using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using Spectre.Console;

namespace OnnxMultimodal.Cli;

/// <summary>
/// <c>omm bench</c>: time to first token, per-token latency, tokens/s, end-to-end latency and peak
/// memory for one or more engines on the same model, the same prompt and the same forced length.
/// Prints a table and JSON (also written to --json FILE).
/// </summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var engines = new Option<string>("--engine") { Description = "ort | genai | both", DefaultValueFactory = _ => "both" };
        var promptTokens = new Option<int>("--prompt-tokens") { Description = "Prompt length in tokens", DefaultValueFactory = _ => 32 };
        var newTokens = new Option<int>("--new-tokens") { Description = "Generated tokens (forced: end tokens ignored)", DefaultValueFactory = _ => 128 };
        var runs = new Option<int>("--runs") { Description = "Measured runs per engine", DefaultValueFactory = _ => 5 };
        var warmup = new Option<int>("--warmup") { Description = "Unmeasured runs first", DefaultValueFactory = _ => 2 };
        var json = new Option<string?>("--json") { Description = "Write the JSON result to this file (- : print it on stdout instead of the table)" };
        var cmd = new Command("bench", "Benchmark decode engines on a model") { engines, promptTokens, newTokens, runs, warmup, json };
        cmd.Options.Add(CliCommon.Model);
        cmd.Options.Add(CliCommon.Provider);
        cmd.Options.Add(CliCommon.Threads);
        cmd.Options.Add(CliCommon.CudaGraph);
        cmd.Options.Add(CliCommon.HostKv);
        var label = new Option<string?>("--label") { Description = "Name of this configuration in the JSON (e.g. a ladder rung)" };
        cmd.Options.Add(label);
        var ladder = new Option<bool>("--ladder") { Description = "Add one lever at a time (--model is the reference graph; --fp16-model and --int4-model add the fused rungs)" };
        var task = new Option<string>("--task") { Description = "text (engine-level: --prompt-tokens, --new-tokens) | caption | imagine | transcribe (whole requests: TTFT and end to end over --runs)", DefaultValueFactory = _ => "text" };
        var prompt = new Option<string>("--prompt") { Description = "Prompt for caption / imagine", DefaultValueFactory = _ => "What is in this image?" };
        var image = new Option<string?>("--image") { Description = "Image for caption" };
        var audio = new Option<string?>("--audio") { Description = "WAV for transcribe" };
        var fp16Model = new Option<string?>("--fp16-model") { Description = "Fused fp16 model folder for the ladder" };
        var int4Model = new Option<string?>("--int4-model") { Description = "Fused int4 model folder for the ladder (converted with --device-sampling or --next-token: adds the device token choice rung)" };
        var int4OmmModel = new Option<string?>("--int4-omm-model") { Description = "The int4 model converted with --custom-ops omm: adds our int4 GEMV rung (needs --custom-op-library)" };
        var int4OmmfModel = new Option<string?>("--int4-ommf-model") { Description = "The int4 model converted with --custom-ops omm-fused: adds the rung of SiLU·up fused into the gate_up GEMV (needs --custom-op-library)" };
        cmd.Options.Add(ladder);
        var sampled = new Option<bool>("--sampled") { Description = "Sample instead of choosing greedily (temperature 0.8, top-p 0.95, repetition penalty 1.1, seed 1): the device token choice rung then runs the sampling head (--device-sampling packages)" };
        cmd.Options.Add(sampled);
        cmd.Options.Add(int4OmmModel);
        cmd.Options.Add(int4OmmfModel);
        var int4OmmfsModel = new Option<string?>("--int4-ommfs-model") { Description = "The omm-fused int4 model converted with --device-sampling --sampling-op omm as well: adds the rung of the sampling head as one op (needs --custom-op-library)" };
        cmd.Options.Add(int4OmmfsModel);
        cmd.Options.Add(CliCommon.CustomOpLibrary);
        cmd.Options.Add(CliCommon.EncoderGraph);
        cmd.Options.Add(CliCommon.HostTokenChoice);
        cmd.Options.Add(CliCommon.Xqa);
        cmd.Options.Add(CliCommon.Tf32);
        cmd.Options.Add(fp16Model);
        cmd.Options.Add(int4Model);
        cmd.Options.Add(task);
        cmd.Options.Add(prompt);
        cmd.Options.Add(image);
        cmd.Options.Add(audio);
        cmd.Subcommands.Add(FbankBenchCommand.Create());
        cmd.Subcommands.Add(ImageBenchCommand.Create());
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            string taskKind = r.GetValue(task)!;
            GenerationRequest? whole = taskKind == "text"   // caption, imagine, transcribe: whole requests on our engine
                ? null
                : CliCommon.TaskRequest(taskKind, CliCommon.ModelPath(r), r.GetValue(prompt)!, r.GetValue(image), r.GetValue(audio)).Request
                  with { Sampling = Sampling(r.GetValue(newTokens), r.GetValue(sampled)) };
            if (r.GetValue(ladder))
            {
                Func<MultimodalPipeline, BenchResult> measure = whole is null
                    ? p => Measure(p, r.GetValue(promptTokens), r.GetValue(newTokens), r.GetValue(runs), r.GetValue(warmup), ct, sampled: r.GetValue(sampled))
                    : p => MeasureRequests(p, whole, r.GetValue(runs), r.GetValue(warmup), ct);
                return await Ladder(r, taskKind, r.GetValue(fp16Model), r.GetValue(int4Model), r.GetValue(int4OmmModel), r.GetValue(int4OmmfModel), r.GetValue(int4OmmfsModel), measure,
                                    r.GetValue(json), ct);
            }
            if (whole is not null && r.GetValue(engines) == "genai")
                throw new InvalidInputException("--engine", $"--task {taskKind} runs whole requests on our engine (ort) only");
            var list = whole is not null ? ["ort"] : r.GetValue(engines) == "both" ? new[] { "ort", "genai" } : new[] { r.GetValue(engines)! };
            var results = new List<BenchResult>();
            var skipped = new List<string>();
            foreach (var name in list)
            {
                var options = new PipelineOptions
                {
                    Engine = CliCommon.ParseEngine(name),
                    Execution = CliCommon.Execution(r),
                };
                MultimodalPipeline pipeline;
                try { pipeline = await CliConsole.LoadAsync(CliCommon.ModelPath(r), options, ct); }
                catch (OnnxMultimodalException e) when (list.Length > 1)
                {
                    // --engine both: run what can run on this model and say what could not.
                    skipped.Add($"{name}: {e.Message}");
                    Console.Error.WriteLine($"skipped engine {name}: {e.Message}");
                    continue;
                }
                await using (pipeline)
                {
                    int total = r.GetValue(warmup) + r.GetValue(runs);
                    results.Add(await CliConsole.StepsAsync($"{name}: {total} runs", total, step => Task.FromResult(whole is null
                        ? Measure(pipeline, r.GetValue(promptTokens), r.GetValue(newTokens), r.GetValue(runs), r.GetValue(warmup), ct, step)
                        : MeasureRequests(pipeline, whole, r.GetValue(runs), r.GetValue(warmup), ct, step))));
                }
            }
            if (results.Count == 0) throw new InvalidInputException("--engine", $"no engine could run {CliCommon.ModelPath(r)}: {string.Join("; ", skipped)}");
            var doc = new
            {
                date = DateTime.UtcNow.ToString("yyyy-MM-dd"),
                machine = new { os = RuntimeInformation.OSDescription, cpu_cores = Environment.ProcessorCount, arch = RuntimeInformation.ProcessArchitecture.ToString(), dotnet = Environment.Version.ToString() },
                model = CliCommon.ModelPath(r),
                provider = r.GetValue(CliCommon.Provider),
                task = taskKind,
                image = whole is null ? null : r.GetValue(image),
                tf32 = r.GetValue(CliCommon.Tf32),
                label = r.GetValue(label),
                cuda_graph = r.GetValue(CliCommon.CudaGraph),
                host_kv = r.GetValue(CliCommon.HostKv),
                host_token_choice = r.GetValue(CliCommon.HostTokenChoice),
                // the decode attention ONNX Runtime was asked for; the process's own ORT_ENABLE_XQA overrides it
                xqa = r.GetValue(CliCommon.Xqa),
                ort_enable_xqa_in_process = Runtime.NativeEnvironment.Get(Runtime.XqaSwitch.Variable),
                results,
                skipped,
                ort_over_genai_tokens_per_s = results.Count == 2 ? Math.Round(results[0].TokensPerSecond / results[1].TokensPerSecond, 3) : (double?)null,
            };
            string text = JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower });
            if (r.GetValue(json) is "-") Console.WriteLine(text);
            else Print(results);
            if (r.GetValue(json) is { } path and not "-") await File.WriteAllTextAsync(path, text, ct);
            return 0;
        }));
        return cmd;
    }

    /// <summary>The decode ladder: one lever at a time, each rung measured on the same prompt and length.</summary>
    private static async Task<int> Ladder(ParseResult r, string task, string? fp16, string? int4, string? int4Omm, string? int4Ommf, string? int4Ommfs,
                                          Func<MultimodalPipeline, BenchResult> measure, string? json, CancellationToken ct)
    {
        // Device token choice is a rung of its own: the rungs before it read the logits even where a package has next_token.
        // Decode attention is a rung too: the rungs before it run ONNX Runtime's own choice, XQA (so --xqa changes nothing here).
        var baseExec = CliCommon.Execution(r) with
        {
            CudaGraph = false, DeviceResident = true, GraphTokenChoice = false, EncoderCudaGraph = false, CudaXqaAttention = true,
        };
        if (task == "transcribe") baseExec = baseExec with { FbankThreads = 1 };   // the speech levers come last (SpeechRungs)
        string naivePrecision = ModelPackage.Open(CliCommon.ModelPath(r)).Manifest.Precision;
        // On the CPU there is no device: the second rung binds the cache and step I/O once (IOBinding) in host
        // memory, and there is no CUDA graph to capture.
        bool device = baseExec.Providers.FirstOrDefault() is not Runtime.ExecutionProviderKind.Cpu;
        var rungs = new List<(string Name, string Model, Runtime.ExecutionOptions Exec)>
        {
            ($"naive: reference graph ({naivePrecision}, standard ops), plain Run, {(device ? "cache on the host" : "cache copied in and out each step")}",
             CliCommon.ModelPath(r), baseExec with { DeviceResident = false }),
            (device ? "+ IOBinding: cache and step I/O on the device" : "+ IOBinding: cache and step I/O bound once (host memory)", CliCommon.ModelPath(r), baseExec),
        };
        if (fp16 is not null)
        {
            string precision = ModelPackage.Open(fp16).Manifest.Precision;
            rungs.Add(($"+ fused graph (GroupQueryAttention, {precision}, in-place cache)", fp16, baseExec));
            if (device) rungs.Add(("+ CUDA graph", fp16, baseExec with { CudaGraph = true }));
            else Console.Error.WriteLine("CUDA graph rung not run: the provider is the CPU");
        }
        if (int4 is not null) rungs.Add(("+ int4 weights (MatMulNBits)", int4, baseExec with { CudaGraph = rungs.Any(x => x.Exec.CudaGraph) }));
        var (lastModel, lastExec) = (rungs[^1].Model, rungs[^1].Exec);
        if (lastModel != CliCommon.ModelPath(r) && ModelPackage.Open(lastModel).Decoder is { } last && last.Outputs.ContainsKey("next_token"))
        {
            lastExec = lastExec with { GraphTokenChoice = true };
            // A --device-sampling package chooses greedy and sampled tokens (and guided ones) in its sampling head; a
            // --next-token one only greedy tokens (sampled rungs then read the logits as before).
            string how = last.SamplingHead is not null ? "sampling head" : "next_token ArgMax";
            rungs.Add((device ? $"+ device token choice ({how}: 8 bytes a step, not the logits)" : $"+ token choice in the graph ({how}: 8 bytes a step, not the logits)", lastModel, lastExec));
        }
        if (int4Omm is not null)
        {
            if (baseExec.CustomOpLibrary is null)
                throw new InvalidInputException("--int4-omm-model", "its rung needs --custom-op-library (libomm_kernels.so from src/OnnxMultimodal.Kernels/build.sh)");
            rungs.Add(("+ our int4 GEMV (OmmMatMulInt4)", int4Omm, lastExec with { GraphTokenChoice = true }));
        }
        if (int4Ommf is not null)
        {
            if (baseExec.CustomOpLibrary is null)
                throw new InvalidInputException("--int4-ommf-model", "its rung needs --custom-op-library (libomm_kernels.so from src/OnnxMultimodal.Kernels/build.sh)");
            rungs.Add(("+ SiLU·up fused into the gate_up GEMV (OmmMatMulInt4SwiGlu; Chameleon: the qk-norm as one op)", int4Ommf, lastExec with { GraphTokenChoice = true }));
        }
        if (int4Ommfs is not null)
        {
            if (baseExec.CustomOpLibrary is null)
                throw new InvalidInputException("--int4-ommfs-model", "its rung needs --custom-op-library (libomm_kernels.so from src/OnnxMultimodal.Kernels/build.sh)");
            rungs.Add(("+ the sampling head as one op (OmmSamplingHead)", int4Ommfs, lastExec with { GraphTokenChoice = true }));
        }
        // The speech decoders attend with MultiHeadAttention, and the reference graph without GroupQueryAttention: no XQA
        // there. A process that holds ORT_ENABLE_XQA itself decides for every rung.
        if (device && task != "transcribe" && rungs[^1].Model != CliCommon.ModelPath(r))
        {
            if (Runtime.NativeEnvironment.Get(Runtime.XqaSwitch.Variable) is { } own)
                Console.Error.WriteLine($"flash decode attention rung not run: the process sets {Runtime.XqaSwitch.Variable}={own}, which every rung follows");
            else if (Runtime.CudaRuntime.ComputeCapabilityMajor(baseExec.DeviceId) is not >= 9)
                Console.Error.WriteLine("flash decode attention rung not run: below Hopper the library keeps ONNX Runtime's own choice");
            else
                rungs.Add(("+ flash decode attention (ONNX Runtime's XQA before)", rungs[^1].Model, rungs[^1].Exec with { CudaXqaAttention = false }));
        }
        // Image->text's VQ encoder is an fp32 graph of convolutions: on TF32 tensor cores it took 10.6 instead of 21.6 ms on an
        // H100, its codes equal to fp32's at 98.9-99.7% of positions (PyTorch, synthetic weights).
        if (device && task == "caption" && !rungs[^1].Exec.CudaTf32)
            rungs.Add(("+ TF32 image encoder (--tf32: fp32 convolutions on tensor cores)", rungs[^1].Model, rungs[^1].Exec with { CudaTf32 = true }));
        if (task == "transcribe") SpeechRungs(rungs, device);
        var results = new List<(string Name, BenchResult Result)>();
        foreach (var (name, model, exec) in rungs)
        {
            await using var pipeline = await CliConsole.LoadAsync(model, new PipelineOptions { Execution = exec }, ct);
            results.Add((name, measure(pipeline)));
            Console.Error.WriteLine($"{name}: {results[^1].Result.TpotMsP50} ms/token");
        }
        // TensorRT: the last lever where its libraries exist. Its EP takes standard ops only, so it runs
        // the reference graph (the contrib ops of the fused graph would fall back to CUDA).
        var trt = Runtime.SessionFactory.Probe().FirstOrDefault(p => p.Kind == Runtime.ExecutionProviderKind.TensorRt);
        string? trtSkipped = null;
        if (trt.Loads)
        {
            var exec = baseExec with { Providers = [Runtime.ExecutionProviderKind.TensorRt, Runtime.ExecutionProviderKind.Cuda] };
            await using var pipeline = await MultimodalPipeline.LoadAsync(CliCommon.ModelPath(r), new PipelineOptions { Execution = exec }, cancellationToken: ct);
            results.Add(("TensorRT (reference graph, fp16 engines, device cache)", measure(pipeline)));
        }
        else
        {
            trtSkipped = $"TensorRT rung not run: {(trt.Detail is { Length: > 0 } detail ? detail : "provider not probed")}";
            Console.Error.WriteLine(trtSkipped);
        }
        double naive = results[0].Result.TpotMsP50;
        var t = new Table().AddColumns("rung", "ms/token p50", "p99", "TTFT ms", "end-to-end ms", "speed-up vs naive (token / end to end)");
        foreach (var (name, x) in results)
            t.AddRow(Markup.Escape(name), x.TpotMsP50.ToString("F4"), x.TpotMsP99.ToString("F4"), x.TtftMsP50.ToString("F3"), x.EndToEndMsP50.ToString("F1"),
                     $"{naive / x.TpotMsP50:F2}x / {results[0].Result.EndToEndMsP50 / x.EndToEndMsP50:F2}x");
        if (json is not "-") AnsiConsole.Write(t);
        var doc = new
        {
            date = DateTime.UtcNow.ToString("yyyy-MM-dd"), task, provider = r.GetValue(CliCommon.Provider), tensorrt = trtSkipped ?? "run",
            rungs = results.Select(x => new { name = x.Name, result = x.Result, speedup = Math.Round(naive / x.Result.TpotMsP50, 3),
                                              end_to_end_speedup = Math.Round(results[0].Result.EndToEndMsP50 / x.Result.EndToEndMsP50, 3) }),
        };
        string text = JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower });
        if (json is "-") Console.WriteLine(text);
        else if (json is not null)
        {
            await File.WriteAllTextAsync(json, text, ct);
            var plt = new ScottPlot.Plot();
            var bars = plt.Add.Bars(results.Select(x => x.Result.TpotMsP50).ToArray());
            plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
                Enumerable.Range(0, results.Count).Select(i => (double)i).ToArray(), Enumerable.Range(1, results.Count).Select(i => $"rung {i}").ToArray());
            plt.YLabel("ms per token (p50)");
            plt.Title("Decode ladder: one lever at a time");
            plt.SavePng(Path.ChangeExtension(json, ".png"), 800, 480);
        }
        return 0;
    }

    /// <summary>The speech time-to-first-token levers, on top of the last rung: filter banks across cores, then
    /// the encoder replayed as a CUDA graph of the clip's exact length (captured in the warm-up requests).</summary>
    private static void SpeechRungs(List<(string Name, string Model, Runtime.ExecutionOptions Exec)> rungs, bool device)
    {
        var (model, exec) = (rungs[^1].Model, rungs[^1].Exec with { FbankThreads = 0 });
        rungs.Add(("+ fast fbank (vectorised real FFT, frames across cores)", model, exec));
        if (!device) { Console.Error.WriteLine("encoder graph rung not run: the provider is the CPU"); return; }
        rungs.Add(("+ encoder graph (CUDA graph per exact length; needs --warmup 2)", model, exec with { EncoderCudaGraph = true }));
        Console.Error.WriteLine("prefill graph rung not run: the speech prefill is not captured yet (docs/benchmarks.md)");
    }

    public sealed record BenchResult(string Engine, int PromptTokens, int NewTokens, int Runs,
        double TtftMsP50, double TpotMsP50, double TpotMsP99, double TpotMsMean, double TokensPerSecond, double EndToEndMsP50, double PeakWorkingSetMb);

    /// <summary>The ladder's choice: greedy, or (<c>--sampled</c>) a seeded draw with every filter the sampling head takes.</summary>
    private static SamplingOptions Sampling(int newTokens, bool sampled) => sampled
        ? new SamplingOptions { MaxNewTokens = newTokens, IgnoreStopTokens = true, Temperature = 0.8f, TopP = 0.95f, RepetitionPenalty = 1.1f, Seed = 1 }
        : new SamplingOptions { MaxNewTokens = newTokens, IgnoreStopTokens = true };

    private static BenchResult Measure(MultimodalPipeline p, int promptTokens, int newTokens, int runs, int warmup, CancellationToken ct, Action? step = null,
                                       bool sampled = false)
    {
        var prompt = SyntheticPrompt(p, promptTokens);
        var sampling = Sampling(newTokens, sampled);
        var ttft = new List<double>();
        var tpot = new List<double>();
        var e2e = new List<double>();
        for (int run = 0; run < warmup + runs; run++)
        {
            var clock = Stopwatch.StartNew();
            using var seq = p.Engine.Start(prompt, sampling, cancellationToken: ct);
            seq.GenerateNextToken(ct);
            double first = clock.Elapsed.TotalMilliseconds, last = first;
            var steps = new List<double>(newTokens);
            while (!seq.IsDone)
            {
                seq.GenerateNextToken(ct);
                double now = clock.Elapsed.TotalMilliseconds;
                steps.Add(now - last);
                last = now;
            }
            step?.Invoke();
            if (run < warmup) continue;
            ttft.Add(first);
            tpot.AddRange(steps);
            e2e.Add(last);
        }
        double mean = tpot.Average();
        return new BenchResult(p.Engine.Name, prompt.Count, newTokens, runs, Percentile(ttft, 50), Percentile(tpot, 50), Percentile(tpot, 99),
            Math.Round(mean, 4), Math.Round(1000.0 / mean, 1), Percentile(e2e, 50), Math.Round(Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0, 1));
    }

    /// <summary>Whole requests through the pipeline (image or audio in, text or image out): TTFT, per-token and end-to-end latency.</summary>
    private static BenchResult MeasureRequests(MultimodalPipeline p, GenerationRequest request, int runs, int warmup, CancellationToken ct,
        Action? step = null)
    {
        var ttft = new List<double>();
        var tpot = new List<double>();
        var e2e = new List<double>();
        GenerationStats? stats = null;
        for (int run = 0; run < warmup + runs; run++)
        {
            stats = null;
            var updates = p.GenerateAsync(request, ct).ToBlockingEnumerable(ct);
            foreach (var u in updates) stats = u.Stats ?? stats;
            step?.Invoke();
            if (run < warmup || stats is null) continue;
            ttft.Add(stats.TimeToFirstToken.TotalMilliseconds);
            tpot.AddRange(stats.TokenMilliseconds);
            e2e.Add(stats.Total.TotalMilliseconds);
        }
        if (stats is null || tpot.Count == 0) throw new InferenceException("pipeline", "the request produced no statistics to measure");
        double mean = tpot.Average();
        return new BenchResult(p.Engine.Name, stats.PromptTokens, stats.GeneratedTokens, runs, Percentile(ttft, 50), Percentile(tpot, 50), Percentile(tpot, 99),
            Math.Round(mean, 4), Math.Round(1000.0 / mean, 1), Percentile(e2e, 50), Math.Round(Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0, 1));
    }

    /// <summary>A prompt of exactly <paramref name="n"/> tokens (begin token, then repeated ordinary text).</summary>
    internal static IReadOnlyList<int> SyntheticPrompt(MultimodalPipeline p, int n)
    {
        var ids = p.EncodePrompt(new GenerationRequest("The robot climbed the stairs, cleaned the lamp, and counted the ships that passed. ")).ToList();
        var result = new List<int>(n);
        while (result.Count < n) result.AddRange(ids);
        if (n >= p.Engine.ContextLength) throw new InvalidInputException("--prompt-tokens", $"{n} does not fit the context of {p.Engine.ContextLength}");
        return result.Take(n).ToArray();
    }

    internal static double Percentile(List<double> values, double pct)
    {
        var sorted = values.Order().ToArray();
        double rank = pct / 100.0 * (sorted.Length - 1);
        int lo = (int)Math.Floor(rank), hi = (int)Math.Ceiling(rank);
        return Math.Round(sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo), 4);
    }

    private static void Print(List<BenchResult> results)
    {
        var t = new Table().AddColumns("engine", "prompt", "new", "TTFT ms (p50)", "ms/token p50", "p99", "tokens/s", "end-to-end ms", "peak MB");
        foreach (var x in results)
            t.AddRow(x.Engine, x.PromptTokens.ToString(), x.NewTokens.ToString(), x.TtftMsP50.ToString("F3"), x.TpotMsP50.ToString("F4"),
                     x.TpotMsP99.ToString("F4"), x.TokensPerSecond.ToString("F1"), x.EndToEndMsP50.ToString("F2"), x.PeakWorkingSetMb.ToString("F0"));
        AnsiConsole.Write(t);
    }
}
