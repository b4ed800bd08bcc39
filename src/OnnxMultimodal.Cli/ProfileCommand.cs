using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Profiling;
using Spectre.Console;

namespace OnnxMultimodal.Cli;

/// <summary>
/// <c>omm profile</c>: where one request's time goes. Warm-up requests (--warmup, 2 by default: a process's
/// first requests are slower than its later ones), then a measured run with nothing
/// else switched on: phases (preprocess, encode, prefill, first token, decode, detokenize), time to first token,
/// per-token latency p50/p99, peak host memory; on a GPU a third run sampled through NVML for the busy
/// and idle share of the card (whole run and decode window) and its peak memory. Then, unless
/// --op-classes false, one more run in a session with ONNX Runtime's profiler for the kernel time by
/// operator class (on CUDA, set CUDA_LAUNCH_BLOCKING=1 so each node's time is its kernels' time, not
/// its launch). Writes profile.json, profile.md, phases.png and opclasses.png.
/// </summary>
internal static class ProfileCommand
{
    public static Command Create()
    {
        var task = new Option<string>("--task") { Description = "text | caption | imagine | transcribe (default: from the model family)", DefaultValueFactory = _ => "auto" };
        var prompt = new Option<string>("--prompt") { Description = "Text prompt", DefaultValueFactory = _ => "Once upon a time" };
        var image = new Option<string?>("--image") { Description = "Image for caption (default: the tiny model's reference image)" };
        var audio = new Option<string?>("--audio") { Description = "WAV for transcribe (default: the tiny model's reference WAV)" };
        var output = new Option<string>("--out") { Description = "Report folder", DefaultValueFactory = _ => "profile" };
        var opClasses = new Option<bool>("--op-classes") { Description = "Run once more under ONNX Runtime's profiler for the op-class split (on by default; --op-classes false skips it)", DefaultValueFactory = _ => true };
        var json = new Option<bool>("--json") { Description = "Print the JSON report on stdout instead of the Markdown summary" };
        var warmup = new Option<int>("--warmup") { Description = "Unmeasured requests first", DefaultValueFactory = _ => 2 };
        var cmd = new Command("profile", "Profile one request: phases, latency, GPU busy share, op classes; JSON, Markdown and PNG") { task, prompt, image, audio, output, opClasses, warmup, json };
        CliCommon.AddSampling(cmd);
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            string dir = Path.GetFullPath(r.GetValue(output)!);
            string ortDir = Path.Combine(dir, "ort");
            if (Directory.Exists(ortDir)) Directory.Delete(ortDir, recursive: true);
            var options = CliCommon.PipelineOptions(r) with { Execution = CliCommon.Execution(r) };
            string model = CliCommon.ModelPath(r);
            var (kind, family, request) = CliCommon.TaskRequest(r.GetValue(task)!, model, r.GetValue(prompt)!, r.GetValue(image), r.GetValue(audio));
            request = request with { Sampling = CliCommon.Sampling(r) with { IgnoreStopTokens = true } };
            bool gpu = options.Execution.Providers.FirstOrDefault() is not Runtime.ExecutionProviderKind.Cpu;

            // 1. Timings: warm-up, then the measured run with nothing else running. Then, on a GPU, one
            //    more run sampled through NVML (its driver calls slow kernel launches down a little, so
            //    that run gives the busy share, not the timings).
            GenerationStats stats;
            GcReport gc = default;
            GpuReport? card = null;
            string? gpuReason = gpu ? null : "CPU run";
            using (var pipeline = await CliConsole.LoadAsync(model, options, ct))
            {
                int runs = Math.Max(0, r.GetValue(warmup));
                stats = await CliConsole.StepsAsync($"{kind}: {runs} warm-up and 1 measured request", runs + 1, async step =>
                {
                    for (int i = 0; i < runs; i++, step()) await Run(pipeline, request, ct);
                    var before = GcReport.Now();
                    var measured = await Run(pipeline, request, ct);
                    gc = GcReport.Now() - before;   // a collection inside the request shows in its phases
                    return measured;
                });
                using var monitor = gpu ? GpuMonitor.TryStart(options.Execution.DeviceId, TimeSpan.FromMilliseconds(20), out gpuReason) : null;
                if (monitor is not null)
                {
                    long start = Stopwatch.GetTimestamp();
                    var sampled = await Run(pipeline, request, ct);
                    long end = Stopwatch.GetTimestamp();
                    double decodeMs = sampled.Phases.TryGetValue("decode", out var d) ? d : 0;
                    long decodeFrom = end - (long)(decodeMs / 1000.0 * Stopwatch.Frequency);
                    double? busy = monitor.BusyShare(start, end), busyDecode = monitor.BusyShare(decodeFrom, end);
                    card = new GpuReport(monitor.Name, busy, busy is { } b ? 1 - b : null, busyDecode, busyDecode is { } bd ? 1 - bd : null,
                                         monitor.Count(start, end), Math.Round(monitor.PeakUsedMiB, 1), Math.Round(sampled.Total.TotalMilliseconds, 3),
                                         "NVML utilisation (share of each sample period, 1/6 s to 1 s by card, with a kernel running), read every 20 ms " +
                                         "during a separate run; mean over the run and over its decode phase");
                }
            }

            // 2. Op classes: one more run in a profiled session.
            ProfileSummary? summary = null;
            if (r.GetValue(opClasses))
            {
                var profiled = options with { Execution = options.Execution with { ProfileDirectory = ortDir } };
                var p2 = await CliConsole.LoadAsync(model, profiled, ct);
                try { await Run(p2, request, ct); }
                finally { p2.Dispose(); }   // ends the ONNX Runtime profiles (the JSON files are written now)
                summary = OrtProfile.Summarise(Directory.EnumerateFiles(ortDir, "*.json"));
            }
            var tokens = stats.TokenMilliseconds.Order().ToArray();
            var report = new
            {
                date = DateTime.UtcNow.ToString("yyyy-MM-dd"),
                model, family, task = kind, provider = r.GetValue(CliCommon.Provider), cuda_graph = r.GetValue(CliCommon.CudaGraph),
                prompt_tokens = stats.PromptTokens, generated_tokens = stats.GeneratedTokens,
                time_to_first_token_ms = Math.Round(stats.TimeToFirstToken.TotalMilliseconds, 3),
                ms_per_token_p50 = tokens.Length > 0 ? Math.Round(tokens[tokens.Length / 2], 4) : 0,
                ms_per_token_p99 = tokens.Length > 0 ? Math.Round(tokens[Math.Min(tokens.Length - 1, (int)(tokens.Length * 0.99))], 4) : 0,
                end_to_end_ms = Math.Round(stats.Total.TotalMilliseconds, 3),
                phases_ms = stats.Phases.ToDictionary(kv => kv.Key, kv => Math.Round(kv.Value, 3)),
                gpu = card,
                gc_during_request = new { gen0 = gc.Gen0, gen1 = gc.Gen1, gen2 = gc.Gen2, pause_ms = Math.Round(gc.PauseMs, 3) },
                gpu_unavailable = card is null ? gpuReason : null,
                op_class_share = summary?.Shares.ToDictionary(kv => kv.Key.ToString().ToLowerInvariant(), kv => Math.Round(kv.Value, 4)),
                top_ops_us = summary?.OpMicros.OrderByDescending(kv => kv.Value).Take(12).ToDictionary(kv => kv.Key, kv => Math.Round(kv.Value)),
                ort_runs = summary?.Runs,
                peak_host_mb = Math.Round(Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0, 1),
                note = "timings and GPU share from a measured run with the profiler off; op classes from a separate profiled run " +
                       "(ONNX Runtime's node timers: on CUDA they time launches unless CUDA_LAUNCH_BLOCKING=1; CUDA-graph replays record no nodes).",
            };
            Directory.CreateDirectory(dir);
            var text = JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
            await File.WriteAllTextAsync(Path.Combine(dir, "profile.json"), text, ct);
            string markdown = Markdown(report.task, model, stats, summary, card, gc);
            await File.WriteAllTextAsync(Path.Combine(dir, "profile.md"), markdown, ct);
            Charts(dir, stats.Phases, summary);
            Console.WriteLine(r.GetValue(json) ? text : markdown);
            if (!r.GetValue(json)) AnsiConsole.MarkupLine($"[grey]wrote {Markup.Escape(dir)}/profile.json, profile.md, phases.png{(summary is null ? "" : ", opclasses.png")}[/]");
            return 0;
        }));
        return cmd;
    }

    /// <summary>The GPU's side of a measured run.</summary>
    internal sealed record GpuReport(string Card, double? BusyShare, double? IdleShare, double? DecodeBusyShare, double? DecodeIdleShare,
                                     int Samples, double PeakDeviceMemoryMiB, double SampledRunMs, string Method);

    private static async Task<GenerationStats> Run(MultimodalPipeline pipeline, GenerationRequest request, CancellationToken ct)
    {
        GenerationStats? stats = null;
        await foreach (var u in pipeline.GenerateAsync(request, ct)) stats = u.Stats ?? stats;
        return stats ?? throw new InferenceException("pipeline", "the request ended without statistics");
    }

    /// <summary>.NET garbage collections and their pause time (all threads suspended) over a span of the process.</summary>
    internal readonly record struct GcReport(int Gen0, int Gen1, int Gen2, double PauseMs)
    {
        public static GcReport Now() =>
            new(GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2), GC.GetTotalPauseDuration().TotalMilliseconds);

        public static GcReport operator -(GcReport a, GcReport b) => new(a.Gen0 - b.Gen0, a.Gen1 - b.Gen1, a.Gen2 - b.Gen2, a.PauseMs - b.PauseMs);
    }

    private static string Markdown(string task, string model, GenerationStats s, ProfileSummary? p, GpuReport? gpu, GcReport gc)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"# Profile: {task} on {Path.GetFileName(model)}\n");
        sb.AppendLine($"{s.PromptTokens} prompt tokens, {s.GeneratedTokens} generated; time to first token {s.TimeToFirstToken.TotalMilliseconds:F2} ms; " +
                      $"end to end {s.Total.TotalMilliseconds:F2} ms; {s.TokensPerSecond:F1} tokens/s.\n");
        sb.AppendLine("| phase | ms | share |\n|---|---|---|");
        double total = s.Phases.Values.Sum();
        foreach (var (k, v) in s.Phases) sb.AppendLine($"| {k} | {v:F2} | {v / total:P1} |");
        sb.AppendLine($"\n.NET GC during the request: {gc.Gen0} gen0, {gc.Gen1} gen1, {gc.Gen2} gen2 collections; paused {gc.PauseMs:F2} ms.");
        if (p is not null)
        {
            sb.AppendLine("\n| op class | kernel ms | share |\n|---|---|---|");
            foreach (var (k, v) in p.ClassMicros.OrderByDescending(kv => kv.Value)) sb.AppendLine($"| {k.ToString().ToLowerInvariant()} | {v / 1000:F2} | {p.Shares[k]:P1} |");
        }
        if (gpu is not null)
            sb.AppendLine($"\nGPU ({gpu.Card}): busy {gpu.BusyShare:P1} of the run, idle {gpu.IdleShare:P1}; during decode busy {gpu.DecodeBusyShare:P1}, " +
                          $"idle {gpu.DecodeIdleShare:P1} ({gpu.Samples} NVML samples); peak device memory {gpu.PeakDeviceMemoryMiB:F0} MiB.");
        return sb.ToString();
    }

    private static void Charts(string dir, IReadOnlyDictionary<string, double> phases, ProfileSummary? p)
    {
        var palette = new ScottPlot.Palettes.Category10();
        void Stacked(string file, string title, string unit, IEnumerable<(string Label, double Value)> parts)
        {
            var plt = new ScottPlot.Plot();
            double bottom = 0;
            int i = 0;
            foreach (var (label, value) in parts)
            {
                var bar = new ScottPlot.Bar { Position = 0, ValueBase = bottom, Value = bottom + value, FillColor = palette.GetColor(i++) };
                plt.Add.Bars(new[] { bar }).LegendText = $"{label} ({value:F1} {unit})";
                bottom += value;
            }
            plt.Title(title);
            plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual([0], [""]);
            plt.YLabel(unit);
            plt.ShowLegend(ScottPlot.Alignment.UpperRight);
            plt.Axes.SetLimitsX(-1, 2.5);
            plt.SavePng(Path.Combine(dir, file), 640, 480);
        }
        Stacked("phases.png", "Where the request's time goes", "ms", phases.Select(kv => (kv.Key, kv.Value)));
        if (p is not null)
            Stacked("opclasses.png", "Kernel time by operator class", "%", p.Shares.Where(kv => kv.Value > 0).OrderByDescending(kv => kv.Value)
            .Select(kv => (kv.Key.ToString().ToLowerInvariant(), kv.Value * 100)));
    }
}
