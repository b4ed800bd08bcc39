namespace OnnxMultimodal.Generation;

/// <summary>The token loop shared by engines whose sampling runs in C#: choose, append, step lazily.</summary>
internal abstract class DecodeSequenceBase : IDecodeSequence
{
    private readonly List<int> _tokens;
    private readonly Sampler _sampler;
    private readonly StopConditions _stops;
    private int _pending = -1;   // appended token whose decoder step has not run yet
    private bool _disposed;

    protected DecodeSequenceBase(IReadOnlyList<int> prompt, SamplingOptions sampling, IReadOnlyList<int> defaultStops,
                                 int contextLength, IReadOnlyList<ILogitsProcessor>? processors)
    {
        if (prompt.Count == 0) throw new InvalidInputException("prompt", "is empty: at least one token is needed");
        if (prompt.Count >= contextLength) throw new PromptTooLongException(prompt.Count, contextLength);
        _tokens = new List<int>((int)Math.Min(contextLength, (long)prompt.Count + sampling.MaxNewTokens));
        _tokens.AddRange(prompt);
        PromptLength = prompt.Count;
        _sampler = new Sampler(sampling, processors);
        _stops = new StopConditions(sampling, defaultStops, contextLength, prompt.Count);
    }

    public IReadOnlyList<int> Tokens => _tokens;
    /// <summary>The host sampler; a graph that samples draws its uniforms from the same stream.</summary>
    protected Sampler Sampler => _sampler;
    public int PromptLength { get; }
    public abstract ReadOnlySpan<float> PrefillLogits { get; }
    public bool IsDone => FinishReason is not null;
    public FinishReason? FinishReason { get; private set; }

    /// <summary>Mutable [vocab] logits for the next position, valid after prefill or <see cref="RunStep"/>.</summary>
    protected abstract Span<float> NextLogits { get; }

    /// <summary>The token the graph itself chose for the next position (its next_token output, greedy), when this
    /// sequence may take it; false: the sampler chooses from <see cref="NextLogits"/>.</summary>
    protected virtual bool TryGraphToken(out int token)
    {
        token = 0;
        return false;
    }

    /// <summary>Runs the decoder on one appended token, filling <see cref="NextLogits"/> (or only the graph's choice).</summary>
    protected abstract void RunStep(int token, CancellationToken cancellationToken);

    public int GenerateNextToken(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (IsDone) throw new InvalidOperationException($"the sequence is done ({FinishReason})");
        if (cancellationToken.IsCancellationRequested)
        {
            FinishReason = Generation.FinishReason.Cancelled;
            cancellationToken.ThrowIfCancellationRequested();
        }
        if (_pending >= 0)
        {
            RunStep(_pending, cancellationToken);
            _pending = -1;
        }
        int token = TryGraphToken(out int chosen) ? chosen : _sampler.Next(NextLogits, _tokens);
        _tokens.Add(token);
        _pending = token;
        FinishReason = _stops.Check(token, _tokens.Count);
        return token;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        ReleaseNative();
    }

    protected abstract void ReleaseNative();
}
