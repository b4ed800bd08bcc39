using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace OnnxMultimodal.Generation;

/// <summary>
/// A preallocated KV cache, pooled by the engine across requests, on the host or on the session's
/// device. Two layouts:
/// <list type="bullet">
/// <item>concat graphs (present = past ++ new): each layer's key and value own two buffers of
/// [batch, kvHeads, capacity, headDim]; one holds the past, the graph writes the present straight into
/// the other, and they swap roles after each step. Views are created once per length and kept.</item>
/// <item>shared graphs (GroupQueryAttention): one buffer per layer key/value, bound as both past and
/// present; the graph appends in place and <c>seqlens_k</c> says how much of it is valid.</item>
/// </list>
/// Encoder-decoder graphs on the device also get each layer's cross-attention K/V
/// [batch, heads, crossCapacity, hd] and the encoder mask [batch, crossCapacity] here: a request's
/// encoder output is copied into their head once and the rest is masked, so every request binds the
/// same addresses and shapes (a captured CUDA graph replays them) and no step copies them again.
/// A warm cache runs a step without allocating anything, native or managed.
/// </summary>
internal sealed unsafe class KvCache : IDisposable
{
    private readonly int _layers, _kvHeads, _headDim, _elementSize;
    private readonly TensorElementType _type;
    public int Batch { get; }
    public bool Shared { get; }
    private readonly nint[] _buffers;          // [half * layers * 2 + layer * 2 + kv], each capacity floats * kvHeads * headDim
    private readonly OrtValue?[][] _views;     // per buffer, per length 0..capacity
    private int _pastHalf;

    public int Capacity { get; }

    private readonly Runtime.DeviceMemory? _device;
    private readonly List<nint> _pageLocked = [];   // host buffers registered with CUDA (unregistered on Dispose)
    private readonly OrtValue?[] _deviceBuffers;

    /// <summary>Device-resident decode: the step inputs and logits, at addresses that live as long as the
    /// cache, so a CUDA graph captured with this cache can be replayed by every later request that rents it.</summary>
    /// <param name="NextToken">[batch, 1] int64 the graph's next_token output is bound to (graphs that give one), else null.</param>
    public sealed record DeviceStep(OrtValue Ids, OrtValue Seqlens, OrtValue Logits, nint IdsAddress, nint SeqlensAddress, nint LogitsAddress,
                                    OrtValue? NextToken = null, nint NextTokenAddress = 0);

    public DeviceStep? Step { get; }

    /// <summary>The CUDA graph id this cache's decode steps are captured under (0: none).</summary>
    public int GraphId { get; }

    /// <summary>Encoder frames the cross K/V buffers hold (0: no cross-attention buffers).</summary>
    public int CrossCapacity { get; }
    private readonly int _crossHeads;
    private readonly (OrtValue Owner, nint Address)[] _cross = [];   // [layer * 2 + kv]
    private readonly OrtValue?[] _crossViews = [];
    private readonly OrtValue? _crossMask;                         // [batch, crossCapacity] int64 on the device
    private readonly nint _crossMaskAddress;
    private readonly long[] _crossMaskHost = [];                     // pinned staging row
    private Half[] _crossStaging = [];                               // fp16 graphs fed an fp32 encoder's host output: the request's cross K/V converted here, then copied

    /// <summary>Host buffers a request uses and gives back with the cache, so that a warm request
    /// allocates no large arrays (each would be a large-object or pinned allocation, and their churn
    /// brings blocking full collections): the step logits [batch * vocab] (pinned, with its
    /// [batch, 1, vocab] view), the prefill logits of a last-position-logits graph [batch * vocab]
    /// (pinned), and a single-row request's prefill logits as the graph gave them [vocab].</summary>
    public float[] StepLogits { get; }
    public OrtValue StepLogitsValue { get; }
    public float[] LastLogits { get; }
    public float[] PrefillRow { get; }
    /// <summary>The graph's token choice per row ([batch], pinned) and its [batch, 1] view; null unless the cache was
    /// made for a graph with a next_token output.</summary>
    public long[]? NextTokens { get; }
    public OrtValue? NextTokensValue { get; }
    /// <summary>The sampling head's inputs (graphs converted with <c>--device-sampling</c>), else null.</summary>
    public SamplingHeadInputs? Head { get; }

