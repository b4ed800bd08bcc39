using System.Diagnostics;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

[TestFixture(EngineKind.Ort)]
[TestFixture(EngineKind.GenAi)]
public class PipelineTests(EngineKind kind)
{
    private MultimodalPipeline _pipeline = null!;

    [OneTimeSetUp]
    public async Task Load()
    {
        if (kind == EngineKind.GenAi) TestData.GenAi(ModelPackage.Open(TestData.TinyLlama)).Dispose();   // skip where GenAI is absent
        _pipeline = await MultimodalPipeline.LoadAsync(TestData.TinyLlama, new PipelineOptions { Engine = kind });
    }

    [OneTimeTearDown]
    public async Task Unload() { if (_pipeline is not null) await _pipeline.DisposeAsync(); }

    private static GenerationRequest Request(string text, int tokens = 24) =>
        new(text) { Sampling = new SamplingOptions { MaxNewTokens = tokens, IgnoreStopTokens = true } };

    [Test]
    public async Task Streams_text_that_decodes_the_reference_tokens()
    {
        var reference = TestData.LoadTextReference("tiny-llama").Prompts[1];
        var (text, stats) = await _pipeline.GenerateTextAsync(Request(reference.Text, reference.Greedy.Length));
        Assert.That(stats.Tokens, Is.EqualTo(reference.Greedy));
        Assert.That(text, Is.EqualTo(_pipeline.Tokenizer.Decode(reference.Greedy, skipSpecialTokens: true)));
        Assert.That(stats.GeneratedTokens, Is.EqualTo(reference.Greedy.Length));
        Assert.That(stats.TokenMilliseconds, Has.Count.EqualTo(reference.Greedy.Length - 1));
        Assert.That(stats.TimeToFirstToken, Is.GreaterThan(TimeSpan.Zero));
    }

    [Test]
    public void Prompt_longer_than_the_context_is_refused_before_decoding()
    {
        string longText = string.Concat(Enumerable.Repeat("The robot counted the ships. ", 200));
        var e = Assert.ThrowsAsync<PromptTooLongException>(async () => await _pipeline.GenerateTextAsync(Request(longText)))!;
        Assert.That(e.ContextLength, Is.EqualTo(_pipeline.Engine.ContextLength));
        Assert.That(e.PromptTokens, Is.GreaterThan(e.ContextLength));
    }

    [Test]
    public void Image_part_on_a_text_model_is_refused_with_the_part_named()
    {
        var request = new GenerationRequest([Part.Text("hi"), Part.Image("cat.png")]);
        var e = Assert.ThrowsAsync<InvalidInputException>(async () => await _pipeline.GenerateTextAsync(request))!;
        Assert.That(e.Input, Is.EqualTo("parts[1]"));
    }

    [Test]
    public async Task Cancellation_mid_stream_leaks_nothing_and_leaves_the_pipeline_usable()
    {
        async Task CancelOnce()
        {
            using var cts = new CancellationTokenSource();
            int seen = 0;
            try
            {
                await foreach (var _ in _pipeline.GenerateAsync(Request("Once upon a time", 100), cts.Token))
                    if (++seen == 5) cts.Cancel();
                Assert.Fail("the stream ended without cancellation");
            }
            catch (OperationCanceledException) { }
            Assert.That(seen, Is.InRange(5, 6));
        }
        // Warm first (JIT, pools, allocator arenas), then 400 more: a leak of one KV cache or one
        // generator per request (>= 40 KiB each) would exceed the bound; allocator noise does not.
        for (int i = 0; i < 200; i++) await CancelOnce();
        int caches = (_pipeline.Engine as OrtDecodeEngine)?.CachesCreated ?? 0;
        long before = SettledMemory();
        for (int i = 0; i < 400; i++) await CancelOnce();
        long growth = SettledMemory() - before;
        Assert.That(OrtDecodeEngine.LiveSequences, Is.Zero, "every sequence was disposed");
        if (_pipeline.Engine is OrtDecodeEngine ort)
            Assert.That(ort.CachesCreated, Is.EqualTo(caches), "KV caches are pooled, not allocated per request");
        Assert.That(growth, Is.LessThan(16L << 20), $"resident memory grew {growth >> 10} KiB over 400 cancelled requests");

        var (_, stats) = await _pipeline.GenerateTextAsync(Request("Once upon a time", 8));
        Assert.That(stats.GeneratedTokens, Is.EqualTo(8), "still usable");
    }

