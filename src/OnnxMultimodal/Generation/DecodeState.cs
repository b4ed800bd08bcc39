using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Generation;

/// <summary>
/// The decoder state of one request: B rows decoded in lockstep (B = 1 for text, 2 for classifier-free
/// guidance). Concat graphs take the rows left-padded (padded keys masked, positions counted from each
/// row's first real token); shared-cache graphs take them right-padded, each row's valid length given
/// by its own seqlens_k, so every row's cache starts at position 0. Every step input and output is bound to memory allocated once:
/// the per-row token/position pairs, the attention mask, the [B, vocab] logits the sampler reads in
/// place, and a pooled <see cref="KvCache"/> the graph writes into. A warm step allocates nothing.
/// </summary>
internal sealed unsafe class DecodeState : IDisposable
{
    private readonly OrtDecodeEngine _e;
    private readonly DecoderManifest _d;
    private readonly RunOptions _runOptions = new();
    private readonly KvCache _cache;
    private readonly int[] _pads;                      // left padding per row (concat graphs)
    private readonly int[] _rowLength;                 // valid tokens per row so far
    private readonly OrtValue[] _inputs;               // input_ids, attention_mask, position_ids, past key/value per layer
    private readonly OrtValue[] _outputs;              // logits, present key/value per layer[, next_token]
    private readonly OrtValue[] _prefillOutputs;       // the same without next_token (_outputs itself when the graph has none)
    private readonly long[] _step;                     // [0..B) input ids, [B..2B) positions; pinned (POH)
    private readonly int[] _lengths;                   // shared cache, pinned: [0..B) seqlens_k, [B] total_sequence_length
    private readonly OrtValue? _seqlens, _total;       // [B] and [] views of _lengths
    private readonly OrtValue _stepIds, _stepPositions;   // [B,1] views of _step
    private readonly float[] _stepLogits;              // [B * vocab], pinned
    private readonly OrtValue _stepLogitsValue;        // [B,1,vocab]
    private readonly long* _mask;                      // B > 1: [B * capacity] rewritten per length
    private readonly OrtValue?[]? _maskViews;          // B > 1: [B, total] views by total
    private float[] _prefillLogits = [];               // [B, S, vocab]
    // Device-resident decode (CUDA): step inputs and logits live on the device at the cache's fixed
    // addresses (so a captured CUDA graph replays them); the host writes the token (and seqlens_k, or
    // the small position and mask inputs of concat graphs) and reads the logits back.
    private readonly KvCache.DeviceStep? _device;
    private readonly RunOptions? _prefillRunOptions;
    private readonly RunOptions? _greedyRunOptions;   // CUDA graph: greedy-head steps bind other outputs, so they replay their own graph
    private bool _stepped;
    private bool _greedyStep;                          // this step binds the head's greedy output
    /// <summary>Greedy-head steps of a cache replay CUDA graph id <c>GraphId + GreedyGraphOffset</c>.</summary>
    internal const int GreedyGraphOffset = 1 << 20;
    private Speech.EncoderStates? _crossToLoad;

    public int Batch { get; }
    /// <summary>Positions filled so far, padding included.</summary>
    public int Length { get; private set; }

