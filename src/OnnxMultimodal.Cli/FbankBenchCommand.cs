using System.CommandLine;
using OnnxMultimodal.Pipeline;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using OnnxMultimodal.Speech;
using Spectre.Console;

namespace OnnxMultimodal.Cli;

/// <summary>
/// <c>omm bench fbank</c>: milliseconds to featurize a clip (Kaldi filter banks, then the per-bin
/// normalisation and frame stacking the speech encoder takes) on the CPU, median of N runs, for one
/// thread and for the threads the pipeline uses. The clip is --audio or a synthetic one (tones and
/// seeded noise) of --seconds at 16 kHz. Prints a table and JSON (also written to --json FILE).
/// </summary>
internal static class FbankBenchCommand
{
    public static Command Create()
    {
        var seconds = new Option<double>("--seconds") { Description = "Length of the synthetic clip", DefaultValueFactory = _ => 10.0 };
        var audio = new Option<string?>("--audio") { Description = "A WAV file instead of the synthetic clip (reading it is timed too, median of --runs)" };
        var runs = new Option<int>("--runs") { Description = "Measured runs per thread count", DefaultValueFactory = _ => 50 };
        var warmup = new Option<int>("--warmup") { Description = "Unmeasured runs first", DefaultValueFactory = _ => 5 };
        var threads = new Option<int>("--max-threads") { Description = "Most threads (0: the processor count, as the pipeline uses)", DefaultValueFactory = _ => 0 };
        var json = new Option<string?>("--json") { Description = "Write the JSON result to this file (- : print it on stdout instead of the table)" };
        var cmd = new Command("fbank", "Time the filter banks of a clip on the CPU (median of --runs)") { seconds, audio, runs, warmup, threads, json };
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            int n = r.GetValue(runs), w = r.GetValue(warmup);
            if (n < 1 || w < 0) throw new InvalidInputException("--runs", $"{n} runs and {w} warm-up runs: at least one measured run");
            double readMs = 0;
            float[] samples;
            if (r.GetValue(audio) is { } file)
            {
                var reads = new List<double>();
                samples = [];
                for (int i = 0; i < w + n; i++)   // warm, like a request after the first
                {
                    long t0 = Stopwatch.GetTimestamp();
                    samples = WaveReader.Read(file, Fbank.SampleRate, new AudioOptions(), "--audio").Samples;
                    if (i >= w) reads.Add(Stopwatch.GetElapsedTime(t0).TotalMilliseconds);
                }
                readMs = Pct(reads, 50);
            }
            else
            {
                double s = r.GetValue(seconds);
                if (!(s >= 0.05 && s <= Pipeline.ResourceLimits.Default.MaxAudioSeconds))
                    throw new InvalidInputException("--seconds", $"{s}: between 0.05 and {Pipeline.ResourceLimits.Default.MaxAudioSeconds}");
                samples = Synthetic((int)(s * Fbank.SampleRate));
            }
            int frames = Fbank.FrameCount(samples.Length);
            var counts = new[] { 1, Fbank.Threads(frames, r.GetValue(threads)) }.Distinct().ToArray();
            var rows = counts.Select(t => Measure(samples, frames, t, n, w)).ToList();
            var doc = new
            {
                date = DateTime.UtcNow.ToString("yyyy-MM-dd"),
                machine = new { os = RuntimeInformation.OSDescription, cpu_cores = Environment.ProcessorCount, arch = RuntimeInformation.ProcessArchitecture.ToString(),
                                dotnet = Environment.Version.ToString(), vector_bits = System.Numerics.Vector<byte>.Count * 8 },
                audio = r.GetValue(audio) ?? $"synthetic {samples.Length / (double)Fbank.SampleRate:F2} s",
                samples = samples.Length, frames, wav_read_ms = Math.Round(readMs, 3), runs = n, results = rows,
            };
            string text = JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower });
            if (r.GetValue(json) is "-") Console.WriteLine(text);
            else
            {
                var table = new Table().AddColumns("threads", "fbank ms p50", "normalise + stack ms p50", "featurize ms p50", "min", "p90");
                foreach (var x in rows)
                    table.AddRow(x.Threads.ToString(), x.FbankMsP50.ToString("F3"), x.NormaliseMsP50.ToString("F3"), x.TotalMsP50.ToString("F3"), x.TotalMsMin.ToString("F3"), x.TotalMsP90.ToString("F3"));
                AnsiConsole.Write(table);
                Console.WriteLine($"{frames} frames ({samples.Length} samples), {Environment.ProcessorCount} cores{(readMs > 0 ? $", WAV read {readMs:F3} ms p50" : "")}");
            }
            if (r.GetValue(json) is { } path and not "-") await File.WriteAllTextAsync(path, text, ct);
            return 0;
        }));
        return cmd;
    }

    /// <summary>One thread count's timings, in milliseconds.</summary>
    internal sealed record Row(int Threads, double FbankMsP50, double NormaliseMsP50, double TotalMsP50, double TotalMsMin, double TotalMsP90);

    private static Row Measure(float[] samples, int frames, int threads, int runs, int warmup)
    {
        var fbank = new List<double>();
        var norm = new List<double>();
        var total = new List<double>();
        for (int i = 0; i < warmup + runs; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            var f = Fbank.Default.Compute(samples, threads);
            long t1 = Stopwatch.GetTimestamp();
            if (frames >= 2) Fbank.NormaliseAndStack(f, frames);
            long t2 = Stopwatch.GetTimestamp();
            if (i < warmup) continue;
            fbank.Add(Stopwatch.GetElapsedTime(t0, t1).TotalMilliseconds);
            norm.Add(Stopwatch.GetElapsedTime(t1, t2).TotalMilliseconds);
            total.Add(Stopwatch.GetElapsedTime(t0, t2).TotalMilliseconds);
        }
        return new Row(threads, Pct(fbank, 50), Pct(norm, 50), Pct(total, 50), Math.Round(total.Min(), 4), Pct(total, 90));
    }

    private static double Pct(List<double> values, double pct)
    {
        var sorted = values.Order().ToArray();
        return Math.Round(sorted[(int)Math.Round(pct / 100.0 * (sorted.Length - 1))], 4);
    }

    /// <summary>Speech-like test signal in [-1, 1]: a few harmonics with a wandering pitch, amplitude
    /// bursts and seeded noise (the arithmetic does not depend on the content; silence would not do).</summary>
    internal static float[] Synthetic(int length)
    {
        var rng = new Random(1234);
        var x = new float[length];
        double phase = 0;
        for (int i = 0; i < length; i++)
        {
            double t = i / (double)Fbank.SampleRate;
            phase += 2 * Math.PI * (140 + 40 * Math.Sin(2 * Math.PI * 0.7 * t)) / Fbank.SampleRate;
            double envelope = 0.5 + 0.5 * Math.Sin(2 * Math.PI * 3 * t);
            double v = envelope * (0.3 * Math.Sin(phase) + 0.15 * Math.Sin(2 * phase) + 0.08 * Math.Sin(5 * phase)) + 0.02 * (rng.NextDouble() * 2 - 1);
            x[i] = (float)v;
        }
        return x;
    }
}
