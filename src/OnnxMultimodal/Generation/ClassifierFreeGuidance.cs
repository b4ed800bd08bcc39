namespace OnnxMultimodal.Generation;

/// <summary>
/// Classifier-free guidance for image-token generation: the conditional and unconditional prompts
/// decode as one batch of two rows; each step the guided logits u + s * (c - u) go through the
/// image-span constraint and the sampler, and the chosen token is appended to both rows. A decoder with a sampling
/// head (<c>convert --device-sampling</c>) does the mix, constraint, penalty and draw in the graph, drawing from the
/// same seeded stream, so the tokens are the host's.
/// </summary>
internal static class ClassifierFreeGuidance
{
    /// <summary>Test hook: how many tokens the sampling head chose in the last <see cref="Generate"/> to finish in this
    /// process (the pipeline runs it on a worker thread; tests run one at a time).</summary>
    internal static int LastDeviceChoices => Volatile.Read(ref s_lastDeviceChoices);
    private static int s_lastDeviceChoices;

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
        // With a sampling head the mix, the constraint, the penalty and the draw run in the graph: a step hands back
        // one token id instead of 2 x vocab logits. The first token still comes from the prompt's logits on the host.
        var head = engine.DeviceSampling && SamplingHeadManifest.Expresses(sampling, [constraint]) ? state.Head : null;
        head?.Configure(sampling, scale, guided: true, [constraint], [conditional]);
        var guided = new float[engine.VocabularySize];
        var sequence = new List<int>(conditional);
        var pair = new int[2];
        var tokens = new int[count];
        int deviceChoices = 0;
        for (int i = 0; i < count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int token;
            if (head is not null && state.Stepped)
            {
                token = state.GraphToken(0);   // both rows chose it: one mix, one draw
                deviceChoices++;
            }
            else
            {
                ReadOnlySpan<float> c = state.Logits(0), u = state.Logits(1);   // [vocab] each
                for (int j = 0; j < guided.Length; j++) guided[j] = u[j] + scale * (c[j] - u[j]);
                token = sampler.Next(guided, sequence);
            }
            tokens[i] = token;
            sequence.Add(token);
            onToken?.Invoke(token);
            if (i + 1 < count)
            {
                pair[0] = pair[1] = token;
                head?.Advance(token, sampler);
                state.Step(pair, cancellationToken, readLogits: head is null, greedyHead: head is not null && sampling.IsGreedy);
            }
        }
        Volatile.Write(ref s_lastDeviceChoices, deviceChoices);
        return tokens;
    }
}
