using System.Runtime.CompilerServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace OnnxMultimodal.Generation;

/// <summary>
/// The sampling head's inputs for one pooled <see cref="KvCache"/> of B rows (see <see cref="SamplingHeadManifest"/>):
/// pinned host arrays, and on CUDA device tensors at addresses that live as long as the cache (a captured CUDA graph
/// replays them). A request configures them once (<see cref="Configure"/>: parameters, guidance rows, the constraint
/// mask, the prompt's ids); each step writes only B uniforms and, with a repetition penalty, one seen flag a row.
/// </summary>
internal sealed unsafe class SamplingHeadInputs : IDisposable
{
    private readonly int _batch, _vocab;
    private readonly Runtime.DeviceMemory? _device;
    private readonly float[] _params = GC.AllocateArray<float>(SamplingHeadManifest.ParamOrder.Length, pinned: true);   // [5]
    private readonly float[] _uniform;   // [B]
    private readonly long[] _rows;       // [B, 2]
    private readonly float[] _seen;      // [B, V]
    private readonly float[] _mask;      // [V]
    private readonly OrtValue[] _values; // bound to the graph: host views, or device tensors
    private readonly nint[] _addresses;  // device addresses by role (0 on the host)
    private bool _maskClear = true;      // the bound mask is all zeros
    private bool _seenClear = true;      // the bound seen flags are all zeros

    // what Configure chose, for Advance
    private bool _penalty, _sampled, _guided;

