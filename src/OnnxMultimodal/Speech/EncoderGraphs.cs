using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Speech;

/// <summary>
/// The speech encoder under CUDA-graph capture, one graph per exact frame count. The exported encoders
/// are not exact under padding (padded frames change every real encoder state: measured on the tiny
/// encoder, up to 3e-2 absolute at 4 padded frames and the last state by 2-3; see docs/benchmarks.md), so a
/// length is never rounded up to a bucket: the first request of a length runs plain and records its
/// output shapes, the second captures a graph for it over fixed device buffers, later ones replay it. Requests of the
/// same length (a benchmark, a fixed-length stream, a client padding its audio to a few lengths itself) skip the
/// ~1,200 kernel launches of a large encoder.
/// Each length has a session of its own, created at its second request with the batch and frame dimensions fixed
/// (free-dimension overrides): ONNX Runtime then folds the encoder's shape arithmetic, which it would otherwise run on
/// the CPU and so refuse to capture (docs/benchmarks.md). So each length holds the encoder's weights once more on the
/// device, and its second request pays for creating the session.
/// The cross K/V stay in the slot's device buffers, leased to the request until its
/// <see cref="EncoderStates"/> are disposed; a request that finds its length's slot leased runs plain.
/// </summary>
internal sealed class EncoderGraphs : IDisposable
{
    /// <summary>Most lengths with a graph of their own (each holds a session with the encoder's weights, its outputs and
    /// ONNX Runtime's capture).</summary>
    public const int MaxGraphs = 4;
    private const int MaxSeenLengths = 256;

    private readonly string _path;
    private readonly ExecutionOptions _execution;
    private readonly string[] _inputs, _outputs;
    private readonly TensorElementType[] _outputTypes;
    private readonly string _file;
    private readonly string[] _batchDimensions, _framesDimensions;   // the inputs' symbolic names of each
    private readonly Dictionary<int, long[][]> _seen = [];   // frames -> output shapes of a plain run
    private readonly Dictionary<int, Slot> _slots = [];
    private readonly HashSet<int> _creating = [];   // lengths whose session is being made (outside _lock)
    private bool _closed;   // a session or its buffers were refused: no new lengths
    private bool _off;      // a captured run failed: every request runs plain
    private readonly Lock _lock = new();
    private readonly Lock _run = new();

    private EncoderGraphs(string path, ExecutionOptions execution, string[] inputs, string[] outputs, TensorElementType[] outputTypes,
                          string[] batchDimensions, string[] framesDimensions)
    {
        (_path, _execution, _inputs, _outputs, _outputTypes) = (path, execution, inputs, outputs, outputTypes);
        (_batchDimensions, _framesDimensions, _file) = (batchDimensions, framesDimensions, Path.GetFileName(path));
    }

    /// <summary>Graphs captured so far (tests, the benchmark).</summary>
    public int Captured { get; private set; }

    /// <summary>Requests answered by replaying a captured graph (tests, the benchmark).</summary>
    public int Replays { get; private set; }

    /// <summary>The first failure, or null: a refused session (or its buffers) stops new lengths, while those captured
    /// keep replaying; a failed captured run sends every request plain.</summary>
    public string? Failure { get; private set; }

    /// <summary>Capture for the encoder <paramref name="plain"/> runs (its graph at <paramref name="path"/>) on CUDA, or null
    /// with the reason where it cannot be captured (not CUDA, a non-float features input or states output).</summary>
    public static EncoderGraphs? TryCreate(string path, ExecutionOptions execution, GraphSession plain, out string? reason)
    {
        reason = null;
        if (execution.Providers.FirstOrDefault() is not ExecutionProviderKind.Cuda)
        {
            reason = "the first provider is not CUDA";
            return null;
        }
        string[] inputs = [.. plain.Inputs], outputs = [.. plain.Outputs];
        if (plain.InputType(inputs[0]) != TensorElementType.Float || plain.OutputType(outputs[0]) != TensorElementType.Float)
        {
            reason = "the features input or the states output is not float32";
            return null;
        }
        // Features [batch, frames, feature] and mask [batch, frames]: the symbolic names their sessions fix per length ("" where
        // a dimension is fixed already). Without a named frame dimension no session could fix it.
        var dims = inputs.Take(2).Select(plain.InputDimensionNames).ToArray();
        string[] Named(int axis) => dims.Where(d => d.Count > axis && d[axis].Length > 0).Select(d => d[axis]).Distinct().ToArray();
        string[] batch = Named(0), frames = Named(1);
        if (dims[0].Count < 2 || dims[0][1].Length == 0)
        {
            reason = $"the features input's frame dimension has no symbolic name ({string.Join(", ", dims[0].Select(d => d.Length > 0 ? d : "?"))}), so a session cannot fix it per length";
            return null;
        }
        if (batch.Intersect(frames).Any())
        {
            reason = $"the inputs name the batch and frame dimensions alike ({string.Join(", ", batch.Intersect(frames))})";
            return null;
        }
        return new EncoderGraphs(path, execution with { CudaGraph = true, Providers = [ExecutionProviderKind.Cuda] }, inputs, outputs,
                                 outputs.Select(plain.OutputType).ToArray(), batch, frames);
    }

