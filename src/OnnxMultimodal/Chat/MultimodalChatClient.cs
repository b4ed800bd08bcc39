using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Text;

namespace OnnxMultimodal.Chat;

/// <summary>
/// <see cref="IChatClient"/> over a <see cref="MultimodalPipeline"/>: text conversations rendered by the model's
/// chat template, <c>image/*</c> <see cref="DataContent"/> into the image tokenizer, <c>audio/wav</c> into the
/// speech encoder, and generated images returned as <c>image/png</c> <see cref="DataContent"/> (ask with
/// <c>AdditionalProperties["output"] = "image"</c>). How each <see cref="ChatOptions"/> member maps, and which
/// are refused, is in docs/chat.md. Safe to call concurrently (the pipeline is).
/// </summary>
public sealed class MultimodalChatClient : IChatClient
{
    /// <summary><see cref="ChatOptions.AdditionalProperties"/> key: "text" (default) or "image" (families with an image decoder).</summary>
    public const string OutputKey = "output";
    /// <summary><see cref="ChatOptions.AdditionalProperties"/> key: target language code of speech→text (e.g. "spa").</summary>
    public const string TargetLanguageKey = "target_language";
    /// <summary><see cref="ChatOptions.AdditionalProperties"/> key: classifier-free guidance scale of image output.</summary>
    public const string GuidanceScaleKey = "guidance_scale";

    private readonly bool _ownsPipeline;
    private readonly ChatClientMetadata _metadata;
    private int _disposed;

    /// <summary>The pipeline this client generates with.</summary>
    public MultimodalPipeline Pipeline { get; }

    /// <summary>The chat template text conversations are rendered with; null for speech→text models.</summary>
    public ChatTemplate? Template { get; }

    /// <summary>Wraps a loaded pipeline.</summary>
    /// <param name="pipeline">The pipeline; it may serve other clients and direct calls at the same time.</param>
    /// <param name="ownsPipeline">Dispose the pipeline when this client is disposed (false: the caller keeps ownership).</param>
    /// <exception cref="ChatTemplateException">The model's chat template does not parse (names tokenizer_config.json).</exception>
    public MultimodalChatClient(MultimodalPipeline pipeline, bool ownsPipeline = false)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        Pipeline = pipeline;
        _ownsPipeline = ownsPipeline;
        Template = ChatTemplate.Load(pipeline.Package, pipeline.Options.Limits);
        _metadata = new ChatClientMetadata("OnnxMultimodal", null, pipeline.Package.Manifest.Name);
    }

    /// <inheritdoc />
    /// <exception cref="InvalidInputException">A message content or option this model cannot take (names it).</exception>
    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default) =>
        GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    /// <inheritdoc />
    /// <exception cref="InvalidInputException">A message content or option this model cannot take (names it).</exception>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var request = ChatRequestBuilder.Build(Pipeline, Template, messages, options);
        string id = "omm-" + Guid.NewGuid().ToString("N")[..16];
        var created = DateTimeOffset.UtcNow;
        ChatResponseUpdate Update(IList<AIContent> contents) => new(ChatRole.Assistant, contents)
        {
            ResponseId = id, MessageId = id, CreatedAt = created, ModelId = Pipeline.Package.Manifest.Name,
        };

        var stops = new StopSequenceFilter(request.Output == OutputModality.Text ? options?.StopSequences : null);
        GenerationStats? stats = null;
        int generated = 0;
        bool stopped = false;
        await foreach (var u in Pipeline.GenerateAsync(request, cancellationToken).ConfigureAwait(false))
        {
            if (u.TokenId is not null) generated++;
            stats = u.Stats ?? stats;
            if (u.TextDelta.Length > 0)
            {
                var (emit, hit) = stops.Append(u.TextDelta);
                if (emit.Length > 0) yield return Update([new TextContent(emit)]);
                if (hit) { stopped = true; break; }   // leaving the loop ends the decode on its worker
            }
            if (u.Image is { } image) yield return Update([new DataContent(image.Png, "image/png") { Name = "image.png" }]);
        }
        if (!stopped && stops.Flush() is { Length: > 0 } rest) yield return Update([new TextContent(rest)]);

        int input = stats?.PromptTokens ?? PromptTokens(request);
        int output = stats?.GeneratedTokens ?? generated;
        var last = Update([new UsageContent(new UsageDetails { InputTokenCount = input, OutputTokenCount = output, TotalTokenCount = input + output })]);
        last.FinishReason = stopped ? ChatFinishReason.Stop : stats?.FinishReason switch
        {
            Generation.FinishReason.StopToken => ChatFinishReason.Stop,
            Generation.FinishReason.MaxTokens when request.Output == OutputModality.Image => ChatFinishReason.Stop,   // the image is complete
            Generation.FinishReason.MaxTokens or Generation.FinishReason.ContextFull => ChatFinishReason.Length,
            _ => null,
        };
        yield return last;
    }

    /// <summary>Prompt tokens of a request left early (stop sequence), counted without running the image encoder:
    /// text as tokenized, each image as begin-image, its tokens, end-image.</summary>
    private int PromptTokens(GenerationRequest request)
    {
        int images = request.Parts.Count(p => p is ImagePart);
        if (images == 0) return Pipeline.EncodePrompt(request).Count;
        var textOnly = request with { Parts = request.Parts.Where(p => p is not ImagePart).ToList() };
        return Pipeline.EncodePrompt(textOnly).Count + images * (Pipeline.ImageTokenizer!.TokensPerImage + 2);
    }

    /// <inheritdoc />
    /// <remarks>Returns the <see cref="ChatClientMetadata"/>, the <see cref="MultimodalPipeline"/>, the
    /// <see cref="ChatTemplate"/>, or this client, for unkeyed requests.</remarks>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(MultimodalPipeline)) return Pipeline;
        if (serviceType == typeof(ChatTemplate)) return Template;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Disposes the pipeline if this client owns it.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0 && _ownsPipeline) Pipeline.Dispose();
    }
}

/// <summary><c>pipeline.AsChatClient()</c>.</summary>
public static class MultimodalChatClientExtensions
{
    /// <summary>An <see cref="IChatClient"/> over this pipeline.</summary>
    /// <param name="pipeline">The loaded pipeline.</param>
    /// <param name="ownsPipeline">Dispose the pipeline with the client (default: the caller keeps ownership).</param>
    public static MultimodalChatClient AsChatClient(this MultimodalPipeline pipeline, bool ownsPipeline = false) => new(pipeline, ownsPipeline);
}