    private static long SettledMemory()
    {
        for (int i = 0; i < 3; i++) { GC.Collect(); GC.WaitForPendingFinalizers(); }
        // Resident set, not private bytes: glibc reserves a 64 MiB arena for a new worker thread at
        // random moments, which shows in private bytes without any memory being used.
        using var p = Process.GetCurrentProcess();
        return p.WorkingSet64;
    }

    [Test]
    public async Task Requests_run_on_long_lived_decode_threads_and_wait_for_a_free_one()
    {
        // One request at a time: always the same thread (ONNX Runtime's per-thread CUDA state stays warm).
        await using (var p = await MultimodalPipeline.LoadAsync(TestData.TinyLlama, new PipelineOptions { MaxConcurrentRequests = 3 }))
        {
            for (int i = 0; i < 4; i++) await p.GenerateTextAsync(Request("The quick brown fox", 4));
            Assert.That(p.Workers.ThreadIds, Has.Count.EqualTo(1));
            Assert.That(p.Workers.ThreadIds[0], Is.Not.EqualTo(Environment.CurrentManagedThreadId));
            var many = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => p.GenerateTextAsync(Request("Once upon a time", 16)))));
            Assert.That(many.Select(m => m.Stats.Tokens), Is.All.EqualTo(many[0].Stats.Tokens));
            Assert.That(p.Workers.ThreadIds, Has.Count.InRange(1, 3), "never more threads than MaxConcurrentRequests");
        }
        // One worker, busy: a request cancelled while it waits never runs, and the pipeline carries on.
        await using (var p = await MultimodalPipeline.LoadAsync(TestData.TinyLlama, new PipelineOptions { MaxConcurrentRequests = 1 }))
        {
            var first = p.GenerateTextAsync(Request("The quick brown fox", 200));
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(1));
            Assert.CatchAsync<OperationCanceledException>(async () => await p.GenerateTextAsync(Request("Once upon a time", 200), cts.Token));
            Assert.That((await first).Stats.GeneratedTokens, Is.GreaterThan(0));
            Assert.That((await p.GenerateTextAsync(Request("Once upon a time", 8))).Stats.GeneratedTokens, Is.EqualTo(8));
        }
        var e = Assert.ThrowsAsync<InvalidInputException>(() => MultimodalPipeline.LoadAsync(TestData.TinyLlama, new PipelineOptions { MaxConcurrentRequests = 0 }))!;
        Assert.That(e.Message, Does.Contain("MaxConcurrentRequests"));
    }

    [Test]
    public async Task Concurrent_requests_give_the_same_tokens_as_sequential_ones()
    {
        var prompts = new[] { "The quick brown fox", "Once upon a time", "def add(a, b):", "The weather today", "Translate to French:", "A photo of a cat" };
        var sequential = new List<IReadOnlyList<int>>();
        foreach (var p in prompts) sequential.Add((await _pipeline.GenerateTextAsync(Request(p, 40))).Stats.Tokens);
        var concurrent = await Task.WhenAll(prompts.Select(p => Task.Run(async () => (await _pipeline.GenerateTextAsync(Request(p, 40))).Stats.Tokens)));
        Assert.That(concurrent, Is.EqualTo(sequential));
    }

    [Test]
    public void Cancelled_before_start_throws_at_once()
    {
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.CatchAsync<OperationCanceledException>(async () => await _pipeline.GenerateTextAsync(Request("hello"), cts.Token));
    }
}
