using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using OnnxMultimodal.Chat;
using T = OnnxMultimodal.Chat.OnnxMultimodalTelemetry;

namespace OnnxMultimodal.Pipeline;

/// <summary>The meter, the activity source and one request's span, counters and histograms
/// (names in <see cref="OnnxMultimodalTelemetry"/>). Costs nothing measurable when nobody listens.</summary>
internal sealed class RequestTelemetry
{
    private static readonly ActivitySource Source = new(T.Name);
    private static readonly Meter Meter = new(T.Name);
    private static readonly Counter<long> Requests = Meter.CreateCounter<long>(T.Requests, "{request}", "Requests started");
    private static readonly Counter<long> Errors = Meter.CreateCounter<long>(T.RequestErrors, "{request}", "Requests failed (cancellations not counted)");
    private static readonly Histogram<double> QueueWait = Meter.CreateHistogram<double>(T.QueueWait, "s", "Wait for a free decode thread");
    private static readonly Histogram<double> Ttft = Meter.CreateHistogram<double>(T.TimeToFirstToken, "s", "Time to the first generated token");
    private static readonly Histogram<double> Duration = Meter.CreateHistogram<double>(T.Duration, "s", "Whole request");
    private static readonly Histogram<double> Rate = Meter.CreateHistogram<double>(T.TokensPerSecond, "{token}/s", "Decode rate after the first token");
    private static readonly Counter<long> InputTokens = Meter.CreateCounter<long>(T.InputTokens, "{token}", "Prompt tokens");
    private static readonly Counter<long> OutputTokens = Meter.CreateCounter<long>(T.OutputTokens, "{token}", "Generated tokens");

    private readonly TagList _tags;
    private readonly Activity? _activity;
    private readonly ILogger _log;
    private readonly string _task;
    private readonly long _start = Stopwatch.GetTimestamp();
    private int _ended;

    private RequestTelemetry(string task, string model, string engine, ILogger log)
    {
        _task = task;
        _log = log;
        _tags = new TagList { { T.TaskTag, task }, { T.ModelTag, model }, { T.EngineTag, engine } };
        var previous = Activity.Current;
        _activity = Source.StartActivity(T.GenerateActivity, ActivityKind.Internal);
        if (_activity is not null)
        {
            _activity.DisplayName = $"generate {task}";
            foreach (var tag in _tags) _activity.SetTag(tag.Key, tag.Value);
            Activity.Current = previous;   // the span is ended explicitly; the caller's current activity stays its own
        }
        Requests.Add(1, _tags);
    }

    public static RequestTelemetry Start(MultimodalPipeline pipeline, GenerationRequest request, ILogger log) =>
        new(TaskOf(request), pipeline.Package.Manifest.Name, pipeline.Engine.Name, log);

    /// <summary>text | caption | imagine | transcribe, from the request's parts and output.</summary>
    public static string TaskOf(GenerationRequest request) =>
        request.Output == OutputModality.Image ? "imagine"
        : request.Parts.Any(p => p is AudioPart) ? "transcribe"
        : request.Parts.Any(p => p is ImagePart) ? "caption"
        : "text";

    /// <summary>The request's decode thread picked it up.</summary>
    public void Dequeued()
    {
        double waited = Stopwatch.GetElapsedTime(_start).TotalSeconds;
        QueueWait.Record(waited, _tags);
        _activity?.AddEvent(new ActivityEvent("dequeued"));
    }

    public void Completed(GenerationStats stats)
    {
        if (Interlocked.Exchange(ref _ended, 1) != 0) return;
        Ttft.Record(stats.TimeToFirstToken.TotalSeconds, _tags);
        if (stats.TokenMilliseconds.Count > 0) Rate.Record(stats.TokensPerSecond, _tags);
        InputTokens.Add(stats.PromptTokens, _tags);
        OutputTokens.Add(stats.GeneratedTokens, _tags);
        Duration.Record(Stopwatch.GetElapsedTime(_start).TotalSeconds, _tags);
        if (_activity is { } a)
        {
            a.SetTag(T.InputTokensTag, stats.PromptTokens);
            a.SetTag(T.OutputTokensTag, stats.GeneratedTokens);
            a.SetTag(T.FinishReasonTag, stats.FinishReason.ToString());
            a.SetTag("omm.time_to_first_token_ms", stats.TimeToFirstToken.TotalMilliseconds);
            a.SetStatus(ActivityStatusCode.Ok);
        }
        PipelineLog.RequestCompleted(_log, _task, stats.PromptTokens, stats.GeneratedTokens, stats.TimeToFirstToken.TotalMilliseconds, stats.TokensPerSecond, stats.FinishReason);
    }

    public void Failed(Exception e)
    {
        if (Interlocked.Exchange(ref _ended, 1) != 0) return;
        if (e is OperationCanceledException)
        {
            _activity?.SetTag("omm.cancelled", true);
            PipelineLog.RequestCancelled(_log, _task);
            return;
        }
        var tags = _tags;
        tags.Add(T.ErrorTypeTag, e.GetType().Name);
        Errors.Add(1, tags);
        _activity?.SetStatus(ActivityStatusCode.Error, e.Message);
        _activity?.SetTag(T.ErrorTypeTag, e.GetType().Name);
        PipelineLog.RequestFailed(_log, e, _task, e.Message);
    }

    /// <summary>Ends the span; a request neither completed nor failed was left early (cancelled by its consumer).</summary>
    public void End()
    {
        if (Interlocked.Exchange(ref _ended, 1) == 0)
        {
            _activity?.SetTag("omm.cancelled", true);
            PipelineLog.RequestCancelled(_log, _task);
        }
        _activity?.Stop();
    }
}
