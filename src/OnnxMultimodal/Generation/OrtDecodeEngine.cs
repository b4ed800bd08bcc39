using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Generation;

/// <summary>
/// Our decode loop over the ONNX Runtime C# API, for decoder graphs whose KV cache grows by
/// concatenation and for fused graphs that append to one shared max-length cache; on CUDA the cache
/// and the step I/O stay on the device. The session is shared and thread-safe; each request owns a <see cref="DecodeState"/>
/// (preallocated step I/O, pooled ping-pong KV cache), so a warm decode step allocates nothing.
/// Several rows decode in one batch for classifier-free guidance.
/// </summary>
internal sealed class OrtDecodeEngine : IDecodeEngine
{
    private static int s_liveSequences;

    private readonly DecoderManifest _decoder;
    private readonly int[] _defaultStops;
    private readonly nint _ones;                       // native [context] int64 ones: the batch-1 attention mask
    private readonly OrtValue?[] _maskViews;           // [1, total] views of _ones, by total
    private readonly ConcurrentDictionary<int, ConcurrentBag<KvCache>> _cachePool = new();   // by batch size
    private volatile bool _disposed;
    private int _cachesCreated;

    internal InferenceSession Session { get; }
    /// <summary>The package's prefill_decoder (e.g. fp16 weights beside an int4 decoder): runs the prompt
    /// into the same cache, never captured; null when prompts run on <see cref="Session"/>.</summary>
    internal InferenceSession? PrefillSession { get; private set; }
    /// <summary>Set when the KV cache and step I/O live on the CUDA device.</summary>
    internal Runtime.DeviceMemory? Device { get; private set; }
    internal bool CudaGraph { get; private set; }
    /// <summary>Serialises runs under CUDA graphs (capture must not overlap another run on the session).</summary>
    internal object GraphLock { get; } = new();
    internal string[] InputNames { get; }
    /// <summary>Outputs bound by a decode step: logits, present key/value per layer, then next_token when
    /// <see cref="NextTokenOutput"/>.</summary>
    internal string[] OutputNames { get; }
    /// <summary>Outputs bound by a prefill run: the step's without next_token (the first token comes from the
    /// prompt's logits, which the caller may read, and a prefill decoder need not give next_token).</summary>
    internal string[] PrefillOutputNames { get; }
    /// <summary>The graph gives next_token (its greedy choice, <c>convert --next-token</c>) and
    /// <see cref="ExecutionOptions.GraphTokenChoice"/> is on: steps bind it, greedy sequences read it.</summary>
    internal bool NextTokenOutput { get; }
    /// <summary>The sampling head's inputs (<c>convert --device-sampling</c>), the last of <see cref="InputNames"/>; empty without one.</summary>
    internal string[] HeadInputNames { get; private init; } = [];
    /// <summary><see cref="OutputNames"/> with the head's greedy output in next_token's place (bound to the same buffer):
    /// greedy steps run only the head's ArgMax path. Null without a head that has one.</summary>
    internal string[]? GreedyOutputNames { get; private init; }
    /// <summary>The graph's next_token comes from the sampling head: greedy and sampled choices (with a repetition penalty,
    /// a fixed mask, guidance's mix) can be made on the device; see <see cref="SamplingHeadManifest.Expresses"/>.</summary>
    internal bool DeviceSampling => NextTokenOutput && HeadInputNames.Length > 0;

    public string Name => "ort";
    public int ContextLength => _decoder.ContextLength;
    public int VocabularySize => _decoder.VocabSize;
    public ExecutionProviderKind Provider { get; }

    /// <summary>Sequences not yet disposed, across all engines (tests use it to prove nothing leaks).</summary>
    public static int LiveSequences => Volatile.Read(ref s_liveSequences);

    /// <summary>KV caches this engine has allocated; with pooling it stays at the peak number of concurrent requests.</summary>
    internal int CachesCreated => Volatile.Read(ref _cachesCreated);