    public DecodeState(OrtDecodeEngine engine, DecoderManifest decoder, IReadOnlyList<IReadOnlyList<int>> prompts, int capacity,
                       Speech.EncoderStates? encoder = null)
    {
        _e = engine;
        _d = decoder;
        Batch = prompts.Count;
        int longest = prompts.Max(p => p.Count);
        _pads = decoder.SharedCache ? new int[Batch] : prompts.Select(p => longest - p.Count).ToArray();
        _rowLength = prompts.Select(p => p.Count).ToArray();
        _lengths = GC.AllocateArray<int>(Batch + 1, pinned: true);
        _inputs = new OrtValue[engine.InputNames.Length];
        if (decoder.HasCrossAttention)
        {
            if (encoder is null) throw new InvalidInputException("encoder", "this decoder cross-attends to an encoder: encode the input first");
            if (Batch != 1) throw new InvalidInputException("prompts", "encoder-decoder models decode one row");
        }
        _outputs = new OrtValue[engine.OutputNames.Length];
        _prefillOutputs = engine.NextTokenOutput ? new OrtValue[engine.PrefillOutputNames.Length] : _outputs;
        _step = GC.AllocateArray<long>(2 * Batch, pinned: true);
        nint step = (nint)Unsafe.AsPointer(ref _step[0]);
        _stepIds = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Int64, [Batch, 1], step, Batch * sizeof(long));
        _stepPositions = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Int64, [Batch, 1], step + Batch * sizeof(long), Batch * sizeof(long));
        if (Batch > 1)
        {
            _mask = (long*)NativeMemory.Alloc((nuint)(Batch * (long)capacity), sizeof(long));
            _maskViews = new OrtValue?[capacity + 1];
        }
        if (decoder.SharedCache)
        {
            nint lengths = (nint)Unsafe.AsPointer(ref _lengths[0]);
            _seqlens = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Int32, [Batch], lengths, Batch * sizeof(int));
            _total = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Int32, [], lengths + Batch * sizeof(int), sizeof(int));
        }
        bool deviceCross = decoder.HasCrossAttention && engine.Device is not null;
        _cache = engine.RentCache(Batch, capacity, deviceCross ? encoder!.Length : 0);
        _device = _cache.Step;
        _stepLogits = _cache.StepLogits;
        _stepLogitsValue = _cache.StepLogitsValue;
        if (engine.NextTokenOutput) _outputs[^1] = _device?.NextToken ?? _cache.NextTokensValue!;   // bound once, like the cache
        if (_cache.Head is { } head)   // the sampling head's inputs: the last ones, bound once (on the device under CUDA)
            for (int i = 0; i < head.Values.Count; i++) _inputs[_inputs.Length - head.Values.Count + i] = head.Values[i];
        if (decoder.HasCrossAttention)
        {
            // Cross K/V and the encoder mask stay bound, unchanged, for every step: on the device, copied
            // once into the cache's fixed buffers; on the host, the encoder's own tensors (fp16 copies for fp16 graphs).
            int c = 3 + 2 * decoder.NumLayers;
            if (deviceCross) _crossToLoad = encoder;   // copied in Prefill, where a failure disposes this state
            for (int l = 0; l < decoder.NumLayers; l++)
                for (int kv = 0; kv < 2; kv++)
                    _inputs[c + 2 * l + kv] = deviceCross ? _cache.Cross(l, kv) : encoder!.Cross(l, kv, engine.KvType);
            _inputs[c + 2 * decoder.NumLayers] = deviceCross ? _cache.CrossMask : encoder!.Mask;
        }
        if (_device is not null && engine.CudaGraph)
        {
            _runOptions.AddRunConfigEntry("gpu_graph_id", _cache.GraphId.ToString());   // decode steps replay this cache's graph
            _prefillRunOptions = new RunOptions();
            _prefillRunOptions.AddRunConfigEntry("gpu_graph_id", "-1");                   // prefill runs uncaptured
            if (engine.GreedyOutputNames is not null)
            {
                _greedyRunOptions = new RunOptions();
                _greedyRunOptions.AddRunConfigEntry("gpu_graph_id", (_cache.GraphId + GreedyGraphOffset).ToString());
            }
        }
        _cache.Reset();
        _cache.Head?.Configure(SamplingOptions.Greedy, 1f, guided: false, null, []);   // a pooled cache forgets the last request's choice
        Prompts = prompts;
    }

    private IReadOnlyList<IReadOnlyList<int>> Prompts { get; }

    /// <summary>Runs the prompts: [B, S], left-padded (concat graphs) or right-padded (shared cache).</summary>
    public void Prefill(CancellationToken ct)
    {
        if (_crossToLoad is not null)
        {
            _cache.LoadCross(_crossToLoad);
            _crossToLoad = null;
        }
        int s = Prompts.Max(p => p.Count), v = _d.VocabSize;
        var ids = new long[Batch * s];
        var pos = new long[Batch * s];
        for (int r = 0; r < Batch; r++)
            for (int i = 0; i < s; i++)
            {
                int k = i - _pads[r];
                ids[r * s + i] = k >= 0 && k < Prompts[r].Count ? Prompts[r][k] : 0;
                pos[r * s + i] = Math.Max(k, 0) + _d.PositionOffset;
            }
        // Uninitialised and pinned: [B, S, vocab] is hundreds of MB for a 1k-token multimodal prompt, and
        // zeroing it or copying it through pageable memory would show up in the time to first token.
        int rows = _d.LastLogitsOnly ? 1 : s;
        _prefillLogits = rows == 1 ? _cache.LastLogits : GC.AllocateUninitializedArray<float>(Batch * rows * v, pinned: true);
        using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, [Batch, s]);
        using var posValue = OrtValue.CreateTensorValueFromMemory(pos, [Batch, s]);
        using var logits = OrtValue.CreateTensorValueFromMemory(_prefillLogits, [Batch, rows, v]);
        Run(idsValue, posValue, logits, s, ct, _prefillRunOptions ?? _runOptions, prefill: true, session: _e.PrefillSession);
    }

    /// <summary>[vocab] logits for the next token of <paramref name="row"/> (mutable: processors work in place).</summary>
    public Span<float> Logits(int row)
    {
        int v = _d.VocabSize;
        if (_stepped) return _stepLogits.AsSpan(row * v, v);
        int s = _prefillLogits.Length / (Batch * v);
        int last = _d.LastLogitsOnly ? 0 : _d.SharedCache ? _rowLength[row] - 1 : s - 1;   // right padding: the row's own last token
        return _prefillLogits.AsSpan((row * s + last) * v, v);
    }

    /// <summary>Keeps row 0's prefill logits as the graph gave them (processors later change
    /// <see cref="Logits"/> in place) in the cache's buffer: <see cref="PrefillRow"/>.</summary>
    public void KeepPrefillRow() => Logits(0).CopyTo(_cache.PrefillRow);

    public ReadOnlySpan<float> PrefillRow => _cache.PrefillRow;

    /// <summary>The prompt's logits of a single-row state: [S * vocab], or [vocab] for a graph with last-position logits.</summary>
    public ReadOnlySpan<float> AllPrefillLogits => _prefillLogits;

    /// <summary>The sampling head's inputs of this state's cache (graphs with a head), else null.</summary>
    public SamplingHeadInputs? Head => _cache.Head;

    /// <summary>A decode step has run (<see cref="Logits"/> and <see cref="GraphToken"/> are the step's, not the prompt's).</summary>
    public bool Stepped => _stepped;

    /// <summary>The graph's greedy choice for <paramref name="row"/> after a step (its next_token output).</summary>
    /// <exception cref="InferenceException">The graph gave a token outside the vocabulary.</exception>
    public int GraphToken(int row)
    {
        if (!_stepped || _cache.NextTokens is null) throw new InvalidOperationException("no decode step with a next_token output has run");
        long token = _cache.NextTokens[row];
        if ((ulong)token >= (ulong)_d.VocabSize)
            throw new InferenceException("decoder.onnx", $"next_token {token} of row {row} is outside the vocabulary of {_d.VocabSize}");
        return (int)token;
    }

    /// <summary>Appends one token per row and runs the decoder on them.</summary>
    /// <param name="readLogits">False: on the device, bring back only the graph's next_token (8 bytes a row), not the
    /// logits; <see cref="Logits"/> is then stale until the next step that reads them. Needs a next_token output.</param>
    /// <param name="greedyHead">A greedy choice by the sampling head: bind its greedy output (into the same buffer)
    /// instead of next_token, so only the mix, mask, penalty and ArgMax run (packages whose head has one).</param>
    public void Step(ReadOnlySpan<int> tokens, CancellationToken ct, bool readLogits = true, bool greedyHead = false)
    {
        if (!readLogits && !_e.NextTokenOutput) throw new InvalidOperationException("the graph has no bound next_token output");
        _greedyStep = greedyHead && _e.GreedyOutputNames is not null;
        for (int r = 0; r < Batch; r++)
        {
            _step[r] = tokens[r];                        // input_ids [B,1]
            _step[Batch + r] = Length - _pads[r] + _d.PositionOffset;   // position_ids [B,1]
        }
        if (_device is null)
        {
            Run(_stepIds, _stepPositions, _stepLogitsValue, 1, ct, _runOptions);
        }
        else
        {
            Run(_device.Ids, _stepPositions, _device.Logits, 1, ct, _runOptions, onDevice: true);
            if (readLogits)   // logits: device -> host, [B * vocab] floats
                Runtime.CudaRuntime.ToHost((nint)Unsafe.AsPointer(ref _stepLogits[0]), _device.LogitsAddress, _stepLogits.Length * sizeof(float));
            else              // the graph's choice: device -> host, 8 bytes a row
                Runtime.CudaRuntime.ToHost((nint)Unsafe.AsPointer(ref _cache.NextTokens![0]), _device.NextTokenAddress, Batch * sizeof(long));
        }
        _stepped = true;
    }

    /// <param name="prefill">A prompt run: binds the outputs without next_token.</param>
    /// <param name="session">The prefill decoder for the prompt, if the package has one; else the decoder.</param>
    private void Run(OrtValue ids, OrtValue positions, OrtValue logits, int newTokens, CancellationToken ct, RunOptions runOptions,
                     bool onDevice = false, bool prefill = false, InferenceSession? session = null)
    {
        int past = Length, total = Length + newTokens;
        var outputs = prefill ? _prefillOutputs : _outputs;
        var outputNames = prefill ? _e.PrefillOutputNames : _greedyStep ? _e.GreedyOutputNames! : _e.OutputNames;
        if (_greedyStep && !prefill) runOptions = _greedyRunOptions ?? runOptions;
        _inputs[0] = ids;
        outputs[0] = logits;
        if (onDevice)   // the step's tokens: host -> device, 8 bytes a row
            Runtime.CudaRuntime.ToDevice(_device!.IdsAddress, (nint)Unsafe.AsPointer(ref _step[0]), Batch * sizeof(long));
        if (_cache.Shared)
        {
            int appended = past == 0 ? 0 : newTokens;   // prefill: _rowLength already counts the prompt
            for (int r = 0; r < Batch; r++)
                _lengths[r] = _rowLength[r] + appended - 1;   // seqlens_k [B]: the row's valid tokens after this run, minus one
            // total_sequence_length []: under a captured CUDA graph it stays at the capacity, so every
            // replay sees the same host value; the kernels take the real length from seqlens_k.
            _lengths[Batch] = onDevice && _e.CudaGraph ? _cache.Capacity : total;
            _inputs[1] = onDevice ? _device!.Seqlens : _seqlens!;
            _inputs[2] = _total!;
            if (onDevice)   // seqlens_k: host -> device, 4 bytes a row
                Runtime.CudaRuntime.ToDevice(_device!.SeqlensAddress, (nint)Unsafe.AsPointer(ref _lengths[0]), Batch * sizeof(int));
            for (int l = 0; l < _d.NumLayers; l++)
                for (int kv = 0; kv < 2; kv++)
                    _inputs[3 + 2 * l + kv] = outputs[1 + 2 * l + kv] = _cache.Whole(l, kv);   // [B, kvH, capacity, hd], appended in place
        }
        else
        {
            _inputs[1] = Batch == 1 ? _e.Mask(total) : Mask(total);
            _inputs[2] = positions;
            for (int l = 0; l < _d.NumLayers; l++)
            {
                for (int kv = 0; kv < 2; kv++)
                {
                    _inputs[3 + 2 * l + kv] = _cache.Past(l, kv, past);       // [B, kvH, past, hd]
                    outputs[1 + 2 * l + kv] = _cache.Present(l, kv, total);   // [B, kvH, total, hd]
                }
            }
        }
        using (ct.Register(static o => ((RunOptions)o!).Terminate = true, runOptions))
        {
            try
            {
                if (session is not null)   // a separate, never-captured session
                    session.Run(runOptions, _e.InputNames, _inputs, outputNames, outputs);
                else if (_e.CudaGraph)
                    lock (_e.GraphLock) _e.Session.Run(runOptions, _e.InputNames, _inputs, outputNames, outputs);   // capture and replay one at a time
                else
                    _e.Session.Run(runOptions, _e.InputNames, _inputs, outputNames, outputs);
            }
            catch (OnnxRuntimeException e)
            {
                runOptions.Terminate = false;
                ct.ThrowIfCancellationRequested();
                throw new InferenceException("decoder.onnx", e.Message, e);
            }
        }
        if (!_cache.Shared) _cache.Swap();
        if (past > 0) for (int r = 0; r < Batch; r++) _rowLength[r] += newTokens;
        Length = total;
        ct.ThrowIfCancellationRequested();
    }

    /// <summary>attention_mask [B, total]: row r is pads[r] zeros, then ones.</summary>
    private OrtValue Mask(int total)
    {
        for (int r = 0; r < Batch; r++)
        {
            var row = new Span<long>(_mask + (long)r * total, total);
            row[.._pads[r]].Clear();
            row[_pads[r]..].Fill(1);
        }
        return _maskViews![total] ??= OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Int64,
            [Batch, total], (nint)_mask, (long)Batch * total * sizeof(long));
    }

    public void Dispose()
    {
        _e.ReturnCache(_cache);
        _stepIds.Dispose();
        _stepPositions.Dispose();
        _seqlens?.Dispose();
        _total?.Dispose();
        _prefillRunOptions?.Dispose();
        _greedyRunOptions?.Dispose();
        if (_maskViews is not null)
        {
            foreach (var v in _maskViews) v?.Dispose();
            NativeMemory.Free(_mask);
        }
        _runOptions.Dispose();
    }
}
