using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Generation;

/// <summary>
/// Our decode loop over the ONNX Runtime C# API, for graphs whose KV cache grows by concatenation
/// (the CPU graphs). Each step feeds OrtValues directly: input ids and positions live in pinned
/// buffers owned by the sequence and are rewritten in place, the attention mask is a view of one
/// shared row, the present KV outputs are fed back as the next past exactly where ONNX Runtime put
/// them, and the sampler reads logits in ONNX Runtime's output buffer: no copy of cache or logits.
/// </summary>
public sealed class OrtDecodeEngine : IDecodeEngine
{
    private static int s_liveSequences;

    private readonly InferenceSession _session;
    private readonly DecoderManifest _decoder;
    private readonly int[] _defaultStops;
    private readonly nint _ones;     // native [context] int64 ones: the attention mask source (batch 1, no padding)
    private readonly OrtValue?[] _maskViews;
    private readonly System.Collections.Concurrent.ConcurrentBag<KvCache> _cachePool = new();
    private readonly string[] _inputNames, _outputNames;
    private volatile bool _disposed;
    private int _cachesCreated;

    /// <summary>KV caches this engine has allocated; with pooling it stays at the peak number of concurrent requests.</summary>
    internal int CachesCreated => Volatile.Read(ref _cachesCreated);

    public string Name => "ort";
    public int ContextLength => _decoder.ContextLength;
    public int VocabularySize => _decoder.VocabSize;
    public ExecutionProviderKind Provider { get; }

    /// <summary>Sequences not yet disposed, across all engines (tests use it to prove nothing leaks).</summary>
    public static int LiveSequences => Volatile.Read(ref s_liveSequences);

