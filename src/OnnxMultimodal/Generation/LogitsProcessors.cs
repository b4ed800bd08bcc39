namespace OnnxMultimodal.Generation;

/// <summary>Bans a set of tokens (e.g. image tokens while writing text, as transformers' Chameleon does).</summary>
internal sealed class SuppressTokensProcessor(IEnumerable<int> banned) : IStaticLogitMask
{
    private readonly int[] _banned = banned.ToArray();

    public void Process(Span<float> logits, IReadOnlyList<int> sequence)
    {
        foreach (int id in _banned) logits[id] = float.MinValue;
    }

    public void FillMask(Span<float> mask)
    {
        foreach (int id in _banned) mask[id] = float.MinValue;
    }
}

/// <summary>Inside an image span only image tokens may be chosen: every other logit is pushed to the floor.</summary>
internal sealed class ImageSpanConstraint : IStaticLogitMask
{
    private readonly bool[] _allowed;

    public ImageSpanConstraint(int vocabularySize, IEnumerable<int> imageTokenIds)
    {
        _allowed = new bool[vocabularySize];
        foreach (int id in imageTokenIds) _allowed[id] = true;
    }

    public bool IsAllowed(int id) => (uint)id < (uint)_allowed.Length && _allowed[id];

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public void Process(Span<float> logits, IReadOnlyList<int> sequence)
    {
        for (int i = 0; i < logits.Length; i++)
            if (!_allowed[i]) logits[i] = float.MinValue;
    }

    public void FillMask(Span<float> mask)
    {
        for (int i = 0; i < mask.Length; i++)
            if (i >= _allowed.Length || !_allowed[i]) mask[i] = float.MinValue;   // ids past the table are not image tokens
    }
}
