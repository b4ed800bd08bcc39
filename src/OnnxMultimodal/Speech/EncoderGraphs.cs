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
    private readonly string _file, _batchDimension, _framesDimension;
    private readonly Dictionary<int, long[][]> _seen = [];   // frames -> output shapes of a plain run
    private readonly Dictionary<int, Slot> _slots = [];
    private readonly Lock _lock = new();
    private readonly Lock _run = new();

    private EncoderGraphs(string path, ExecutionOptions execution, string[] inputs, string[] outputs, TensorElementType[] outputTypes,
                          string batchDimension, string framesDimension)
    {
        (_path, _execution, _inputs, _outputs, _outputTypes) = (path, execution, inputs, outputs, outputTypes);
        (_batchDimension, _framesDimension, _file) = (batchDimension, framesDimension, Path.GetFileName(path));
    }

    /// <summary>Graphs captured so far (tests, the benchmark).</summary>
    public int Captured { get; private set; }

    /// <summary>Requests answered by replaying a captured graph (tests, the benchmark).</summary>
    public int Replays { get; private set; }

    /// <summary>Why capture was given up (the first refused session or failed captured run), or null: from then on every
    /// request runs plain.</summary>
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
        var dims = plain.InputDimensionNames(inputs[0]);   // [batch, frames, feature]: "" where a dimension is fixed
        return new EncoderGraphs(path, execution with { CudaGraph = true, Providers = [ExecutionProviderKind.Cuda] }, inputs, outputs,
                                 outputs.Select(plain.OutputType).ToArray(), dims.Count > 0 ? dims[0] : "", dims.Count > 1 ? dims[1] : "");
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
    /// capturing it on first use; null where this length was not seen yet, its slot is leased,
    /// <see cref="MaxGraphs"/> lengths are taken or capture failed (the caller then runs plain). Returns the outputs in
    /// graph order: the states copied to the host, the cross K/V in the slot's device buffers.</summary>
    public IDisposableReadOnlyCollection<OrtValue>? TryRun(float[] features, int frames, int featureDim, CancellationToken ct)
    {
        Slot? slot;
        lock (_lock)
        {
            if (Failure is not null) return null;
            if (!_slots.TryGetValue(frames, out slot))
            {
                if (!_seen.TryGetValue(frames, out var shapes) || _slots.Count >= MaxGraphs) return null;
                try
                {
                    slot = new Slot(this, frames, featureDim, shapes);
                }
                catch (Exception e) when (e is OnnxRuntimeException or InferenceException)   // device memory refused
                {
                    Failure = $"buffers for {frames} frames: {e.Message}";
                    return null;
                }
                catch (Exception e) when (e is ModelPackageException or ExecutionProviderException)   // the capture session refused
                {
                    Failure = $"the capture session for {frames} frames: {e.Message}";
                    return null;
                }
                _slots[frames] = slot;
            }
            if (slot.Leased) return null;
            slot.Leased = true;
        }
        try
        {
            return slot.Run(features, ct);
        }
        catch (InferenceException e)   // capture refused at run time: answer this request and the next ones plain
        {
            Failure = e.Message;
            slot.Leased = false;
            return null;
        }
        catch
        {
            slot.Leased = false;
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var s in _slots.Values) s.Dispose();
    }

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
            var fixedDimensions = new Dictionary<string, long>();
            if (g._batchDimension.Length > 0) fixedDimensions[g._batchDimension] = 1;
            if (g._framesDimension.Length > 0) fixedDimensions[g._framesDimension] = frames;
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
                foreach (var d in made) d.Dispose();
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
            return new Lease([states, .. _outputs[1..]], () => { states.Dispose(); Leased = false; });
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
