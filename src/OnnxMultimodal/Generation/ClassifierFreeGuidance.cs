namespace OnnxMultimodal.Generation;

/// <summary>
/// Classifier-free guidance for image-token generation: the conditional and unconditional prompts
/// decode as one batch of two rows; each step the guided logits u + s * (c - u) go through the
/// image-span constraint and the sampler, and the chosen token is appended to both rows.
/// </summary>
internal static class ClassifierFreeGuidance
{
    /// <summary>Generates exactly <paramref name="count"/> tokens.</summary>
    /// <param name="onToken">Called with each token as it is chosen.</param>
    /// <exception cref="PromptTooLongException">Prompt plus <paramref name="count"/> does not fit the context.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the engine stays usable.</exception>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]   // a 65536-wide mix per step
    public static int[] Generate(OrtDecodeEngine engine, IReadOnlyList<int> conditional, IReadOnlyList<int> unconditional,
                                 int count, float scale, SamplingOptions sampling, ILogitsProcessor constraint,
                                 Action<int>? onToken = null, CancellationToken cancellationToken = default)
    {
        using var state = engine.StartBatch([conditional, unconditional], count, cancellationToken);
        var sampler = new Sampler(sampling with { MaxNewTokens = count }, [constraint]);
        var guided = new float[engine.VocabularySize];
        var sequence = new List<int>(conditional);
        var pair = new int[2];
        var tokens = new int[count];
        for (int i = 0; i < count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            ReadOnlySpan<float> c = state.Logits(0), u = state.Logits(1);   // [vocab] each
            for (int j = 0; j < guided.Length; j++) guided[j] = u[j] + scale * (c[j] - u[j]);
            int token = sampler.Next(guided, sequence);
            tokens[i] = token;
            sequence.Add(token);
            onToken?.Invoke(token);
            if (i + 1 < count)
            {
                pair[0] = pair[1] = token;
                state.Step(pair, cancellationToken);
            }
        }
        return tokens;
    }
}
