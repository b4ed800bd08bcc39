using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

/// <summary>Issue 13, finding 3: a recording at the default duration limit stays inside the memory the
/// limit promises. The speech encoders used to gather a [T, T, head_dim] relative-position tensor per
/// layer (60 s on tiny-seamless: 2.7 GB peak); after onnx-export's relpos rewrite the largest
/// intermediate is the [heads, T, T] score (0.75 GB peak for the whole process).</summary>
[NonParallelizable]   // reads the process's peak resident set: nothing else may run beside it
public class AudioMemoryTests
{
    /// <summary>Budget for the transcription alone, above the loaded pipeline: measured 0.5 GB with the
    /// rewritten graph and 2.5 GB with the exporter's original one, so the bound separates the two with
    /// room for allocator and thread-count differences between machines.</summary>
    private const long BudgetBytes = 1L << 30;

    [Test]
    public async Task A_recording_at_the_default_limit_fits_the_memory_budget()
    {
        Assume.That(OperatingSystem.IsLinux(), "peak resident set from /proc/self (Linux)");
        double seconds = ResourceLimits.Default.MaxAudioSeconds;
        var random = new Random(13);
        var samples = new byte[(int)(seconds * 16000) * 2];
        for (int i = 0; i < samples.Length / 2; i++)
        {
            // a gliding tone with noise: speech-like enough that every frame is non-silent
            double t = i / 16000.0;
            short v = (short)(8000 * Math.Sin(2 * Math.PI * 220 * t * (1 + 0.1 * Math.Sin(t))) + 1500 * (random.NextDouble() - 0.5));
            samples[2 * i] = (byte)v;
            samples[2 * i + 1] = (byte)(v >> 8);
        }
        byte[] wav = WaveReaderTests.Wav(1, 1, 16000, 16, samples);
        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-seamless"));
        var request = new GenerationRequest([Part.Audio(wav)]) { Sampling = new SamplingOptions { MaxNewTokens = 2 } };

        GC.Collect();
        long before = ResetPeak();
        var result = await pipeline.GenerateTextAsync(request);
        long growth = PeakBytes() - before;

        Assert.That(result.Stats.GeneratedTokens, Is.EqualTo(2), "the clip was transcribed");
        TestContext.Out.WriteLine($"{seconds} s of audio: peak {growth / 1048576.0:F0} MiB above the loaded pipeline");
        Assert.That(growth, Is.LessThan(BudgetBytes), $"peak resident set above the loaded pipeline for {seconds} s of audio");
    }

    /// <summary>Resets VmHWM to the current resident set ("5" > clear_refs, Linux 4.0+) and returns that.</summary>
    private static long ResetPeak()
    {
        File.WriteAllText("/proc/self/clear_refs", "5");
        return Status("VmRSS:");
    }

    private static long PeakBytes() => Status("VmHWM:");

    private static long Status(string key)
    {
        string line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(key, StringComparison.Ordinal));
        return long.Parse(line[key.Length..].Trim().Split(' ')[0]) * 1024;
    }
}