    private OrtDecodeEngine(InferenceSession session, ExecutionProviderKind provider, DecoderManifest decoder, int[] stops,
                            string[] inputNames, string[] outputNames)
    {
        _inputNames = inputNames;
        _outputNames = outputNames;
        _session = session;
        Provider = provider;
        _decoder = decoder;
        _defaultStops = stops;
        unsafe
        {
            _ones = (nint)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)decoder.ContextLength, sizeof(long));
            new Span<long>((void*)_ones, decoder.ContextLength).Fill(1);
        }
        _maskViews = new OrtValue?[decoder.ContextLength + 1];
    }

    /// <exception cref="ModelPackageException">The graph does not load or its I/O names do not match the manifest.</exception>
    /// <exception cref="ExecutionProviderException">No requested execution provider could be created.</exception>
    public static OrtDecodeEngine Create(ModelPackage package, ExecutionOptions execution)
    {
        var d = package.Decoder;
        if (d.KvCache != "concat")
            throw new ModelPackageException(package.DecoderPath, $"kv_cache '{d.KvCache}' needs the device-resident engine, which this build does not include");
        var (session, provider) = SessionFactory.Create(package.DecoderPath, execution);
        try
        {
            var inputs = new List<string> { d.InputName("input_ids"), d.InputName("attention_mask"), d.InputName("position_ids") };
            var outputs = new List<string> { d.OutputName("logits") };
            for (int i = 0; i < d.NumLayers; i++)
            {
                inputs.Add(d.PastKey(i)); inputs.Add(d.PastValue(i));
                outputs.Add(d.PresentKey(i)); outputs.Add(d.PresentValue(i));
            }
            ModelPackage.CheckNames(package.DecoderPath, session.InputMetadata.Keys, inputs, "inputs");
            ModelPackage.CheckNames(package.DecoderPath, session.OutputMetadata.Keys, outputs, "outputs");
            return new OrtDecodeEngine(session, provider, d, package.Manifest.Tokens.Eos, inputs.ToArray(), outputs.ToArray());
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    public IDecodeSequence Start(IReadOnlyList<int> promptIds, SamplingOptions sampling, CancellationToken cancellationToken = default)
        => Start(promptIds, sampling, null, cancellationToken);

    /// <summary>Starts a sequence with extra logits processors (constraints, guidance).</summary>
    public IDecodeSequence Start(IReadOnlyList<int> promptIds, SamplingOptions sampling, IReadOnlyList<ILogitsProcessor>? processors,
                                 CancellationToken cancellationToken = default)
    {
        foreach (int id in promptIds)
            if ((uint)id >= (uint)_decoder.VocabSize)
                throw new InvalidInputException("prompt", $"token id {id} is outside the vocabulary of {_decoder.VocabSize}");
        var seq = new Sequence(this, promptIds, sampling, processors);
        try
        {
            seq.Prefill(cancellationToken);
            return seq;
        }
        catch
        {
            seq.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        while (_cachePool.TryTake(out var cache)) cache.Dispose();
        foreach (var v in _maskViews) v?.Dispose();
        unsafe { System.Runtime.InteropServices.NativeMemory.Free((void*)_ones); }
        _session.Dispose();
    }

    private KvCache RentCache(int capacity)
    {
        if (_cachePool.TryTake(out var cache))
        {
            if (cache.Capacity >= capacity) return cache;
            cache.Dispose();
        }
        Interlocked.Increment(ref _cachesCreated);
        return new KvCache(_decoder.NumLayers, _decoder.NumKvHeads, _decoder.HeadDim, Math.Max(capacity, Math.Min(ContextLength, 256)));
    }

    private void ReturnCache(KvCache cache)
    {
        if (_disposed) cache.Dispose();
        else _cachePool.Add(cache);
    }

    /// <summary>attention_mask [1, total] of ones: a view over one shared native row, created once per length.</summary>
    private OrtValue Mask(int total)
    {
        var view = Volatile.Read(ref _maskViews[total]);
        if (view is not null) return view;
        var created = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Int64, [1, total], _ones, (long)total * sizeof(long));
        var existing = Interlocked.CompareExchange(ref _maskViews[total], created, null);
        if (existing is null) return created;
        created.Dispose();
        return existing;
    }

    private sealed unsafe class Sequence : DecodeSequenceBase
    {
        private readonly OrtDecodeEngine _e;
        private readonly DecoderManifest _d;
        private readonly RunOptions _runOptions = new();
        private readonly KvCache _cache;
        private readonly OrtValue[] _inputs;               // input_ids, attention_mask, position_ids, past key/value per layer
        private readonly OrtValue[] _outputs;              // logits, present key/value per layer
        private readonly long[] _step = new long[2];       // decode step: [0] input id, [1] position (pinned below)
        private readonly GCHandle _stepPin;
        private readonly OrtValue _stepIdsValue, _stepPosValue;   // [1,1] views of _step
        private readonly float[] _stepLogits;              // [vocab], pinned
        private readonly OrtValue _stepLogitsValue;        // [1,1,vocab] view of _stepLogits
        private float[] _prefillLogits = [];               // [S * vocab], kept for checks
        private bool _stepped;

        public Sequence(OrtDecodeEngine engine, IReadOnlyList<int> prompt, SamplingOptions sampling, IReadOnlyList<ILogitsProcessor>? processors)
            : base(prompt, sampling, engine._defaultStops, engine.ContextLength, processors)
        {
            _e = engine;
            _d = engine._decoder;
            Interlocked.Increment(ref s_liveSequences);
            _inputs = new OrtValue[engine._inputNames.Length];
            _outputs = new OrtValue[engine._outputNames.Length];
            _stepPin = GCHandle.Alloc(_step, GCHandleType.Pinned);
            nint step = _stepPin.AddrOfPinnedObject();
            _stepIdsValue = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Int64, [1, 1], step, sizeof(long));
            _stepPosValue = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Int64, [1, 1], step + sizeof(long), sizeof(long));
            _stepLogits = GC.AllocateArray<float>(_d.VocabSize, pinned: true);
            _stepLogitsValue = OrtValue.CreateTensorValueFromMemory(_stepLogits, [1, 1, _d.VocabSize]);
            _cache = engine.RentCache(Math.Min(engine.ContextLength, prompt.Count + sampling.MaxNewTokens));
            _cache.Reset();
        }

        /// <summary>All prompt positions' logits, [S * vocab] (for checks against the reference).</summary>
        public ReadOnlySpan<float> AllPrefillLogits => _prefillLogits;

        public override ReadOnlySpan<float> PrefillLogits => _prefillLogits.AsSpan((PromptLength - 1) * _d.VocabSize, _d.VocabSize);

        protected override Span<float> NextLogits => _stepped ? _stepLogits : _prefillLogits.AsSpan((PromptLength - 1) * _d.VocabSize, _d.VocabSize);

        public void Prefill(CancellationToken ct)
        {
            int s = PromptLength;
            var ids = new long[s];
            var pos = new long[s];
            for (int i = 0; i < s; i++) { ids[i] = Tokens[i]; pos[i] = i; }
            _prefillLogits = new float[s * _d.VocabSize];
            using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, [1, s]);
            using var posValue = OrtValue.CreateTensorValueFromMemory(pos, [1, s]);
            using var logitsValue = OrtValue.CreateTensorValueFromMemory(_prefillLogits, [1, s, _d.VocabSize]);
            Run(idsValue, posValue, logitsValue, past: 0, total: s, ct);
        }

        protected override void RunStep(int token, int position, CancellationToken ct)
        {
            _step[0] = token;      // input_ids [1,1]
            _step[1] = position;   // position_ids [1,1]
            Run(_stepIdsValue, _stepPosValue, _stepLogitsValue, past: position, total: position + 1, ct);
            _stepped = true;
        }

        private void Run(OrtValue ids, OrtValue positions, OrtValue logits, int past, int total, CancellationToken ct)
        {
            _inputs[0] = ids;
            _inputs[1] = _e.Mask(total);
            _inputs[2] = positions;
            _outputs[0] = logits;
            for (int l = 0; l < _d.NumLayers; l++)
            {
                for (int kv = 0; kv < 2; kv++)
                {
                    _inputs[3 + 2 * l + kv] = _cache.Past(l, kv, past);       // [1, kvH, past, hd]
                    _outputs[1 + 2 * l + kv] = _cache.Present(l, kv, total);  // [1, kvH, total, hd]
                }
            }
            using (ct.Register(static o => ((RunOptions)o!).Terminate = true, _runOptions))
            {
                try
                {
                    _e._session.Run(_runOptions, _e._inputNames, _inputs, _e._outputNames, _outputs);
                }
                catch (OnnxRuntimeException e)
                {
                    _runOptions.Terminate = false;
                    ct.ThrowIfCancellationRequested();
                    throw new InferenceException("decoder.onnx", e.Message, e);
                }
            }
            _cache.Swap();
            ct.ThrowIfCancellationRequested();
        }

        protected override void ReleaseNative()
        {
            _e.ReturnCache(_cache);
            _stepIdsValue.Dispose();
            _stepPosValue.Dispose();
            _stepLogitsValue.Dispose();
            _stepPin.Free();
            _runOptions.Dispose();
            Interlocked.Decrement(ref s_liveSequences);
        }
    }

    /// <summary>Test hook: all prompt positions' logits of a started sequence ([S * vocab]).</summary>
    internal static ReadOnlySpan<float> AllPrefillLogits(IDecodeSequence sequence) => ((Sequence)sequence).AllPrefillLogits;
}