    /// <summary>Records the output shapes of a plain run of <paramref name="frames"/> frames: the next
    /// request of that length is captured.</summary>
    public void Saw(int frames, IReadOnlyList<OrtValue> outputs)
    {
        lock (_lock)
        {
            if (_seen.Count >= MaxSeenLengths) _seen.Clear();
            _seen[frames] = outputs.Select(o => o.GetTensorTypeAndShape().Shape).ToArray();
        }
    }

    /// <summary>Runs <paramref name="features"/> ([frames * featureDim]) through this length's graph,
    /// capturing it on first use; null where this length was not seen yet, its slot is leased or being created,
    /// <see cref="MaxGraphs"/> lengths are taken, a capture failed, or a session could not be made (the caller then runs
    /// plain). Returns the outputs in graph order: the states copied to the host, the cross K/V in the slot's device
    /// buffers.</summary>
    public IDisposableReadOnlyCollection<OrtValue>? TryRun(float[] features, int frames, int featureDim, CancellationToken ct)
    {
        Slot? slot;
        long[][]? shapes = null;
        lock (_lock)
        {
            if (_off) return null;
            if (!_slots.TryGetValue(frames, out slot))
            {
                if (_closed || _creating.Contains(frames) || _slots.Count + _creating.Count >= MaxGraphs ||
                    !_seen.TryGetValue(frames, out shapes)) return null;
                _creating.Add(frames);   // counts toward MaxGraphs; other requests of this length run plain meanwhile
            }
            else if (slot.Leased) return null;
            else slot.Leased = true;
        }
        if (slot is null)
        {
            // The session is made outside _lock (seconds for a large encoder: plain runs and Saw go on), but under _run:
            // no capture of another length may overlap its allocations (ONNX Runtime captures in global mode).
            string? failure = null;
            try
            {
                ct.ThrowIfCancellationRequested();
                lock (_run) slot = new Slot(this, frames, featureDim, shapes!);
            }
            catch (Exception e) when (e is OnnxRuntimeException or InferenceException)   // device memory refused
            {
                failure = $"buffers for {frames} frames: {e.Message}";
            }
            catch (Exception e) when (e is ModelPackageException or ExecutionProviderException)   // the capture session refused
            {
                failure = $"the capture session for {frames} frames: {e.Message}";
            }
            finally
            {
                lock (_lock)
                {
                    _creating.Remove(frames);
                    if (slot is not null)
                    {
                        _slots[frames] = slot;
                        slot.Leased = true;
                    }
                    else if (failure is not null)
                    {
                        Failure ??= failure;
                        _closed = true;   // no new lengths; those captured keep replaying
                    }
                }
            }
            if (slot is null) return null;
        }
        try
        {
            return slot.Run(features, ct);
        }
        catch (InferenceException e)   // capture refused at run time: answer this request and the next ones plain
        {
            lock (_lock)
            {
                Failure ??= e.Message;
                _off = true;
                slot.Leased = false;
            }
            return null;
        }
        catch
        {
            lock (_lock) slot.Leased = false;
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var s in _slots.Values) s.Dispose();
    }

    /// <summary>The free-dimension overrides of a session for <paramref name="frames"/> frames: batch 1, that frame count.</summary>
    internal static Dictionary<string, long> FixedDimensions(IEnumerable<string> batch, IEnumerable<string> frameNames, int frames)
    {
        var fixedDimensions = new Dictionary<string, long>();
        foreach (string b in batch) fixedDimensions[b] = 1;
        foreach (string f in frameNames) fixedDimensions[f] = frames;
        return fixedDimensions;
    }

    /// <summary>The overrides a length's session gets (tests).</summary>
    internal Dictionary<string, long> FixedDimensionsFor(int frames) => FixedDimensions(_batchDimensions, _framesDimensions, frames);

