using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Profiling;
using Spectre.Console;

namespace OnnxMultimodal.Cli;

/// <summary>
/// <c>omm profile</c>: where one request's time goes. Phases (preprocess, encode, prefill, decode,
/// detokenize), per-token latency, kernel time by operator class from ONNX Runtime's profiler, the
/// share of wall time spent outside ONNX Runtime (host overhead: on a GPU, a lower bound of its idle
/// time), peak host memory. Writes profile.json, profile.md, phases.png and opclasses.png.
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
        var cmd = new Command("profile", "Profile one request: phases, op classes, host overhead; JSON, Markdown and PNG") { task, prompt, image, audio, output };
        CliCommon.AddSampling(cmd);
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            string dir = Path.GetFullPath(r.GetValue(output)!);
            string ortDir = Path.Combine(dir, "ort");
            if (Directory.Exists(ortDir)) Directory.Delete(ortDir, recursive: true);
            var options = CliCommon.PipelineOptions(r) with { Execution = CliCommon.Execution(r) with { ProfileDirectory = ortDir } };
            string family = ModelPackage.Open(CliCommon.ModelPath(r)).Manifest.Family;
            string kind = r.GetValue(task) is "auto" ? family switch { "chameleon" => "caption", "seamless" => "transcribe", _ => "text" } : r.GetValue(task)!;
            string model = CliCommon.ModelPath(r);
            var request = kind switch
            {
                "caption" => new GenerationRequest([Part.Image(r.GetValue(image) ?? Path.Combine(model, "reference", "shapes.png")), Part.Text(r.GetValue(prompt)!)]),
                "imagine" => new GenerationRequest(r.GetValue(prompt)!) { Output = OutputModality.Image },
                "transcribe" => new GenerationRequest([Part.Audio(r.GetValue(audio) ?? Path.Combine(model, "reference", "robot_16k.wav"))]),
                _ => new GenerationRequest(r.GetValue(prompt)!),
            };
            request = request with { Sampling = CliCommon.Sampling(r) with { IgnoreStopTokens = true } };

            GenerationStats? warm = null, stats = null;
            var pipeline = await MultimodalPipeline.LoadAsync(model, options, cancellationToken: ct);
            try
            {
                await foreach (var u in pipeline.GenerateAsync(request, ct)) warm = u.Stats ?? warm;   // first run: warms caches and pools
                await foreach (var u in pipeline.GenerateAsync(request, ct)) stats = u.Stats ?? stats;
            }
            finally
            {
                pipeline.Dispose();   // ends the ONNX Runtime profiles (the JSON files are written now)
            }
            var summary = OrtProfile.Summarise(Directory.EnumerateFiles(ortDir, "*.json"));
            double wallMicros = (warm!.Total + stats!.Total).TotalMilliseconds * 1000;
            var tokens = stats.TokenMilliseconds.Order().ToArray();
            var report = new
            {
                date = DateTime.UtcNow.ToString("yyyy-MM-dd"),
                model, family, task = kind, provider = r.GetValue(CliCommon.Provider), cuda_graph = r.GetValue(CliCommon.CudaGraph),
                prompt_tokens = stats.PromptTokens, generated_tokens = stats.GeneratedTokens,
                time_to_first_token_ms = stats.TimeToFirstToken.TotalMilliseconds,
                ms_per_token_p50 = tokens.Length > 0 ? tokens[tokens.Length / 2] : 0,
                ms_per_token_p99 = tokens.Length > 0 ? tokens[Math.Min(tokens.Length - 1, (int)(tokens.Length * 0.99))] : 0,
                end_to_end_ms = stats.Total.TotalMilliseconds,
                phases_ms = stats.Phases,
                op_class_share = summary.Shares.ToDictionary(kv => kv.Key.ToString().ToLowerInvariant(), kv => Math.Round(kv.Value, 4)),
                top_ops_us = summary.OpMicros.OrderByDescending(kv => kv.Value).Take(12).ToDictionary(kv => kv.Key, kv => Math.Round(kv.Value)),
                ort_runs = summary.Runs,
                outside_ort_share = Math.Round(Math.Max(0, 1 - summary.RunMicros / wallMicros), 4),
                peak_host_mb = Math.Round(Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0, 1),
                note = "op classes from ONNX Runtime's kernel timers (both runs); on CUDA these are mostly launch times. " +
                       "outside_ort_share: wall time not inside a Run call; on a GPU its idle share is at least this.",
            };
            Directory.CreateDirectory(dir);
            var json = JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
            await File.WriteAllTextAsync(Path.Combine(dir, "profile.json"), json, ct);
            await File.WriteAllTextAsync(Path.Combine(dir, "profile.md"), Markdown(report.task, model, stats, summary, report.outside_ort_share), ct);
            Charts(dir, stats.Phases, summary);
            Console.WriteLine(json);
            AnsiConsole.MarkupLine($"[grey]wrote {Markup.Escape(dir)}/profile.json, profile.md, phases.png, opclasses.png[/]");
            return 0;
        }));
        return cmd;
    }

    private static string Markdown(string task, string model, GenerationStats s, ProfileSummary p, double outside)
    {
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"# Profile: {task} on {Path.GetFileName(model)}\n");
        sb.AppendLine($"{s.PromptTokens} prompt tokens, {s.GeneratedTokens} generated; time to first token {s.TimeToFirstToken.TotalMilliseconds:F2} ms; " +
                      $"end to end {s.Total.TotalMilliseconds:F2} ms; {s.TokensPerSecond:F1} tokens/s.\n");
        sb.AppendLine("| phase | ms | share |\n|---|---|---|");
        double total = s.Phases.Values.Sum();
        foreach (var (k, v) in s.Phases) sb.AppendLine($"| {k} | {v:F2} | {v / total:P1} |");
        sb.AppendLine("\n| op class | kernel ms | share |\n|---|---|---|");
        foreach (var (k, v) in p.ClassMicros.OrderByDescending(kv => kv.Value)) sb.AppendLine($"| {k.ToString().ToLowerInvariant()} | {v / 1000:F2} | {p.Shares[k]:P1} |");
        sb.AppendLine($"\nWall time outside ONNX Runtime: {outside:P1} (host overhead; a lower bound of GPU idle time on CUDA).");
        return sb.ToString();
    }

    private static void Charts(string dir, IReadOnlyDictionary<string, double> phases, ProfileSummary p)
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
        Stacked("opclasses.png", "Kernel time by operator class", "%", p.Shares.Where(kv => kv.Value > 0).OrderByDescending(kv => kv.Value)
            .Select(kv => (kv.Key.ToString().ToLowerInvariant(), kv.Value * 100)));
    }
}
