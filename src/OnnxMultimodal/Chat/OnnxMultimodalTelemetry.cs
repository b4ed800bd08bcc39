namespace OnnxMultimodal.Chat;

/// <summary>
/// Names of what the library reports, for OpenTelemetry and <c>dotnet-counters</c>: subscribe to the meter
/// and the activity source named <see cref="Name"/> (e.g. <c>builder.AddMeter(OnnxMultimodalTelemetry.Name)</c>,
/// <c>builder.AddSource(OnnxMultimodalTelemetry.Name)</c>). Logs go to the <c>ILoggerFactory</c> given in
/// <c>PipelineOptions.LoggerFactory</c>, category <c>OnnxMultimodal.Pipeline.MultimodalPipeline</c>.
/// </summary>
public static class OnnxMultimodalTelemetry
{
    /// <summary>Name of the <see cref="System.Diagnostics.Metrics.Meter"/> and of the <see cref="System.Diagnostics.ActivitySource"/>.</summary>
    public const string Name = "OnnxMultimodal";

    /// <summary>Name of the span each request opens (display name "generate {task}").</summary>
    public const string GenerateActivity = "OnnxMultimodal.Generate";

    /// <summary>Counter: requests started.</summary>
    public const string Requests = "omm.requests";
    /// <summary>Counter: requests that failed (not cancelled); tag <see cref="ErrorTypeTag"/>.</summary>
    public const string RequestErrors = "omm.request.errors";
    /// <summary>Histogram, seconds: from the call to the request's decode thread starting it (waiting for a free one).</summary>
    public const string QueueWait = "omm.request.queue_wait";
    /// <summary>Histogram, seconds: from the start of decoding to the first generated token (encoders and prefill included).</summary>
    public const string TimeToFirstToken = "omm.request.time_to_first_token";
    /// <summary>Histogram, seconds: the whole request, queue wait included.</summary>
    public const string Duration = "omm.request.duration";
    /// <summary>Histogram, tokens per second over the tokens after the first.</summary>
    public const string TokensPerSecond = "omm.request.tokens_per_second";
    /// <summary>Counter, tokens: prompt tokens (image tokens included).</summary>
    public const string InputTokens = "omm.tokens.input";
    /// <summary>Counter, tokens: generated tokens (image tokens included).</summary>
    public const string OutputTokens = "omm.tokens.output";

    /// <summary>Tag: text | caption | imagine | transcribe (what the request's parts and output make it).</summary>
    public const string TaskTag = "omm.task";
    /// <summary>Tag: the model's name from multimodal.json.</summary>
    public const string ModelTag = "omm.model";
    /// <summary>Tag: the decode engine (ort | genai).</summary>
    public const string EngineTag = "omm.engine";
    /// <summary>Tag: the exception type of a failed request.</summary>
    public const string ErrorTypeTag = "error.type";
    /// <summary>Span tag: prompt tokens (OpenTelemetry GenAI convention's name).</summary>
    public const string InputTokensTag = "gen_ai.usage.input_tokens";
    /// <summary>Span tag: generated tokens.</summary>
    public const string OutputTokensTag = "gen_ai.usage.output_tokens";
    /// <summary>Span tag: why generation stopped.</summary>
    public const string FinishReasonTag = "omm.finish_reason";
}