    public SamplingHeadInputs(int batch, int vocab, Runtime.DeviceMemory? device)
    {
        _batch = batch;
        _vocab = vocab;
        _device = device;
        _uniform = GC.AllocateArray<float>(batch, pinned: true);
        _rows = GC.AllocateArray<long>(2 * batch, pinned: true);
        _seen = GC.AllocateArray<float>(batch * vocab, pinned: true);
        _mask = GC.AllocateArray<float>(vocab, pinned: true);
        var shapes = new long[][] { [_params.Length], [batch], [batch, 2], [batch, vocab], [vocab] };
        var types = new[] { TensorElementType.Float, TensorElementType.Float, TensorElementType.Int64, TensorElementType.Float, TensorElementType.Float };
        _values = new OrtValue[shapes.Length];
        _addresses = new nint[shapes.Length];
        try
        {
            for (int i = 0; i < shapes.Length; i++)
            {
                if (device is null)
                {
                    _values[i] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, types[i], shapes[i], Host(i), Bytes(i));
                }
                else
                {
                    _values[i] = device.Tensor(types[i], shapes[i]);
                    _addresses[i] = Runtime.DeviceMemory.Address(_values[i]);
                    Runtime.CudaRuntime.Zero(_addresses[i], Bytes(i));
                }
            }
            Configure(SamplingOptions.Greedy, 1f, guided: false, null, []);
        }
        catch
        {
            // a device allocation refused part-way: free the tensors already made (the constructor never returns them)
            foreach (var v in _values) v?.Dispose();
            throw;
        }
    }

    /// <summary>The tensors to bind, in <see cref="SamplingHeadManifest.Roles"/> order.</summary>
    public IReadOnlyList<OrtValue> Values => _values;

    private nint Host(int role) => role switch
    {
        0 => (nint)Unsafe.AsPointer(ref _params[0]),
        1 => (nint)Unsafe.AsPointer(ref _uniform[0]),
        2 => (nint)Unsafe.AsPointer(ref _rows[0]),
        3 => (nint)Unsafe.AsPointer(ref _seen[0]),
        _ => (nint)Unsafe.AsPointer(ref _mask[0]),
    };

    private long Bytes(int role) => role switch
    {
        0 => _params.Length * sizeof(float),
        1 => _batch * sizeof(float),
        2 => 2L * _batch * sizeof(long),
        3 => (long)_batch * _vocab * sizeof(float),
        _ => (long)_vocab * sizeof(float),
    };

    private void Upload(int role, long offset = 0, long bytes = -1)
    {
        if (_device is null) return;   // the host arrays are what the graph reads
        Runtime.CudaRuntime.ToDevice(_addresses[role] + (nint)offset, Host(role) + (nint)offset, bytes < 0 ? Bytes(role) : bytes);
    }

    /// <summary>Sets a request's choice. <paramref name="guided"/>: every row gets u + s * (c - u) of row 0 (c) and
    /// row 1 (u), so all rows choose one token; else each row its own logits. <paramref name="seen"/>: the ids each
    /// row has seen so far (one list for all rows when guided), read only with a repetition penalty.</summary>
    /// <exception cref="InvalidInputException">An option the head cannot take (validated as the host sampler does).</exception>
    public void Configure(SamplingOptions sampling, float guidanceScale, bool guided, IReadOnlyList<ILogitsProcessor>? processors,
                          IReadOnlyList<IReadOnlyList<int>> seen)
    {
        sampling.Validate();
        if (!float.IsFinite(guidanceScale)) throw new InvalidInputException("GuidanceScale", $"must be a finite number (got {guidanceScale})");
        if (guided && _batch != 2) throw new InvalidInputException("guided", $"guidance mixes 2 rows; this state has {_batch}");
        (_penalty, _sampled, _guided) = (sampling.RepetitionPenalty != 1f, !sampling.IsGreedy, guided);
        _params[0] = sampling.Temperature;
        _params[1] = Math.Min(sampling.TopK, _vocab);
        _params[2] = sampling.TopP;
        _params[3] = sampling.RepetitionPenalty;
        _params[4] = guided ? guidanceScale : 1f;
        Upload(0);
        for (int r = 0; r < _batch; r++)
            (_rows[2 * r], _rows[2 * r + 1]) = guided ? (1L, 0L) : (r, r);   // (base, cond): guided u + s * (c - u)
        Upload(2);
        SetMask(processors);
        bool penalty = sampling.RepetitionPenalty != 1f;
        if (penalty || !_seenClear)
        {
            Array.Clear(_seen);
            for (int r = 0; penalty && r < _batch && seen.Count > 0; r++)
                foreach (int id in seen[guided ? 0 : Math.Min(r, seen.Count - 1)])
                    if ((uint)id < (uint)_vocab) _seen[r * _vocab + id] = 1f;
            _seenClear = !penalty;
            Upload(3);
        }
        Array.Clear(_uniform);
        Upload(1);
    }

    private void SetMask(IReadOnlyList<ILogitsProcessor>? processors)
    {
        bool any = processors is { Count: > 0 };
        if (!any && _maskClear) return;   // nothing to ban and nothing banned: no upload
        Array.Clear(_mask);
        foreach (var p in processors ?? [])
            ((IStaticLogitMask)p).FillMask(_mask);
        _maskClear = !any;
        Upload(4);
    }

    /// <summary>The inputs of the step after <paramref name="token"/>, as the request was configured: with a repetition
    /// penalty the token is seen (by both rows when guided: they choose one token together, else by row 0), and a
    /// sampled request gets the next uniform of <paramref name="sampler"/>'s stream, in the host's order.</summary>
    public void Advance(int token, Sampler sampler)
    {
        if (_penalty)
            for (int r = 0; r < (_guided ? _batch : 1); r++) MarkSeen(r, token);
        if (_sampled) SetUniform(sampler.DrawUniform());
    }

    /// <summary>The draw of each row for the next step (the same value for guided rows).</summary>
    public void SetUniform(double u)
    {
        // float32: the head compares in float32. Rounded down below 1: (float)u rounds u >= 1 - 2^-25 up to 1.0f, past
        // every cumulative sum.
        float f = Math.Min((float)u, MathF.BitDecrement(1f));
        for (int r = 0; r < _batch; r++) _uniform[r] = f;
        Upload(1);
    }

    /// <summary>Marks <paramref name="token"/> as seen by <paramref name="row"/> (repetition penalty).</summary>
    public void MarkSeen(int row, int token)
    {
        if ((uint)token >= (uint)_vocab || _seen[row * _vocab + token] == 1f) return;
        _seen[row * _vocab + token] = 1f;
        _seenClear = false;
        Upload(3, ((long)row * _vocab + token) * sizeof(float), sizeof(float));
    }

    public void Dispose()
    {
        foreach (var v in _values) v.Dispose();
    }
}
