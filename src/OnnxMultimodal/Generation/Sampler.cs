namespace OnnxMultimodal.Generation;

/// <summary>Changes next-token logits in place before the choice (constraints, guidance, biases).</summary>
internal interface ILogitsProcessor
{
    /// <param name="logits">[vocab] logits for the next position.</param>
    /// <param name="sequence">Every token so far, prompt first.</param>
    void Process(Span<float> logits, IReadOnlyList<int> sequence);
}

/// <summary>
/// Chooses the next token. The procedure and the random source (SplitMix64, one uniform per sampled
/// token) are the ones documented in onnx-export/omm_export/sampling.py, so seeded runs reproduce
/// the Python reference draw for draw: repetition penalty, temperature, top-k, softmax, top-p, draw.
/// All arithmetic after the logits is float64. Sums run in a fixed order (the softmax denominator in
/// descending order, or in id order for top-p without top-k; Python's is pairwise): they agree to
/// rounding, so a draw could only differ if it fell within an ulp of a boundary. Only what the draw
/// needs is ordered: ids with a non-zero probability, the top k, or the buckets holding the nucleus.
/// </summary>
internal sealed class Sampler
{
    private readonly SamplingOptions _options;
    private readonly IReadOnlyList<ILogitsProcessor> _processors;
    private readonly SplitMix64 _rng;
    // Vocabulary-sized scratch, taken from the calling thread's set at each draw: a request's sampler
    // allocates none of it (at a 256k vocabulary it is 10 MB of large-object arrays), and nothing in it
    // outlives a call to Next, so sequences that share a thread can share it.
    [ThreadStatic] private static Scratch? t_scratch;
    private double[] _x = [];
    private int[] _order = [];
    private double[] _probs = [];
    private double[] _keys = [];
    private double[] _e = [];

    private sealed class Scratch
    {
        public double[] X = [], Probs = [], Keys = [], E = [];
        public int[] Order = [];
    }
    private readonly HashSet<int> _seen = new();

    public Sampler(SamplingOptions options, IReadOnlyList<ILogitsProcessor>? processors = null)
    {
        options.Validate();
        _options = options;
        _processors = processors ?? [];
        _rng = new SplitMix64(options.Seed ?? (ulong)Random.Shared.NextInt64());
    }

    /// <summary>The last uniform drawn (NaN for a greedy choice); lets tests compare with the reference.</summary>
    public double LastUniform { get; private set; } = double.NaN;

    /// <param name="logits">[vocab] next-token logits; processors may change them in place.</param>
    /// <param name="sequence">Tokens so far (prompt + generated), for the repetition penalty.</param>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public int Next(Span<float> logits, IReadOnlyList<int> sequence)
    {
        foreach (var p in _processors) p.Process(logits, sequence);
        int v = logits.Length;
        if (_options.IsGreedy && _options.RepetitionPenalty == 1.0)
        {
            // Greedy without a penalty: a vectorised argmax straight over the float logits (first index
            // of the largest; 256k-wide Seamless logits take ~0.02 ms instead of ~0.6 ms as a scalar loop).
            LastUniform = double.NaN;
            return ArgMax.IndexOfMax(logits);
        }
        var scratch = t_scratch ??= new Scratch();
        if (scratch.X.Length != v)
        {
            scratch.X = new double[v]; scratch.Order = new int[v]; scratch.Probs = new double[v];
            scratch.Keys = new double[v]; scratch.E = new double[v];
        }
        (_x, _order, _probs, _keys, _e) = (scratch.X, scratch.Order, scratch.Probs, scratch.Keys, scratch.E);
        var x = _x;
        for (int i = 0; i < v; i++) x[i] = logits[i];

        double r = _options.RepetitionPenalty;
        if (r != 1.0)
        {
            _seen.Clear();
            foreach (int t in sequence)
                if ((uint)t < (uint)v && _seen.Add(t)) x[t] = x[t] > 0 ? x[t] / r : x[t] * r;
        }
        if (_options.IsGreedy)
        {
            int best = 0;
            for (int i = 1; i < v; i++) if (x[i] > x[best]) best = i;   // ties: lower id
            LastUniform = double.NaN;
            return best;
        }

        double temperature = _options.Temperature;
        for (int i = 0; i < v; i++) x[i] /= temperature;
        int kept = _options.TopK > 0 ? Math.Min(_options.TopK, v) : v;
        double max = x[0];
        for (int i = 1; i < v; i++) if (x[i] > max) max = x[i];
        if (kept == v && _options.TopP < 1f && Nucleus(x, max, v) is int chosen)
            return chosen;
        // Only ids whose probability is not exactly zero need ordering (a constraint may have floored
        // most of the vocabulary: 8192 image tokens of 65536). In the full descending order they come
        // first, and the zeros add nothing to any sum below, so every figure equals the full-sort one.
        int live = SortLive(x, max, kept);
        int head = Math.Min(kept, live);

        double sum = 0;
        for (int j = 0; j < head; j++) { _probs[j] = Math.Exp(x[_order[j]] - max); sum += _probs[j]; }
        for (int j = 0; j < head; j++) _probs[j] /= sum;

        double cum = 0;
        int keep = kept;
        for (int j = 0; j < head; j++)
        {
            cum += _probs[j];
            if (cum >= _options.TopP) { keep = j + 1; break; }
        }
        int keepHead = Math.Min(keep, live);
        int drawn = Draw(keepHead);
        return drawn >= 0 ? _order[drawn] : keep <= live ? _order[keep - 1] : ZeroAt(x, max, keep - 1 - live);
    }

    /// <summary>The next uniform of this sampler's stream, for a choice made elsewhere (the sampling head): one per
    /// sampled token, in the order the host path would draw them.</summary>
    public double DrawUniform()
    {
        LastUniform = _rng.NextDouble();
        return LastUniform;
    }