    /// <summary>One length's session (its dimensions fixed), fixed device buffers and binding.</summary>
    private sealed class Slot : IDisposable
    {
        private readonly EncoderGraphs _g;
        private readonly InferenceSession _session;
        private readonly DeviceMemory _memory;
        private readonly OrtValue _features, _mask;
        private readonly OrtValue[] _outputs;
        private readonly OrtIoBinding _binding;
        private readonly RunOptions _runOptions = new();
        private readonly float[] _states;   // pinned host copy of output 0
        private readonly long[] _statesShape;
        private bool _captured;

        public bool Leased;

        public Slot(EncoderGraphs g, int frames, int featureDim, long[][] shapes)
        {
            _g = g;
            var fixedDimensions = FixedDimensions(g._batchDimensions, g._framesDimensions, frames);
            try
            {
                (_session, _) = SessionFactory.CreateChecked(g._path, g._execution, g._inputs, g._outputs, fixedDimensions: fixedDimensions);
            }
            catch
            {
                _runOptions.Dispose();
                throw;
            }
            var made = new List<IDisposable> { _session };   // freed if anything is refused part-way
            try
            {
                _memory = new DeviceMemory(_session, g._execution.DeviceId);
                made.Add(_memory);
                _features = _memory.Tensor(TensorElementType.Float, [1, frames, featureDim]);
                made.Add(_features);
                _mask = _memory.Tensor(TensorElementType.Int64, [1, frames]);
                made.Add(_mask);
                var ones = new long[frames];
                Array.Fill(ones, 1L);
                unsafe
                {
                    fixed (long* p = ones) CudaRuntime.ToDevice(DeviceMemory.Address(_mask), (nint)p, frames * sizeof(long));
                }
                _outputs = new OrtValue[shapes.Length];
                for (int i = 0; i < shapes.Length; i++)
                {
                    _outputs[i] = _memory.Tensor(g._outputTypes[i], shapes[i]);
                    made.Add(_outputs[i]);
                }
                _statesShape = shapes[0];
                _states = GC.AllocateUninitializedArray<float>((int)_statesShape.Aggregate(1L, (a, b) => a * b), pinned: true);
                _binding = _session.CreateIoBinding();
                made.Add(_binding);
                _binding.BindInput(g._inputs[0], _features);
                _binding.BindInput(g._inputs[1], _mask);
                for (int i = 0; i < _outputs.Length; i++) _binding.BindOutput(g._outputs[i], _outputs[i]);
            }
            catch
            {
                for (int i = made.Count - 1; i >= 0; i--) made[i].Dispose();   // tensors and binding before their allocator and session
                _runOptions.Dispose();
                throw;
            }
            _runOptions.AddRunConfigEntry("gpu_graph_id", "0");   // the session's only graph
        }

        public unsafe IDisposableReadOnlyCollection<OrtValue> Run(float[] features, CancellationToken ct)
        {
            long bytes = (long)features.Length * sizeof(float);
            if (bytes != _features.GetTensorTypeAndShape().ElementCount * sizeof(float))
                throw new InvalidInputException("features", $"{features.Length} values do not fill this graph's input");
            ct.ThrowIfCancellationRequested();
            lock (_g._run)   // capture and replay one at a time
            {
                fixed (float* p = features) CudaRuntime.ToDevice(DeviceMemory.Address(_features), (nint)p, bytes);
                try
                {
                    _session.RunWithBinding(_runOptions, _binding);
                }
                catch (OnnxRuntimeException e)
                {
                    throw new InferenceException(_g._file, $"captured encoder run: {e.Message}", e);
                }
                fixed (float* p = _states) CudaRuntime.ToHost((nint)p, DeviceMemory.Address(_outputs[0]), (long)_states.Length * sizeof(float));
                if (_captured) _g.Replays++;
                else { _captured = true; _g.Captured++; }
            }
            var states = OrtValue.CreateTensorValueFromMemory(_states, _statesShape);
            return new Lease([states, .. _outputs[1..]], () => { states.Dispose(); lock (_g._lock) Leased = false; });
        }

        public void Dispose()
        {
            _binding.Dispose();
            _runOptions.Dispose();
            foreach (var o in _outputs) o.Dispose();
            _features.Dispose();
            _mask.Dispose();
            _memory.Dispose();
            _session.Dispose();
        }
    }

    /// <summary>Outputs whose disposal returns the slot instead of freeing its device buffers.</summary>
    private sealed class Lease(IReadOnlyList<OrtValue> values, Action release) : IDisposableReadOnlyCollection<OrtValue>
    {
        private Action? _release = release;
        public OrtValue this[int index] => values[index];
        public int Count => values.Count;
        public IEnumerator<OrtValue> GetEnumerator() => values.GetEnumerator();
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
        public void Dispose() => Interlocked.Exchange(ref _release, null)?.Invoke();
    }
}
