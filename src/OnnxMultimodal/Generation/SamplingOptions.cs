namespace OnnxMultimodal.Generation;

/// <summary>How the next token is chosen and when generation stops. Immutable.</summary>
public sealed record SamplingOptions
{
    /// <summary>0 chooses greedily (argmax); otherwise logits are divided by it before sampling.</summary>
    public float Temperature { get; init; }

    /// <summary>Keep only the k most likely tokens; 0 keeps all.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of tokens whose probability reaches p; 1 keeps all.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>Divides positive (multiplies negative) logits of tokens already in the sequence; 1 is off.</summary>
    public float RepetitionPenalty { get; init; } = 1f;

    /// <summary>Seed of the sampler's random source; null picks one at random.</summary>
    public ulong? Seed { get; init; }

    /// <summary>Most tokens to generate; generation also stops when the context is full.</summary>
    public int MaxNewTokens { get; init; } = 128;

    /// <summary>Tokens that end generation; null means the model's end-of-sequence tokens.</summary>
    public IReadOnlyList<int>? StopTokenIds { get; init; }

    /// <summary>Never stop on a stop token: generate exactly <see cref="MaxNewTokens"/> (benchmarks, references).</summary>
    public bool IgnoreStopTokens { get; init; }

    /// <summary>True when <see cref="Temperature"/> is 0: the most likely token is taken.</summary>
    public bool IsGreedy => Temperature == 0f;

    /// <summary>The defaults: greedy, 128 new tokens.</summary>
    public static SamplingOptions Greedy { get; } = new();

    /// <summary>Checks every option's range.</summary>
    /// <exception cref="InvalidInputException">An option is out of range.</exception>
    public void Validate()
    {
        if (Temperature < 0 || float.IsNaN(Temperature)) throw new InvalidInputException("sampling.Temperature", $"must be >= 0 (got {Temperature})");
        if (TopK < 0) throw new InvalidInputException("sampling.TopK", $"must be >= 0 (got {TopK})");
        if (!(TopP > 0 && TopP <= 1)) throw new InvalidInputException("sampling.TopP", $"must be in (0, 1] (got {TopP})");
        if (!(RepetitionPenalty > 0)) throw new InvalidInputException("sampling.RepetitionPenalty", $"must be > 0 (got {RepetitionPenalty})");
        if (MaxNewTokens < 1) throw new InvalidInputException("sampling.MaxNewTokens", $"must be >= 1 (got {MaxNewTokens})");
    }
}

/// <summary>Why a sequence stopped.</summary>
public enum FinishReason
{
    /// <summary>A stop token (end of sequence, end of turn) was generated.</summary>
    StopToken,
    /// <summary><see cref="SamplingOptions.MaxNewTokens"/> were generated.</summary>
    MaxTokens,
    /// <summary>The context window is full.</summary>
    ContextFull,
    /// <summary>The caller cancelled.</summary>
    Cancelled,
}