    public KvCache(int batch, int layers, int kvHeads, int headDim, int capacity, bool shared = false, TensorElementType type = TensorElementType.Float,
                   Runtime.DeviceMemory? device = null, int vocabulary = 0, int graphId = 0, int crossHeads = 0, int crossCapacity = 0,
                   bool nextToken = false, bool samplingHead = false)
    {
        _device = device;
        GraphId = graphId;
        if (crossCapacity > 0)
        {
            if (device is null) throw new InvalidOperationException("cross-attention buffers live on the device");
            if (batch != 1) throw new InvalidOperationException("encoder-decoder graphs decode one row");
            CrossCapacity = crossCapacity;
            _crossHeads = crossHeads;
            long crossBytes = (long)batch * crossHeads * crossCapacity * headDim * (type == TensorElementType.Float16 ? 2 : 4);
            _cross = new (OrtValue, nint)[layers * 2];
            _crossViews = new OrtValue?[layers * 2];
            for (int i = 0; i < _cross.Length; i++)
            {
                _cross[i] = device.Allocate(crossBytes);
                Runtime.CudaRuntime.Zero(_cross[i].Address, crossBytes);   // padding stays finite: masked scores times zero
            }
            _crossMask = device.Tensor(TensorElementType.Int64, [batch, crossCapacity]);
            _crossMaskAddress = Runtime.DeviceMemory.Address(_crossMask);
            _crossMaskHost = GC.AllocateArray<long>(crossCapacity, pinned: true);
        }
        StepLogits = GC.AllocateArray<float>(batch * vocabulary, pinned: true);
        StepLogitsValue = OrtValue.CreateTensorValueFromMemory(StepLogits, [batch, 1, vocabulary]);
        LastLogits = GC.AllocateUninitializedArray<float>(batch * vocabulary, pinned: true);
        // The logits come back every step: page-locked, the copy skips the driver's staging buffer. (Arrays
        // next to each other on the pinned heap can share a page; CUDA refuses a range overlapping one it
        // already holds, and that buffer stays pageable.)
        // OMM_PAGEABLE_LOGITS=1 leaves them pageable (the before of the benchmark's comparison).
        if (device is not null && Environment.GetEnvironmentVariable("OMM_PAGEABLE_LOGITS") != "1")
            foreach (var a in new[] { StepLogits, LastLogits })
            {
                nint address = (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref a[0]);
                if (Runtime.CudaRuntime.TryPageLock(address, (long)a.Length * sizeof(float))) _pageLocked.Add(address);
            }
        PrefillRow = new float[vocabulary];
        if (nextToken)
        {
            NextTokens = GC.AllocateArray<long>(batch, pinned: true);
            NextTokensValue = OrtValue.CreateTensorValueFromMemory(NextTokens, [batch, 1]);
        }
        if (samplingHead) Head = new SamplingHeadInputs(batch, vocabulary, device);
        if (device is not null)
        {
            var ids = device.Tensor(TensorElementType.Int64, [batch, 1]);
            var seqlens = device.Tensor(TensorElementType.Int32, [batch]);
            var logits = device.Tensor(TensorElementType.Float, [batch, 1, vocabulary]);
            var next = nextToken ? device.Tensor(TensorElementType.Int64, [batch, 1]) : null;
            Step = new DeviceStep(ids, seqlens, logits, Runtime.DeviceMemory.Address(ids), Runtime.DeviceMemory.Address(seqlens), Runtime.DeviceMemory.Address(logits),
                                  next, next is null ? 0 : Runtime.DeviceMemory.Address(next));
        }
        Batch = batch;
        Shared = shared;
        _type = type;
        _elementSize = type == TensorElementType.Float16 ? 2 : 4;
        _layers = layers;
        _kvHeads = kvHeads;
        _headDim = headDim;
        Capacity = capacity;
        int count = (shared ? 1 : 2) * layers * 2;
        _buffers = new nint[count];
        _deviceBuffers = new OrtValue?[count];
        _views = new OrtValue?[count][];
        nuint bytes = (nuint)((long)batch * kvHeads * capacity * headDim * _elementSize);
        for (int i = 0; i < count; i++)
        {
            if (device is null) _buffers[i] = (nint)NativeMemory.AlignedAlloc(bytes, 64);
            else (_deviceBuffers[i], _buffers[i]) = device.Allocate((long)bytes);
            _views[i] = new OrtValue?[shared ? 1 : capacity + 1];
        }
    }

    /// <summary>Starts a new sequence: the past is empty.</summary>
    public void Reset() => _pastHalf = 0;

    /// <summary>Past of <paramref name="layer"/> (kv 0 = key, 1 = value) as [batch, kvH, length, hd].</summary>
    public OrtValue Past(int layer, int kv, int length) => View(_pastHalf, layer, kv, length);

    /// <summary>Where the graph writes the present, [batch, kvH, length, hd].</summary>
    public OrtValue Present(int layer, int kv, int length) => View(1 - _pastHalf, layer, kv, length);

    /// <summary>After a step: the present just written becomes the past.</summary>
    public void Swap() => _pastHalf = 1 - _pastHalf;

    /// <summary>Shared layout: the whole [batch, kvH, capacity, hd] buffer of a layer's key (0) or value (1).</summary>
    public OrtValue Whole(int layer, int kv)
    {
        int index = layer * 2 + kv;
        return _views[index][0] ??= OrtValue.CreateTensorValueWithData(_device?.Info ?? OrtMemoryInfo.DefaultInstance, _type,
            [Batch, _kvHeads, Capacity, _headDim], _buffers[index], (long)Batch * _kvHeads * Capacity * _headDim * _elementSize);
    }

    /// <summary>Cross K/V of <paramref name="layer"/> on the device, [batch, heads, crossCapacity, hd].</summary>
    public OrtValue Cross(int layer, int kv)
    {
        int index = layer * 2 + kv;
        return _crossViews[index] ??= OrtValue.CreateTensorValueWithData(_device!.Info, _type, [Batch, _crossHeads, CrossCapacity, _headDim],
            _cross[index].Address, (long)Batch * _crossHeads * CrossCapacity * _headDim * _elementSize);
    }

