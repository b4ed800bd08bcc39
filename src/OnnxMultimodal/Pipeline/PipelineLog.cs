using Microsoft.Extensions.Logging;
using OnnxMultimodal.Generation;

namespace OnnxMultimodal.Pipeline;

/// <summary>The pipeline's log messages (source-generated: no formatting cost below the enabled level).</summary>
internal static partial class PipelineLog
{
    [LoggerMessage(1, LogLevel.Information, "Loading model {Path} (engine {Engine}, providers {Providers})")]
    public static partial void Loading(ILogger log, string path, EngineKind engine, string providers);

    [LoggerMessage(2, LogLevel.Information, "Loaded {Model} ({Family}, {Precision}) in {Milliseconds:F0} ms: engine {Engine} on {Provider}, components {Components}")]
    public static partial void Loaded(ILogger log, string model, string family, string precision, double milliseconds, string engine, string provider, string components);

    [LoggerMessage(3, LogLevel.Warning, "Execution provider fallback: asked for {Requested}, running on {Provider}")]
    public static partial void ProviderFallback(ILogger log, string requested, string provider);

    [LoggerMessage(4, LogLevel.Information, "CUDA graph capture {State} for the decode step ({Reason})")]
    public static partial void Capture(ILogger log, string state, string reason);

    [LoggerMessage(5, LogLevel.Error, "Loading {Path} failed: {Problem}")]
    public static partial void LoadFailed(ILogger log, Exception error, string path, string problem);

    [LoggerMessage(6, LogLevel.Debug, "Request ({Task}) done: {PromptTokens} prompt tokens, {GeneratedTokens} generated, TTFT {TtftMs:F1} ms, {TokensPerSecond:F1} tok/s, {FinishReason}")]
    public static partial void RequestCompleted(ILogger log, string task, int promptTokens, int generatedTokens, double ttftMs, double tokensPerSecond, FinishReason finishReason);

    [LoggerMessage(7, LogLevel.Debug, "Request ({Task}) cancelled")]
    public static partial void RequestCancelled(ILogger log, string task);

    [LoggerMessage(8, LogLevel.Warning, "Request ({Task}) failed: {Problem}")]
    public static partial void RequestFailed(ILogger log, Exception error, string task, string problem);

    [LoggerMessage(9, LogLevel.Warning, "Speech encoder CUDA graphs were asked for and are off: {Reason}")]
    public static partial void EncoderGraphsUnavailable(ILogger log, string reason);
}