    private OrtDecodeEngine(InferenceSession session, ExecutionProviderKind provider, DecoderManifest decoder, int[] stops,
                            string[] inputNames, string[] outputNames, string[] prefillOutputNames)
    {
        Session = session;
        Provider = provider;
        InputNames = inputNames;
        OutputNames = outputNames;
        PrefillOutputNames = prefillOutputNames;
        NextTokenOutput = outputNames.Length > prefillOutputNames.Length;
        _decoder = decoder;
        _defaultStops = stops;
        unsafe
        {
            _ones = (nint)NativeMemory.Alloc((nuint)decoder.ContextLength, sizeof(long));
            new Span<long>((void*)_ones, decoder.ContextLength).Fill(1);
        }
        _maskViews = new OrtValue?[decoder.ContextLength + 1];
    }

    /// <exception cref="ModelPackageException">The graph does not load or its I/O names do not match the manifest.</exception>
    /// <exception cref="ExecutionProviderException">No requested execution provider could be created.</exception>
    public static OrtDecodeEngine Create(ModelPackage package, ExecutionOptions execution)
    {
        var d = package.Decoder;
        var inputs = d.SharedCache
            ? new List<string> { d.InputName("input_ids"), d.InputName("seqlens_k"), d.InputName("total_sequence_length") }
            : new List<string> { d.InputName("input_ids"), d.InputName("attention_mask"), d.InputName("position_ids") };
        var outputs = new List<string> { d.OutputName("logits") };
        for (int i = 0; i < d.NumLayers; i++)
        {
            inputs.Add(d.PastKey(i)); inputs.Add(d.PastValue(i));
            outputs.Add(d.PresentKey(i)); outputs.Add(d.PresentValue(i));
        }
        if (d.HasCrossAttention)
        {
            for (int i = 0; i < d.NumLayers; i++) { inputs.Add(d.CrossKey(i)); inputs.Add(d.CrossValue(i)); }
            inputs.Add(d.InputName("encoder_attention_mask"));
        }
        var prefillOutputs = outputs.ToArray();
        if (execution.GraphTokenChoice && d.Outputs.ContainsKey("next_token") && !d.HasCrossAttention)
            outputs.Add(d.OutputName("next_token"));
        // The head's inputs are graph inputs whether or not its next_token is read: they are always bound.
        string[] head = d.SamplingHead is { } h && !d.HasCrossAttention ? h.InputNames(package.DecoderPath) : [];
        inputs.AddRange(head);
        string[]? greedyOutputs = head.Length > 0 && outputs.Count > prefillOutputs.Length && d.SamplingHead!.GreedyOutput is { Length: > 0 } greedy
            ? [.. prefillOutputs, greedy] : null;
        var (session, provider) = SessionFactory.CreateChecked(package.DecoderPath, execution, inputs, outputs, decoder: true);
        try
        {
            if (greedyOutputs is not null) ModelPackage.CheckNames(package.DecoderPath, session.OutputMetadata.Keys, greedyOutputs, "outputs");
            LimitChecks.DecoderGraph(package.DecoderPath, d, session.InputMetadata, session.OutputMetadata);
            if (head.Length > 0) SamplingHeadManifest.CheckGraph(package.DecoderPath, head, d.VocabSize, session.InputMetadata);
        }
        catch { session.Dispose(); throw; }
        var engine = new OrtDecodeEngine(session, provider, d, package.Manifest.Tokens.Eos, inputs.ToArray(), outputs.ToArray(), prefillOutputs)
        {
            HeadInputNames = head,
            GreedyOutputNames = greedyOutputs,
        };
        if (package.Has("prefill_decoder"))
        {
            try
            {
                string path = package.ComponentPath("prefill_decoder");
                var (prefill, prefillProvider) = SessionFactory.CreateChecked(path, execution with { CudaGraph = false }, inputs, prefillOutputs, decoder: true);
                engine.PrefillSession = prefill;
                CheckPrefillDecoder(package, path, session, prefill, provider, prefillProvider);
            }
            catch
            {
                engine.Dispose();
                throw;
            }
        }
        if (execution.CudaGraph && provider == ExecutionProviderKind.Cuda && !(d.SharedCache && execution.DeviceResident))
        {
            engine.Dispose();
            throw new InvalidInputException("execution.CudaGraph", "CUDA graphs need a fused shared-cache decoder graph (kv_cache 'shared') with the device-resident cache");
        }
        if (provider == ExecutionProviderKind.Cuda && d.SharedCache && d.KvDtype != "float16")
        {
            engine.Dispose();
            throw new InvalidInputException("decoder", $"{package.DecoderPath}: GroupQueryAttention runs only in fp16 on CUDA; this fused graph is " +
                $"{package.Manifest.Precision} with a {d.KvDtype} cache: export it with --precision fp16 (or int4 with --int4-activation fp16), or run it on the CPU");
        }
        if (provider == ExecutionProviderKind.Cuda && execution.DeviceResident)
        {
            // Both layouts keep their cache on the device: concat graphs ping-pong between two device
            // buffers per layer, shared graphs append in place (and may be captured as a CUDA graph).
            if (!Runtime.CudaRuntime.Available())
            {
                engine.Dispose();
                throw new ExecutionProviderException("the device-resident decode loop needs libcudart.so.13 (CUDA 13 runtime) on the library path");
            }
            engine.Device = new Runtime.DeviceMemory(session, execution.DeviceId);
            engine.CudaGraph = execution.CudaGraph;
        }
        else if (provider == ExecutionProviderKind.Cuda && d.SharedCache)
        {
            engine.Dispose();
            throw new InvalidInputException("execution.DeviceResident",
                "a shared-cache (GroupQueryAttention) graph on CUDA needs its cache on the device: it appends in place, and host copies would split past from present");
        }
        return engine;
    }