    /// <summary>encoder_attention_mask [batch, crossCapacity] on the device: ones over the loaded frames.</summary>
    public OrtValue CrossMask => _crossMask!;

    /// <summary>Copies a request's cross K/V into the head of the buffers and masks the rest.</summary>
    /// <exception cref="InvalidInputException">The encoder output does not have the decoder's heads and head size.</exception>
    public void LoadCross(Speech.EncoderStates encoder)
    {
        var shape = encoder.CrossShape;   // [1, heads, Te, hd]
        int frames = encoder.Length;
        if (shape.Length != 4 || shape[0] != Batch || shape[1] != _crossHeads || shape[2] != frames || shape[3] != _headDim)
            throw new InvalidInputException("encoder", $"cross-attention K/V of shape [{string.Join(", ", shape)}] do not fit the decoder's [{Batch}, {_crossHeads}, Te, {_headDim}]");
        if (frames > CrossCapacity) throw new InvalidOperationException($"{frames} encoder frames exceed the cache's {CrossCapacity}");
        long rowBytes = (long)frames * _headDim * _elementSize, pitch = (long)CrossCapacity * _headDim * _elementSize;
        int tensor = Batch * _crossHeads * frames * _headDim;
        if (encoder.CrossOnDevice)   // written by the encoder on this device in the cache's type: device to device
        {
            if (encoder.CrossType != _type) throw new InvalidInputException("encoder", $"cross-attention K/V of type {encoder.CrossType} on the device do not fit a {_type} cache");
            for (int i = 0; i < _layers * 2; i++)
                Runtime.CudaRuntime.DeviceToDevice2D(_cross[i].Address, pitch, encoder.CrossAddress(i / 2, i % 2), rowBytes, (long)Batch * _crossHeads);
        }
        else
        {
            if (!Speech.SpeechEncoder.Fits(encoder.CrossType, _type)) throw new InvalidInputException("encoder", Speech.SpeechEncoder.Mismatch(encoder.CrossType, _type));
            bool convert = encoder.CrossType != _type;   // fp32 K/V for an fp16 cache
            if (convert && _crossStaging.Length == 0)   // allocated once, with the cache (no per-request arrays)
                _crossStaging = GC.AllocateUninitializedArray<Half>(_layers * 2 * _crossHeads * CrossCapacity * _headDim, pinned: true);
            if (convert)   // fp32 encoder output -> fp16, into this cache's staging buffer
                Parallel.For(0, _layers * 2, i => System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(encoder.CrossFloats(i / 2, i % 2), _crossStaging.AsSpan(i * tensor, tensor)));
            for (int i = 0; i < _layers * 2; i++)
            {
                var bytes = convert ? MemoryMarshal.AsBytes(_crossStaging.AsSpan(i * tensor, tensor)) : encoder.CrossBytes(i / 2, i % 2);
                fixed (byte* src = bytes)   // [heads] rows of Te * hd into rows of capacity * hd
                    Runtime.CudaRuntime.ToDevice2D(_cross[i].Address, pitch, (nint)src, rowBytes, (long)Batch * _crossHeads);
            }
        }
        _crossMaskHost.AsSpan(0, frames).Fill(1);
        _crossMaskHost.AsSpan(frames).Clear();
        fixed (long* mask = _crossMaskHost)
            Runtime.CudaRuntime.ToDevice(_crossMaskAddress, (nint)mask, (long)CrossCapacity * sizeof(long));
    }

    private OrtValue View(int half, int layer, int kv, int length)
    {
        if ((uint)length > (uint)Capacity) throw new InvalidOperationException($"KV length {length} exceeds the cache capacity {Capacity}");
        int index = (half * _layers + layer) * 2 + kv;
        return _views[index][length] ??= OrtValue.CreateTensorValueWithData(_device?.Info ?? OrtMemoryInfo.DefaultInstance, _type,
            [Batch, _kvHeads, length, _headDim], _buffers[index], (long)Batch * _kvHeads * length * _headDim * _elementSize);
    }

    public void Dispose()
    {
        foreach (var address in _pageLocked) Runtime.CudaRuntime.Unlock(address);
        _pageLocked.Clear();
        StepLogitsValue.Dispose();
        NextTokensValue?.Dispose();
        Head?.Dispose();
        if (Step is { } step)
        {
            step.Ids.Dispose();
            step.Seqlens.Dispose();
            step.Logits.Dispose();
            step.NextToken?.Dispose();
        }
        foreach (var v in _crossViews) v?.Dispose();
        foreach (var (owner, _) in _cross) owner.Dispose();
        _crossMask?.Dispose();
        for (int i = 0; i < _buffers.Length; i++)
        {
            foreach (var v in _views[i]) v?.Dispose();
            if (_deviceBuffers[i] is { } d) d.Dispose();
            else if (_buffers[i] != 0) NativeMemory.AlignedFree((void*)_buffers[i]);
            _buffers[i] = 0;
        }
    }
}