    /// <summary>Renormalises <c>_probs[0..keep)</c> and draws one uniform: the position of the first
    /// cumulative probability above it, or -1 when rounding leaves the draw past them all.</summary>
    private int Draw(int keep)
    {
        double keptSum = 0;
        for (int j = 0; j < keep; j++) keptSum += _probs[j];
        for (int j = 0; j < keep; j++) _probs[j] /= keptSum;
        double u = _rng.NextDouble();
        LastUniform = u;
        double cum = 0;
        for (int j = 0; j < keep; j++)
        {
            cum += _probs[j];
            if (u < cum) return j;
        }
        return -1;
    }

    /// <summary>Whether exp(d) (d = logit - largest logit) is not exactly zero in float64.</summary>
    private static bool IsLive(double d) => d > -700 || (d > -800 && Math.Exp(d) > 0);

    /// <summary>Sorts <paramref name="negatedKeys"/> (the negated logits) ascending with their ids, equal keys by
    /// lower id: the descending order of the sampling procedure.</summary>
    private static void SortDescending(Span<double> negatedKeys, Span<int> ids)
    {
        negatedKeys.Sort(ids);
        for (int a = 0; a < ids.Length;)   // the sort is not stable
        {
            int b = a + 1;
            while (b < ids.Length && negatedKeys[b] == negatedKeys[a]) b++;
            if (b - a > 1) ids[a..b].Sort();
            a = b;
        }
    }

    private readonly double[] _bucketMass = new double[Buckets];
    private const int Buckets = 321;            // 1/8 nat each below the largest logit; the last takes the rest

    /// <summary>
    /// Top-p without top-k, without ordering the whole vocabulary: the softmax denominator is summed in
    /// id order, the ids are bucketed by how far below the largest logit they are, and only the buckets
    /// that hold the nucleus's mass (plus one, against rounding) are ordered exactly (descending, ties by
    /// lower id) for the cut and the draw. Null when rounding leaves the cut outside them (the caller
    /// then orders everything).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private int? Nucleus(double[] x, double max, int v)
    {
        Array.Clear(_bucketMass);
        double sum = 0;
        for (int i = 0; i < v; i++)
        {
            double e = Math.Exp(x[i] - max);
            _e[i] = e;
            sum += e;
            _bucketMass[Bucket(max - x[i])] += e;
        }
        double target = _options.TopP * sum, acc = 0;
        int cut = 0;
        while (cut < Buckets - 1 && (acc += _bucketMass[cut]) < target) cut++;
        cut = Math.Min(cut + 1, Buckets - 1);
        int n = 0;
        for (int i = 0; i < v; i++)
            if (Bucket(max - x[i]) <= cut)
            {
                _order[n] = i;
                _keys[n++] = -x[i];
            }
        SortDescending(_keys.AsSpan(0, n), _order.AsSpan(0, n));
        double cum = 0;
        int keep = -1;
        for (int j = 0; j < n; j++)
        {
            _probs[j] = _e[_order[j]] / sum;
            cum += _probs[j];
            if (cum >= _options.TopP) { keep = j + 1; break; }
        }
        if (keep < 0) return null;
        int drawn = Draw(keep);
        return _order[drawn >= 0 ? drawn : keep - 1];
    }

    private static int Bucket(double below) => below < (Buckets - 1) / 8.0 ? (int)(below * 8) : Buckets - 1;   // NaN: the last

    /// <summary>Puts the ids with a non-zero probability (exp(x - max) &gt; 0) first in <c>_order</c>,
    /// descending, ties by lower id (only the first <paramref name="kept"/> when that is a small top-k);
    /// returns how many there are.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    private int SortLive(double[] x, double max, int kept)
    {
        int v = x.Length, live = 0;
        for (int i = 0; i < v; i++)
        {
            if (IsLive(x[i] - max))
            {
                _order[live] = i;
                _keys[live++] = -x[i];
            }
        }
        if (kept < live / 8)
        {
            // A small top-k: a min-heap of k over the candidates, O(n log k) instead of a full sort.
            var heap = new PriorityQueue<int, (double Key, int Id)>(kept + 1, Comparer<(double Key, int Id)>.Create(
                (a, b) => a.Key != b.Key ? a.Key.CompareTo(b.Key) : b.Id.CompareTo(a.Id)));   // the worst kept on top
            for (int j = 0; j < live; j++)
            {
                var item = (-_keys[j], _order[j]);
                if (heap.Count < kept) heap.Enqueue(item.Item2, item);
                else if (heap.TryPeek(out _, out var worst) && (item.Item1 > worst.Key || (item.Item1 == worst.Key && item.Item2 < worst.Id)))
                    heap.EnqueueDequeue(item.Item2, item);
            }
            for (int j = kept - 1; j >= 0; j--) _order[j] = heap.Dequeue();
            return live;
        }
        SortDescending(_keys.AsSpan(0, live), _order.AsSpan(0, live));
        return live;
    }

    /// <summary>The <paramref name="n"/>-th zero-probability id in the full order (descending x, ties by
    /// lower id): only reached when rounding leaves a draw past every non-zero probability.</summary>
    private static int ZeroAt(double[] x, double max, int n)
    {
        var zeros = new List<int>();
        for (int i = 0; i < x.Length; i++)
            if (!IsLive(x[i] - max)) zeros.Add(i);
        zeros.Sort((a, b) => x[a] != x[b] ? x[b].CompareTo(x[a]) : a.CompareTo(b));
        return zeros[n];
    }

}

internal sealed class SplitMix64(ulong seed)
{
    private ulong _state = seed;

    public ulong NextUInt64()
    {
        _state += 0x9E3779B97F4A7C15UL;
        ulong z = _state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));
}