    /// <summary>The prefill graph must write the cache the decoder reads and return logits of the same layout.</summary>
    private static void CheckPrefillDecoder(ModelPackage package, string path, InferenceSession decoder, InferenceSession prefill,
                                            ExecutionProviderKind provider, ExecutionProviderKind prefillProvider)
    {
        var d = package.Decoder;
        if (prefillProvider != provider)
            throw new ModelPackageException(path, $"the prefill decoder runs on {prefillProvider} and the decoder on {provider}: they must share one device");
        foreach (var name in new[] { d.PastKey(0), d.PastValue(0) })
        {
            var (a, b) = (decoder.InputMetadata[name], prefill.InputMetadata[name]);
            if (a.ElementDataType != b.ElementDataType || !a.Dimensions.Skip(1).SequenceEqual(b.Dimensions.Skip(1)))
                throw new ModelPackageException(path, $"its cache input {name} is {b.ElementDataType} [{string.Join(", ", b.Dimensions)}], the decoder's is " +
                    $"{a.ElementDataType} [{string.Join(", ", a.Dimensions)}]: a prefill decoder must write the decoder's own cache");
        }
        string logits = d.OutputName("logits");
        var (la, lb) = (decoder.OutputMetadata[logits].Dimensions, prefill.OutputMetadata[logits].Dimensions);
        if ((la[1] == 1) != (lb[1] == 1))
            throw new ModelPackageException(path, $"its logits are [{string.Join(", ", lb)}] and the decoder's [{string.Join(", ", la)}]: both must give all positions or both the last");
    }

    public IDecodeSequence Start(IReadOnlyList<int> promptIds, SamplingOptions sampling,
                                 IReadOnlyList<ILogitsProcessor>? processors = null, CancellationToken cancellationToken = default)
        => StartWithEncoder(null, promptIds, sampling, processors, cancellationToken);

