using System.Buffers;
using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Vision;
using Spectre.Console;

namespace OnnxMultimodal.Cli;

/// <summary>
/// <c>omm bench image</c>: milliseconds of image→text's <c>preprocess</c> phase on the CPU, split into reading and
/// decoding the file (header checks included) and preparing the model input (alpha over white, resize, centre crop,
/// [-1, 1] planes, into a pooled buffer as the pipeline does), median of N warm runs. Prints a table and JSON (also written to --json FILE).
/// </summary>
internal static class ImageBenchCommand
{
    public static Command Create()
    {
        var image = new Option<string>("--image") { Description = "The image file", Required = true };
        var size = new Option<int>("--size") { Description = "The model's image side (Chameleon: 512)", DefaultValueFactory = _ => 512 };
        var runs = new Option<int>("--runs") { Description = "Measured runs", DefaultValueFactory = _ => 50 };
        var warmup = new Option<int>("--warmup") { Description = "Unmeasured runs first", DefaultValueFactory = _ => 5 };
        var json = new Option<string?>("--json") { Description = "Write the JSON result to this file (- : print it on stdout instead of the table)" };
        var cmd = new Command("image", "Time image preprocessing on the CPU: decode, then resize and crop (median of --runs)") { image, size, runs, warmup, json };
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            int n = r.GetValue(runs), w = r.GetValue(warmup), side = r.GetValue(size);
            if (n < 1) throw new InvalidInputException("--runs", $"{n}: at least one measured run");
            if (w < 0) throw new InvalidInputException("--warmup", $"{w}: zero or more warm-up runs");
            if (side is < 1 or > 8192) throw new InvalidInputException("--size", $"{side}: between 1 and 8192");
            string path = r.GetValue(image)!;
            var options = new ImageLoaderOptions { Size = side };
            var decode = new List<double>();
            var prepare = new List<double>();
            var pool = ArrayPool<float>.Create(maxArrayLength: 1 << 24, maxArraysPerBucket: 1);
            int width = 0, height = 0;
            for (int i = 0; i < w + n; i++)   // warm, like a request after the first
            {
                ct.ThrowIfCancellationRequested();
                long t0 = Stopwatch.GetTimestamp();
                using var stream = OpenRead(path);
                using var decoded = ImageLoader.Decode(stream, options, "--image");
                long t1 = Stopwatch.GetTimestamp();
                (width, height) = (decoded.Width, decoded.Height);
                var pixels = pool.Rent(3 * side * side);   // a reused buffer, as the pipeline's
                long t2;
                try
                {
                    ImageLoader.ToModelInput(decoded, side, destination: pixels);
                    t2 = Stopwatch.GetTimestamp();
                }
                finally
                {
                    pool.Return(pixels);
                }
                if (i < w) continue;
                decode.Add(Stopwatch.GetElapsedTime(t0, t1).TotalMilliseconds);
                prepare.Add(Stopwatch.GetElapsedTime(t1, t2).TotalMilliseconds);
            }
            var total = decode.Zip(prepare, (a, b) => a + b).ToList();
            var doc = new
            {
                date = DateTime.UtcNow.ToString("yyyy-MM-dd"),
                machine = new { os = RuntimeInformation.OSDescription, cpu_cores = Environment.ProcessorCount, arch = RuntimeInformation.ProcessArchitecture.ToString(),
                                dotnet = Environment.Version.ToString() },
                image = path, width, height, size = side, runs = n,
                decode_ms_p50 = BenchCommand.Percentile(decode, 50), prepare_ms_p50 = BenchCommand.Percentile(prepare, 50), preprocess_ms_p50 = BenchCommand.Percentile(total, 50),
                preprocess_ms_min = Math.Round(total.Min(), 4), preprocess_ms_p90 = BenchCommand.Percentile(total, 90),
            };
            string text = JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true });
            if (r.GetValue(json) is "-") Console.WriteLine(text);
            else
            {
                var table = new Table().AddColumns("image", "decode ms p50", "resize + crop + planes ms p50", "preprocess ms p50", "min", "p90");
                table.AddRow(Markup.Escape($"{Path.GetFileName(path)} {width}x{height} -> {side}"), doc.decode_ms_p50.ToString("F3"), doc.prepare_ms_p50.ToString("F3"),
                             doc.preprocess_ms_p50.ToString("F3"), doc.preprocess_ms_min.ToString("F3"), doc.preprocess_ms_p90.ToString("F3"));
                AnsiConsole.Write(table);
            }
            if (r.GetValue(json) is { } file and not "-") await File.WriteAllTextAsync(file, text, ct);
            return 0;
        }));
        return cmd;
    }

    private static FileStream OpenRead(string path)
    {
        if (!File.Exists(path)) throw new InvalidInputException("--image", $"file not found: {path}");
        return File.OpenRead(path);
    }
}
