using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Profiling;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

public class ProfilingTests
{
    [Test]
    public void Op_classes_follow_the_papers_breakdown()
    {
        Assert.That(OrtProfile.Classify("MatMulNBits"), Is.EqualTo(OpClass.Linear));
        Assert.That(OrtProfile.Classify("GroupQueryAttention"), Is.EqualTo(OpClass.Attention));
        Assert.That(OrtProfile.Classify("SkipSimplifiedLayerNormalization"), Is.EqualTo(OpClass.Norm));
        Assert.That(OrtProfile.Classify("Sigmoid"), Is.EqualTo(OpClass.Elementwise));
        Assert.That(OrtProfile.Classify("MemcpyToHost"), Is.EqualTo(OpClass.Memcpy));
        Assert.That(OrtProfile.Classify("Reshape"), Is.EqualTo(OpClass.Other));
    }

    [Test]
    public void A_real_onnx_runtime_profile_is_summarised()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omm-tests", Guid.NewGuid().ToString("N"));
        var package = ModelPackage.Open(TestData.Model("tiny-llama-fused"));
        using (var engine = OrtDecodeEngine.Create(package, new ExecutionOptions { ProfileDirectory = dir }))
        {
            using var seq = engine.Start([1, 20, 30, 40], new SamplingOptions { MaxNewTokens = 5, IgnoreStopTokens = true });
            while (!seq.IsDone) seq.GenerateNextToken();
        }
        var summary = OrtProfile.Summarise(Directory.EnumerateFiles(dir, "*.json"));
        Assert.That(summary.Runs, Is.EqualTo(5), "prefill + 4 decode steps (the 5th token needs no step)");
        Assert.That(summary.ClassMicros[OpClass.Linear], Is.GreaterThan(0));
        Assert.That(summary.ClassMicros[OpClass.Attention], Is.GreaterThan(0), "GroupQueryAttention");
        Assert.That(summary.OpMicros.Keys, Does.Contain("SkipSimplifiedLayerNormalization"));
        Assert.That(summary.Shares.Values.Sum(), Is.EqualTo(1.0).Within(1e-9));
        Assert.That(summary.KernelMicros, Is.LessThanOrEqualTo(summary.RunMicros));
    }

    [Test]
    public async Task Requests_report_their_phases()
    {
        await using var p = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-chameleon"));
        var image = Path.Combine(TestData.Model("tiny-chameleon"), "reference", "shapes.png");
        var request = new GenerationRequest([Part.Image(image), Part.Text("A photo of")])
            { Sampling = new SamplingOptions { MaxNewTokens = 4, IgnoreStopTokens = true } };
        await p.GenerateTextAsync(request);   // warm: the first request of a process also pays for compiling its code
        var (_, stats) = await p.GenerateTextAsync(request);
        Assert.That(stats.Phases.Keys, Is.EquivalentTo(new[] { "preprocess", "encode", "prefill", "first token", "decode" }));
        Assert.That(stats.Phases.Values.All(v => v > 0));
        Assert.That(stats.Phases.Values.Sum(), Is.LessThanOrEqualTo(stats.Total.TotalMilliseconds + 1e-6));
        // Every millisecond of the time to first token has a phase: the request's clock starts with its preprocessing,
        // so the phases up to the first token add up to it, less only the prompt's tokenization and the bookkeeping between.
        double named = new[] { "preprocess", "encode", "prefill", "first token" }.Sum(k => stats.Phases[k]);
        Assert.That(named, Is.LessThanOrEqualTo(stats.TimeToFirstToken.TotalMilliseconds + 1e-6));
        Assert.That(stats.TimeToFirstToken.TotalMilliseconds - named, Is.LessThan(5.0), "unnamed time before the first token");
    }

    [Test]
    public void The_gpu_monitor_samples_a_gpu_or_says_why_it_cannot()
    {
        using var monitor = GpuMonitor.TryStart(0, TimeSpan.FromMilliseconds(2), out var reason);
        if (monitor is null)
        {
            // No driver here (CI): a reason naming NVML, and no exception escaped.
            Assert.That(reason, Does.Contain("NVML"));
            return;
        }
        long from = System.Diagnostics.Stopwatch.GetTimestamp();
        Thread.Sleep(100);
        long to = System.Diagnostics.Stopwatch.GetTimestamp();
        Assert.That(monitor.Count(from, to), Is.GreaterThan(5), monitor.Name);
        Assert.That(monitor.BusyShare(from, to), Is.InRange(0.0, 1.0));
        Assert.That(monitor.PeakUsedMiB, Is.GreaterThan(0));
        Assert.That(monitor.BusyShare(to + System.Diagnostics.Stopwatch.Frequency, to + 2 * System.Diagnostics.Stopwatch.Frequency), Is.Null, "no readings in the future");
    }
}
