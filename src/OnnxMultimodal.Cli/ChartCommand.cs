using System.CommandLine;
using System.Text.Json;

namespace OnnxMultimodal.Cli;

/// <summary>
/// <c>omm chart</c>: PNG charts from the JSON that <c>omm bench --ladder</c>, <c>omm profile</c> and
/// <c>onnx-export/bench/torch_decode.py</c> write, so results from a machine without fonts (or from
/// several runs) are drawn where the report is written.
///   omm chart ladder --in ladder.json [--torch torch.json] [--metric token|request] --out ladder.png
///   omm chart tasks --in a/profile.json b/profile.json ... --out tasks.png
/// </summary>
internal static class ChartCommand
{
    public static Command Create()
    {
        var cmd = new Command("chart", "Draw PNG charts from bench/profile JSON");
        var input = new Option<string[]>("--in") { Description = "Input JSON file(s)", Required = true, AllowMultipleArgumentsPerToken = true };
        var torch = new Option<string?>("--torch") { Description = "PyTorch baseline JSON (bench/torch_decode.py) to draw beside the ladder" };
        var output = new Option<string>("--out") { Description = "PNG to write", Required = true };
        var title = new Option<string?>("--title") { Description = "Chart title" };

        var metric = new Option<string>("--metric") { Description = "token: ms/token p50 | request: end-to-end ms p50 (whole requests)", DefaultValueFactory = _ => "token" };
        var ladder = new Command("ladder", "ms/token (or end-to-end ms) of each ladder rung, and PyTorch's if given") { input, torch, output, title, metric };
        ladder.SetAction((r, ct) => CliCommon.Guard(() =>
        {
            using var doc = Read(r.GetValue(input)!.Single());
            bool request = r.GetValue(metric) switch
            {
                "token" => false,
                "request" => true,
                var m => throw new InvalidInputException("--metric", $"'{m}' is not token or request"),
            };
            if (!doc.RootElement.TryGetProperty("rungs", out var rungs) || rungs.ValueKind != JsonValueKind.Array)
                throw new InvalidInputException("--in", $"{r.GetValue(input)!.Single()} is not a ladder JSON (no \"rungs\"; omm bench --ladder --json FILE writes one)");
            string metricKey = request ? "end_to_end_ms_p50" : "tpot_ms_p50";
            var bars = rungs.EnumerateArray()
                .Select((x, i) => x.TryGetProperty("result", out var res) && res.TryGetProperty(metricKey, out var v) && v.ValueKind == JsonValueKind.Number
                    ? (Label: Short(x.TryGetProperty("name", out var n) ? n.GetString() ?? $"rung {i + 1}" : $"rung {i + 1}"), Value: v.GetDouble(), Ours: true)
                    : throw new InvalidInputException("--in", $"rung {i + 1} of {r.GetValue(input)!.Single()} has no result.{metricKey}")).ToList();
            if (r.GetValue(torch) is { } torchFile)
            {
                // torch_decode.py prints one JSON line per finished section; the last is the fullest.
                if (!File.Exists(torchFile)) throw new InvalidInputException("--torch", $"file not found: {torchFile}");
                var last = File.ReadAllLines(torchFile).LastOrDefault(l => l.TrimStart().StartsWith('{'))
                           ?? throw new InvalidInputException("--torch", $"{torchFile} holds no JSON line");
                using var t = Parse(last, torchFile, "--torch");
                // torch_decode.py (text: ms/token) and torch_tasks.py (per step, and whole requests in ms or, for images, s)
                var keys = request
                    ? new[] { ("transformers_eager_end_to_end_ms", "HF eager", 1.0), ("transformers_eager_image_s", "HF eager", 1000.0),
                              ("compiled_end_to_end_ms", "compile", 1.0), ("compiled_image_s", "compile", 1000.0) }
                    : new[] { ("transformers_eager_ms", "HF eager", 1.0), ("transformers_eager_step_ms", "HF eager", 1.0), ("static_sdpa_eager_ms", "SDPA eager", 1.0),
                              ("static_sdpa_eager_step_ms", "SDPA eager", 1.0), ("static_sdpa_compiled_ms", "compile", 1.0), ("static_sdpa_compiled_step_ms", "compile", 1.0) };
                foreach (var (key, label, scale) in keys)
                    if (t.RootElement.TryGetProperty(key, out var v)) bars.Add((label, v.GetDouble() * scale, false));
            }
            var plt = new ScottPlot.Plot();
            var palette = new ScottPlot.Palettes.Category10();
            for (int i = 0; i < bars.Count; i++)
            {
                var bar = new ScottPlot.Bar { Position = i, Value = bars[i].Value, FillColor = palette.GetColor(bars[i].Ours ? 0 : 1), Label = bars[i].Value.ToString("F2") };
                plt.Add.Bars(new[] { bar });
            }
            plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
                Enumerable.Range(0, bars.Count).Select(i => (double)i).ToArray(), bars.Select(b => b.Label).ToArray());
            plt.Axes.Margins(bottom: 0);
            plt.YLabel(request ? "end-to-end ms per request (p50)" : "ms per token (p50)");
            string legend = bars.Any(b => !b.Ours) ? " (blue: ours; orange: PyTorch)" : "";
            plt.Title(r.GetValue(title) ?? (request ? "Whole requests, one lever at a time" : "Decode, one lever at a time") + legend);
            plt.SavePng(r.GetValue(output)!, 900, 520);
            Console.WriteLine($"wrote {r.GetValue(output)}");
            return Task.FromResult(0);
        }));

