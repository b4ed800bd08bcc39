using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using OnnxMultimodal.Chat;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

/// <summary>What a host sees: metrics (MeterListener), spans (ActivityListener), logs (ILoggerFactory) and DI.</summary>
[NonParallelizable]
public class HostIntegrationTests
{
    /// <summary>Collects every log entry of every logger it creates.</summary>
    private sealed class CollectingLoggerFactory : ILoggerFactory
    {
        public readonly ConcurrentQueue<(string Category, LogLevel Level, string Message)> Entries = new();
        public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);
        public void AddProvider(ILoggerProvider provider) { }
        public void Dispose() { }

        private sealed class Logger(CollectingLoggerFactory owner, string category) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
            public bool IsEnabled(LogLevel logLevel) => true;
            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                owner.Entries.Enqueue((category, logLevel, formatter(state, exception)));
        }
    }

    [Test]
    public async Task Metrics_and_a_span_per_request_reach_listeners()
    {
        var measurements = new ConcurrentQueue<(string Name, double Value, Dictionary<string, object?> Tags)>();
        using var meters = new MeterListener();
        meters.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == OnnxMultimodalTelemetry.Name) listener.EnableMeasurementEvents(instrument);
        };
        void Record<T>(Instrument i, T v, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? _) =>
            measurements.Enqueue((i.Name, Convert.ToDouble(v), tags.ToArray().ToDictionary(t => t.Key, t => t.Value)));
        meters.SetMeasurementEventCallback<long>(Record);
        meters.SetMeasurementEventCallback<double>(Record);
        meters.Start();
        var spans = new ConcurrentQueue<Activity>();
        using var activities = new ActivityListener
        {
            ShouldListenTo = s => s.Name == OnnxMultimodalTelemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Enqueue,
        };
        ActivitySource.AddActivityListener(activities);

        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.TinyLlama);
        var (_, stats) = await pipeline.GenerateTextAsync(new GenerationRequest("Once upon a time") { Sampling = new SamplingOptions { MaxNewTokens = 6, IgnoreStopTokens = true } });
        Assert.That(() => pipeline.GenerateTextAsync(new GenerationRequest([Part.Image("missing.png")])), Throws.InstanceOf<InvalidInputException>());

        var mine = measurements.Where(m => Equals(m.Tags.GetValueOrDefault(OnnxMultimodalTelemetry.ModelTag), "tiny-llama")).ToList();
        double Sum(string name, string task = "text") => mine.Where(m => m.Name == name && Equals(m.Tags[OnnxMultimodalTelemetry.TaskTag], task)).Sum(m => m.Value);
        Assert.That(Sum(OnnxMultimodalTelemetry.Requests), Is.EqualTo(1));
        Assert.That(Sum(OnnxMultimodalTelemetry.Requests, "caption"), Is.EqualTo(1));
        Assert.That(Sum(OnnxMultimodalTelemetry.OutputTokens), Is.EqualTo(6));
        Assert.That(Sum(OnnxMultimodalTelemetry.InputTokens), Is.EqualTo(stats.PromptTokens));
        Assert.That(mine.Single(m => m.Name == OnnxMultimodalTelemetry.TimeToFirstToken).Value, Is.EqualTo(stats.TimeToFirstToken.TotalSeconds).Within(1e-9));
        Assert.That(mine.Single(m => m.Name == OnnxMultimodalTelemetry.TokensPerSecond).Value, Is.EqualTo(stats.TokensPerSecond).Within(1e-6));
        Assert.That(mine.Count(m => m.Name == OnnxMultimodalTelemetry.QueueWait), Is.EqualTo(2));
        Assert.That(mine.Single(m => m.Name == OnnxMultimodalTelemetry.Duration).Value, Is.GreaterThanOrEqualTo(stats.TimeToFirstToken.TotalSeconds));
        var error = mine.Single(m => m.Name == OnnxMultimodalTelemetry.RequestErrors);
        Assert.That(error.Tags[OnnxMultimodalTelemetry.ErrorTypeTag], Is.EqualTo(nameof(InvalidInputException)));

        var ok = spans.Single(s => s.DisplayName == "generate text" && Equals(s.GetTagItem(OnnxMultimodalTelemetry.ModelTag), "tiny-llama"));
        Assert.That(ok.OperationName, Is.EqualTo(OnnxMultimodalTelemetry.GenerateActivity));
        Assert.That(ok.GetTagItem(OnnxMultimodalTelemetry.OutputTokensTag), Is.EqualTo(6));
        Assert.That(ok.GetTagItem(OnnxMultimodalTelemetry.InputTokensTag), Is.EqualTo(stats.PromptTokens));
        Assert.That(ok.Status, Is.EqualTo(ActivityStatusCode.Ok));
        Assert.That(ok.Duration, Is.GreaterThanOrEqualTo(stats.TimeToFirstToken));
        var failed = spans.Single(s => s.DisplayName == "generate caption");
        Assert.That(failed.Status, Is.EqualTo(ActivityStatusCode.Error));
        Assert.That(Activity.Current, Is.Null, "the request's span does not leak into the caller's context");
    }

    [Test]
    public async Task Logs_tell_the_load_and_a_failed_request()
    {
        var logs = new CollectingLoggerFactory();
        await using (var pipeline = await MultimodalPipeline.LoadAsync(TestData.TinyLlama, new PipelineOptions { LoggerFactory = logs }))
        {
            Assert.That(() => pipeline.GenerateTextAsync(new GenerationRequest([Part.Audio("x.wav")])), Throws.InstanceOf<InvalidInputException>());
        }
        var entries = logs.Entries.ToList();
        Assert.That(entries.All(e => e.Category == typeof(MultimodalPipeline).FullName));
        Assert.That(entries, Has.Some.Matches<(string, LogLevel Level, string Message)>(e => e.Level == LogLevel.Information && e.Message.StartsWith("Loading model ") && e.Message.Contains("tiny-llama")));
        Assert.That(entries, Has.Some.Matches<(string, LogLevel Level, string Message)>(e => e.Message.StartsWith("Loaded tiny-llama (llama, fp32)") && e.Message.Contains("engine ort on Cpu")));
        Assert.That(entries, Has.Some.Matches<(string, LogLevel Level, string Message)>(e => e.Level == LogLevel.Warning && e.Message.Contains("no speech encoder")));

        // Asking for CUDA first: where it does not load (CPU builds, no GPU) the fallback to the CPU is a warning.
        var fallback = new CollectingLoggerFactory();
        var cudaFirst = new PipelineOptions
        {
            LoggerFactory = fallback,
            Execution = new Runtime.ExecutionOptions { Providers = [Runtime.ExecutionProviderKind.Cuda, Runtime.ExecutionProviderKind.Cpu] },
        };
        await using (var p = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-llama-fp16"), cudaFirst))
        {
            bool onCuda = p.Engine is OrtDecodeEngine { Provider: Runtime.ExecutionProviderKind.Cuda };
            Assert.That(fallback.Entries.Any(e => e.Level == LogLevel.Warning && e.Message == "Execution provider fallback: asked for Cuda,Cpu, running on Cpu"),
                        Is.EqualTo(!onCuda));
        }

        var failing = new CollectingLoggerFactory();
        Assert.That(() => MultimodalPipeline.LoadAsync(Path.Combine(TestData.RepoRoot, "no-such-model"), new PipelineOptions { LoggerFactory = failing }),
                    Throws.InstanceOf<ModelPackageException>());
        Assert.That(failing.Entries, Has.Some.Matches<(string, LogLevel Level, string Message)>(e => e.Level == LogLevel.Error && e.Message.Contains("model folder not found")));
    }

    [Test]
    public async Task AddOnnxMultimodal_registers_one_pipeline_and_a_chat_client_over_it()
    {
        var logs = new CollectingLoggerFactory();
        var services = new ServiceCollection().AddSingleton<ILoggerFactory>(logs).AddOnnxMultimodal(TestData.TinyLlama);
        MultimodalPipeline pipeline;
        await using (var provider = services.BuildServiceProvider())
        {
            var chat = provider.GetRequiredService<IChatClient>();
            pipeline = provider.GetRequiredService<MultimodalPipeline>();
            Assert.That(provider.GetRequiredService<MultimodalPipeline>(), Is.SameAs(pipeline), "loaded once");
            Assert.That(chat.GetService<MultimodalPipeline>(), Is.SameAs(pipeline));
            var response = await chat.GetResponseAsync("Hello", new ChatOptions { MaxOutputTokens = 3 });
            Assert.That(response.Usage!.OutputTokenCount, Is.GreaterThan(0));
            Assert.That(logs.Entries, Has.Some.Matches<(string, LogLevel, string Message)>(e => e.Message.StartsWith("Loaded tiny-llama")), "the container's logger factory is used");
        }
        Assert.That(async () => await pipeline.GenerateTextAsync(new GenerationRequest("Hi")), Throws.Exception, "the container disposed the pipeline");
    }
}
