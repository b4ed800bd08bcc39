using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

/// <summary>
/// Disposing a pipeline while requests run (issue 13, finding 1). Before the fix the engine freed its
/// session and native buffers under a live <c>Session.Run</c>: aborts, segfaults and hangs of the test
/// host. Every request must end either complete or with <see cref="ObjectDisposedException"/>, queued
/// ones included, and nothing may hang. <c>OMM_DISPOSE_REPS</c> sets the repetitions of every case (soak: 1000).
/// </summary>
public class DisposeInFlightTests
{
    private static int? ExplicitReps => int.TryParse(Environment.GetEnvironmentVariable("OMM_DISPOSE_REPS"), out int n) && n > 0 ? n : null;
    private static int Reps => ExplicitReps ?? 60;

    // Generous: a request on the tiny model takes ~1 ms a token; a hang is what this catches.
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    private static GenerationRequest Request(int tokens) =>
        new("Once upon a time") { Sampling = new SamplingOptions { MaxNewTokens = tokens, IgnoreStopTokens = true } };

    [TestCase(EngineKind.Ort, 1)]
    [TestCase(EngineKind.Ort, 8)]
    [TestCase(EngineKind.GenAi, 1)]
    [TestCase(EngineKind.GenAi, 8)]
    public async Task Dispose_with_requests_in_flight_ends_each_request_cleanly(EngineKind engine, int inFlight)
    {
        if (engine == EngineKind.GenAi) TestData.GenAi(ModelPackage.Open(TestData.TinyLlama)).Dispose();   // skip where GenAI is absent
        var random = new Random(1234 + inFlight);
        int completed = 0, disposed = 0;
        // CI runs the GenAI cases a quarter as often (they are slower); an explicit OMM_DISPOSE_REPS applies to every case.
        int reps = engine == EngineKind.GenAi && ExplicitReps is null ? Math.Max(10, Reps / 4) : Reps;
        for (int rep = 0; rep < reps; rep++)
        {
            var pipeline = await MultimodalPipeline.LoadAsync(TestData.TinyLlama,
                new PipelineOptions { Engine = engine, MaxConcurrentRequests = 4 });   // 8 in flight: 4 run, 4 queue
            var started = new CountdownEvent(inFlight);
            var requests = Enumerable.Range(0, inFlight).Select(i => Task.Run(async () =>
            {
                bool signalled = false;
                try
                {
                    await foreach (var _ in pipeline.GenerateAsync(Request(random.Next(8, 400))))
                        if (!signalled) { signalled = true; started.Signal(); }
                    return "completed";
                }
                finally
                {
                    if (!signalled) started.Signal();
                }
            })).ToArray();
            // Dispose at a random moment: before any token, while prefilling, or mid-decode.
            if (rep % 3 != 0) started.Wait(Deadline);
            if (rep % 2 == 0) Thread.Sleep(random.Next(0, 3));
            var disposing = rep % 4 == 0 ? pipeline.DisposeAsync().AsTask() : Task.Run(pipeline.Dispose);
            Assert.That(await Task.WhenAny(disposing, Task.Delay(Deadline)), Is.SameAs(disposing), $"rep {rep}: Dispose hung");
            await disposing;

            foreach (var r in requests)
            {
                Assert.That(await Task.WhenAny(r, Task.Delay(Deadline)), Is.SameAs(r), $"rep {rep}: a request never completed");
                if (r.IsCompletedSuccessfully) completed++;
                else if (r.Exception?.InnerException is ObjectDisposedException) disposed++;
                else Assert.Fail($"rep {rep}: a request ended with {r.Exception?.InnerException?.GetType().Name}: {r.Exception?.InnerException?.Message}");
            }
            // After dispose: refused at once, with the documented exception.
            Assert.ThrowsAsync<ObjectDisposedException>(async () => await pipeline.GenerateTextAsync(Request(4)));
            Assert.Throws<ObjectDisposedException>(() => pipeline.EncodePrompt(Request(4)));
        }
        Assert.That(OrtDecodeEngine.LiveSequences, Is.Zero, "every sequence was disposed");
        Assert.That(disposed, Is.GreaterThan(0), "some requests were really in flight when the pipeline was disposed");
        TestContext.Out.WriteLine($"{reps} reps x {inFlight} in flight: {completed} completed, {disposed} ended with ObjectDisposedException");
    }

    [Test]
    public async Task Dispose_from_the_consumer_inside_the_stream_ends_the_stream()
    {
        var pipeline = await MultimodalPipeline.LoadAsync(TestData.TinyLlama);
        int seen = 0;
        var e = Assert.CatchAsync(async () =>
        {
            await foreach (var _ in pipeline.GenerateAsync(Request(500)))
                if (++seen == 3) pipeline.Dispose();
        });
        Assert.That(e, Is.InstanceOf<ObjectDisposedException>());
        Assert.That(seen, Is.LessThan(500));
    }
}