    /// <summary>Starts decoding against an encoder's output (speech->text); the encoder states must outlive the sequence.</summary>
    /// <exception cref="InvalidInputException">The decoder needs encoder states and got none (or the reverse).</exception>
    public IDecodeSequence StartWithEncoder(Speech.EncoderStates? encoder, IReadOnlyList<int> promptIds, SamplingOptions sampling,
                                            IReadOnlyList<ILogitsProcessor>? processors = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckIds(promptIds);
        if (_decoder.HasCrossAttention && encoder is null)
            throw new InvalidInputException("encoder", "this decoder cross-attends to an encoder: give it encoder states (StartWithEncoder)");
        var seq = new Sequence(this, promptIds, sampling, processors, encoder);
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

    /// <summary>Prefills several prompts as one batch (left-padded) for lockstep decoding.</summary>
    /// <exception cref="PromptTooLongException">A prompt plus the tokens to generate does not fit the context.</exception>
    internal DecodeState StartBatch(IReadOnlyList<IReadOnlyList<int>> prompts, int newTokens, CancellationToken cancellationToken)
    {
        foreach (var p in prompts) CheckIds(p);
        int longest = prompts.Max(p => p.Count);
        if (longest + newTokens > ContextLength) throw new PromptTooLongException(longest + newTokens, ContextLength);
        var state = new DecodeState(this, _decoder, prompts, longest + newTokens);
        try
        {
            state.Prefill(cancellationToken);
            return state;
        }
        catch
        {
            state.Dispose();
            throw;
        }
    }

    private void CheckIds(IReadOnlyList<int> ids)
    {
        if (ids.Count == 0) throw new InvalidInputException("prompt", "is empty: at least one token is needed");
        foreach (int id in ids)
            if ((uint)id >= (uint)_decoder.VocabSize)
                throw new InvalidInputException("prompt", $"token id {id} is outside the vocabulary of {_decoder.VocabSize}");
    }

    /// <param name="crossFrames">Encoder frames of the request (encoder-decoder graphs with a device cache), else 0.</param>
    internal KvCache RentCache(int batch, int capacity, int crossFrames = 0)
    {
        var bag = _cachePool.GetOrAdd(batch, _ => new ConcurrentBag<KvCache>());
        if (bag.TryTake(out var cache))
        {
            if (cache.Capacity >= capacity && cache.CrossCapacity >= crossFrames) return cache;
            cache.Dispose();
        }
        int created = Interlocked.Increment(ref _cachesCreated);
        // Under a CUDA graph every request must bind the same addresses: one full-context cache, and
        // cross K/V buffers in steps of 256 encoder frames (about 40 s of audio at Seamless' ~6 frames a
        // second), so most requests fit the first. A cache replaced by a larger one leaves its captured
        // graph unused in ONNX Runtime: the new cache captures under a new graph id.
        int size = CudaGraph ? ContextLength : Math.Max(capacity, Math.Min(ContextLength, 256));
        int step = CudaGraph ? 256 : 64;
        int crossCapacity = crossFrames == 0 ? 0 : (crossFrames + step - 1) / step * step;
        return new KvCache(batch, _decoder.NumLayers, _decoder.NumKvHeads, _decoder.HeadDim, size,
                           _decoder.SharedCache, KvType, Device, _decoder.VocabSize, graphId: created,   // each pooled cache captures its own CUDA graph
                           crossHeads: _decoder.NumHeads, crossCapacity: crossCapacity, nextToken: NextTokenOutput,
                           samplingHead: HeadInputNames.Length > 0);
    }

    /// <summary>The element type of the KV cache and of the cross-attention K/V the graph takes.</summary>
    internal TensorElementType KvType => _decoder.KvDtype == "float16" ? TensorElementType.Float16 : TensorElementType.Float;

    internal void ReturnCache(KvCache cache)
    {
        if (_disposed) cache.Dispose();
        else _cachePool.GetOrAdd(cache.Batch, _ => new ConcurrentBag<KvCache>()).Add(cache);
    }

    /// <summary>attention_mask [1, total] of ones: a view over one shared native row, created once per length.</summary>
    internal OrtValue Mask(int total)
    {
        var view = Volatile.Read(ref _maskViews[total]);
        if (view is not null) return view;
        var created = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Int64, [1, total], _ones, (long)total * sizeof(long));
        var existing = Interlocked.CompareExchange(ref _maskViews[total], created, null);
        if (existing is null) return created;
        created.Dispose();
        return existing;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var bag in _cachePool.Values)
            while (bag.TryTake(out var cache)) cache.Dispose();
        foreach (var v in _maskViews) v?.Dispose();
        unsafe { NativeMemory.Free((void*)_ones); }
        Device?.Dispose();
        PrefillSession?.Dispose();
        Session.Dispose();
    }

    /// <summary>One text request: a single-row <see cref="DecodeState"/> under the shared token loop.</summary>
    private sealed class Sequence : DecodeSequenceBase
    {
        private readonly DecodeState _state;
        private readonly int[] _token = new int[1];
        private readonly bool _graphChoice;   // the graph's next_token is this sequence's choice: a step reads 8 bytes, not the logits
        private readonly SamplingHeadInputs? _head;   // set when the choice is the sampling head's
        private readonly SamplingOptions _sampling;

        public Sequence(OrtDecodeEngine engine, IReadOnlyList<int> prompt, SamplingOptions sampling, IReadOnlyList<ILogitsProcessor>? processors,
                        Speech.EncoderStates? encoder)
            : base(prompt, sampling, engine._defaultStops, engine.ContextLength, processors)
        {
            _state = new DecodeState(engine, engine._decoder, [prompt], (int)Math.Min(engine.ContextLength, (long)prompt.Count + sampling.MaxNewTokens), encoder);
            _sampling = sampling;
            // Plain ArgMax graphs: plain greedy only. A sampling head: whatever it expresses exactly (else the host sampler).
            _graphChoice = engine.DeviceSampling
                ? SamplingHeadManifest.Expresses(sampling, processors)
                : engine.NextTokenOutput && sampling.IsGreedy && sampling.RepetitionPenalty == 1f && (processors is null || processors.Count == 0);
            if (_graphChoice && engine.DeviceSampling)
            {
                _head = _state.Head!;
                try { _head.Configure(sampling, 1f, guided: false, processors, [prompt]); }
                catch { _state.Dispose(); throw; }
            }
            Interlocked.Increment(ref s_liveSequences);
        }

        public void Prefill(CancellationToken ct)
        {
            _state.Prefill(ct);
            _prefillKept = true;
            _state.KeepPrefillRow();
        }

        private bool _prefillKept;
        private ReadOnlySpan<float> PrefillRow => _prefillKept ? _state.PrefillRow : [];
        public ReadOnlySpan<float> AllPrefillLogits => _state.AllPrefillLogits;
        public override ReadOnlySpan<float> PrefillLogits => PrefillRow;
        protected override Span<float> NextLogits => _state.Logits(0);

        /// <summary>Tokens taken from the graph's next_token rather than chosen from the logits (tests).</summary>
        public int GraphChoices { get; private set; }

        protected override void RunStep(int token, CancellationToken ct)
        {
            _token[0] = token;
            _head?.Advance(token, Sampler);   // the head's inputs for this step: the token just chosen is seen, and the next draw
            _state.Step(_token, ct, readLogits: !_graphChoice, greedyHead: _head is not null && _sampling.IsGreedy);
        }

        protected override bool TryGraphToken(out int token)
        {
            token = 0;
            if (!_graphChoice || !_state.Stepped) return false;   // the first token comes from the prompt's logits
            token = _state.GraphToken(0);
            GraphChoices++;
            return true;
        }

        protected override void ReleaseNative()
        {
            _state.Dispose();
            Interlocked.Decrement(ref s_liveSequences);
        }
    }

    /// <summary>Test hook: all prompt positions' logits of a started sequence ([S * vocab]).</summary>
    internal static ReadOnlySpan<float> AllPrefillLogits(IDecodeSequence sequence) => ((Sequence)sequence).AllPrefillLogits;

    /// <summary>Test hook: how many of a sequence's tokens came from the graph's next_token output.</summary>
    internal static int GraphChoices(IDecodeSequence sequence) => ((Sequence)sequence).GraphChoices;
}
