namespace OnnxMultimodal.Generation;

/// <summary>
/// Runs a text decoder. An engine holds the shared, immutable part (sessions, weights) and is safe
/// to use from several threads; each request gets its own <see cref="IDecodeSequence"/> that owns
/// its KV cache.
/// </summary>
internal interface IDecodeEngine : IDisposable
{
    /// <summary>"ort" or "genai".</summary>
    string Name { get; }
    int ContextLength { get; }
    int VocabularySize { get; }

    /// <summary>Runs the prompt through the decoder (prefill) and returns the sequence, ready to generate.</summary>
    /// <exception cref="PromptTooLongException">The prompt leaves no room in the context.</exception>
    /// <exception cref="OperationCanceledException">Cancelled during prefill.</exception>
    /// <param name="processors">Applied to the logits before each choice (constraints such as banned tokens).</param>
    IDecodeSequence Start(IReadOnlyList<int> promptIds, SamplingOptions sampling,
                          IReadOnlyList<ILogitsProcessor>? processors = null, CancellationToken cancellationToken = default);
}

/// <summary>One request's decoding state. The caller owns the loop: <c>while (!IsDone) GenerateNextToken();</c></summary>
internal interface IDecodeSequence : IDisposable
{
    /// <summary>Prompt followed by the generated tokens.</summary>
    IReadOnlyList<int> Tokens { get; }
    int PromptLength { get; }

    /// <summary>[vocab] logits at the last prompt position, as computed by prefill.</summary>
    ReadOnlySpan<float> PrefillLogits { get; }

    bool IsDone { get; }
    FinishReason? FinishReason { get; }

    /// <summary>Chooses the next token, appends it and returns it. The decoder step that consumes
    /// it runs at the start of the next call, so no step is wasted after the last token.</summary>
    /// <exception cref="InvalidOperationException">The sequence is done.</exception>
    int GenerateNextToken(CancellationToken cancellationToken = default);
}

/// <summary>Stop rules shared by the engines.</summary>
internal sealed class StopConditions(SamplingOptions options, IReadOnlyList<int> defaultStops, int contextLength, int promptLength)
{
    private readonly HashSet<int> _stops = (options.StopTokenIds ?? defaultStops).ToHashSet();

    public FinishReason? Check(int lastToken, int length)
    {
        if (!options.IgnoreStopTokens && _stops.Contains(lastToken)) return Generation.FinishReason.StopToken;
        if (length - promptLength >= options.MaxNewTokens) return Generation.FinishReason.MaxTokens;
        if (length >= contextLength) return Generation.FinishReason.ContextFull;
        return null;
    }

    public int MaxLength => (int)Math.Min(contextLength, (long)promptLength + options.MaxNewTokens);
}