        var tasks = new Command("tasks", "Stacked phase bars, one per profile (the paper's per-task breakdown)") { input, output, title };
        tasks.SetAction((r, ct) => CliCommon.Guard(() =>
        {
            var profiles = r.GetValue(input)!.Select(f =>
            {
                using var d = Read(f);
                var root = d.RootElement;
                if (!root.TryGetProperty("phases_ms", out var phasesJson) || phasesJson.ValueKind != JsonValueKind.Object)
                    throw new InvalidInputException("--in", $"{f} is not a profile JSON (no \"phases_ms\"; omm profile writes one)");
                string folder = Path.GetFileName(Path.GetDirectoryName(Path.GetFullPath(f)))!;
                string label = folder.StartsWith("profile-") ? folder["profile-".Length..] : $"{(root.TryGetProperty("task", out var tk) ? tk.GetString() : "profile")} ({folder})";
                var phases = phasesJson.EnumerateObject().Where(p => p.Value.ValueKind == JsonValueKind.Number).ToDictionary(p => p.Name, p => p.Value.GetDouble());
                return (Label: label, Phases: phases);
            }).ToList();
            string[] order = ["preprocess", "encode", "prefill", "first token", "decode", "detokenize"];
            var palette = new ScottPlot.Palettes.Category10();
            var plt = new ScottPlot.Plot();
            for (int p = 0; p < order.Length; p++)
            {
                var bars = new List<ScottPlot.Bar>();
                for (int i = 0; i < profiles.Count; i++)
                {
                    double below = order.Take(p).Sum(o => profiles[i].Phases.GetValueOrDefault(o));
                    double value = profiles[i].Phases.GetValueOrDefault(order[p]);
                    if (value > 0) bars.Add(new ScottPlot.Bar { Position = i, ValueBase = below, Value = below + value, FillColor = palette.GetColor(p) });
                }
                if (bars.Count > 0) plt.Add.Bars(bars).LegendText = order[p];
            }
            plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
                Enumerable.Range(0, profiles.Count).Select(i => (double)i).ToArray(), profiles.Select(x => x.Label).ToArray());
            plt.Axes.Margins(bottom: 0);
            plt.YLabel("ms");
            plt.ShowLegend(ScottPlot.Alignment.UpperRight);
            plt.Title(r.GetValue(title) ?? "Where each request's time goes");
            plt.SavePng(r.GetValue(output)!, 1000, 600);
            Console.WriteLine($"wrote {r.GetValue(output)}");
            return Task.FromResult(0);
        }));
        cmd.Subcommands.Add(ladder);
        cmd.Subcommands.Add(tasks);
        return cmd;
    }

    /// <summary>A rung's short name for an axis: "naive", "+ CUDA graph", ...</summary>
    private static string Short(string name) => name.Split(':', '(')[0].Trim() is var s && s.Length <= 16 ? s : s[..16];

    private static JsonDocument Read(string path) =>
        File.Exists(path) ? Parse(File.ReadAllText(path), path) : throw new InvalidInputException("--in", $"file not found: {path}");

    private static JsonDocument Parse(string text, string path, string option = "--in")
    {
        try { return JsonDocument.Parse(text); }
        catch (JsonException e) { throw new InvalidInputException(option, $"{path} is not JSON ({e.Message})"); }
    }
}
