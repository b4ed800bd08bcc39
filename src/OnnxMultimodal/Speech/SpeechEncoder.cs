using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Speech;

/// <summary>
/// The conformer speech encoder (speech_encoder.onnx): stacked features [1, T, 160] -> encoder states
/// [1, Te, H] and every decoder layer's cross-attention keys and values [1, heads, Te, hd], computed
/// once per request and bound unchanged at every decode step.
/// </summary>
internal sealed class SpeechEncoder : IDisposable
{
    private readonly GraphSession _graph;
    private readonly int _layers;
    private readonly string _path;
    private OrtMemoryInfo? _crossDevice;
    private EncoderGraphs? _graphs;

    private SpeechEncoder(GraphSession graph, int layers, string path)
    {
        _graph = graph;
        _layers = layers;
        _path = path;
        CrossType = graph.OutputType(graph.Outputs[1]);
        for (int i = 2; i < graph.Outputs.Count; i++)
            if (graph.OutputType(graph.Outputs[i]) != CrossType)
                throw new ModelPackageException(path, $"its cross-attention K/V outputs mix {CrossType} ({graph.Outputs[1]}) and {graph.OutputType(graph.Outputs[i])} ({graph.Outputs[i]})");
    }

    /// <summary>The element type of the cross-attention K/V the graph writes (float, or float16 from an
    /// encoder converted for fp16 decoders).</summary>
    public TensorElementType CrossType { get; }

    /// <summary>Whether a decoder taking cross K/V as <paramref name="decoder"/> can use an encoder's
    /// <paramref name="encoder"/> ones: the same type, or fp32 converted to fp16 once per request.</summary>
    internal static bool Fits(TensorElementType encoder, TensorElementType decoder) =>
        encoder == decoder || (encoder == TensorElementType.Float && decoder == TensorElementType.Float16);

    /// <summary>The error for an encoder/decoder pair that does not <see cref="Fits"/>.</summary>
    internal static string Mismatch(TensorElementType encoder, TensorElementType decoder) =>
        $"the speech encoder writes cross-attention K/V as {encoder} and the decoder takes {decoder}: convert the encoder with the decoder (omm_export convert)";

    /// <summary>Leaves the cross K/V of every request in <paramref name="device"/> memory, where the graph
    /// computed them (the decoder's device cache copies them from there), instead of copying them to the
    /// host. The states stay on the host.</summary>
    internal void KeepCrossOn(OrtMemoryInfo device) => _crossDevice = device;

    /// <summary>Captures the encoder in a CUDA graph per exact frame count (<see cref="EncoderGraphs"/>);
    /// needs <see cref="KeepCrossOn"/> first (the graph's cross K/V stay on the device). Returns why not where it cannot.</summary>
    internal string? CaptureGraphs(ExecutionOptions execution)
    {
        if (_crossDevice is null) return "the cross K/V do not stay on the device (the decoder's cache is on the host or of another type)";
        _graphs = EncoderGraphs.TryCreate(_path, execution, _graph, out string? reason);
        return reason;
    }

    /// <summary>The CUDA graphs of the encoder, where <see cref="CaptureGraphs"/> made them.</summary>
    internal EncoderGraphs? Graphs => _graphs;

    public static SpeechEncoder Create(ModelPackage package, ExecutionOptions execution)
    {
        string path = package.ComponentPath("speech_encoder");
        var m = package.Manifest.SpeechEncoder ?? new SpeechEncoderManifest();
        string features = m.Inputs.GetValueOrDefault("features", "input_features"), mask = m.Inputs.GetValueOrDefault("mask", "attention_mask");
        string states = m.Outputs.GetValueOrDefault("states", "encoder_hidden_states");
        string ck = m.Outputs.GetValueOrDefault("cross_key", "cross.%d.key"), cv = m.Outputs.GetValueOrDefault("cross_value", "cross.%d.value");
        int layers = package.Decoder.NumLayers;
        var outputs = new List<string> { states };
        for (int i = 0; i < layers; i++) { outputs.Add(ck.Replace("%d", i.ToString())); outputs.Add(cv.Replace("%d", i.ToString())); }
        var graph = new GraphSession(path, execution, [features, mask], outputs);
        try
        {
            return new SpeechEncoder(graph, layers, path);
        }
        catch
        {
            graph.Dispose();
            throw;
        }
    }

    /// <param name="features">[T * 160] stacked features (see <see cref="Fbank.NormaliseAndStack"/>).</param>
    public EncoderStates Encode(float[] features, int featureDim = 160, CancellationToken cancellationToken = default)
    {
        int t = features.Length / featureDim;
        if (t == 0 || features.Length % featureDim != 0) throw new InvalidInputException("features", $"{features.Length} values is not a whole number of {featureDim}-wide frames");
        if (_graphs?.TryRun(features, t, featureDim, cancellationToken) is { } captured)   // a length seen before: its CUDA graph
            return new EncoderStates(captured, _layers, crossOnDevice: true);
        var mask = new long[t];
        Array.Fill(mask, 1L);
        using var x = OrtValue.CreateTensorValueFromMemory(features, [1, t, featureDim]);
        using var m = OrtValue.CreateTensorValueFromMemory(mask, [1, t]);
        var outputs = _crossDevice is null ? _graph.Run([x, m], cancellationToken) : _graph.Run([x, m], _crossDevice, i => i > 0, cancellationToken);
        _graphs?.Saw(t, outputs);
        return new EncoderStates(outputs, _layers, crossOnDevice: _crossDevice is not null);
    }

    public void Dispose()
    {
        _graphs?.Dispose();
        _graph.Dispose();
    }
}

/// <summary>One request's encoder output: states, per-layer cross K/V and the encoder mask. Owns native memory.</summary>
internal sealed class EncoderStates : IDisposable
{
    private readonly IDisposableReadOnlyCollection<OrtValue> _outputs;
    private readonly long[] _maskData;
    private Half[][]? _half;              // fp16 copies of the cross K/V (host decoding of an fp16 graph), kept alive under _halfValues
    private OrtValue[]? _halfValues;

    internal EncoderStates(IDisposableReadOnlyCollection<OrtValue> outputs, int layers, bool crossOnDevice = false)
    {
        _outputs = outputs;
        Layers = layers;
        CrossOnDevice = crossOnDevice;
        CrossType = outputs[1].GetTensorTypeAndShape().ElementDataType;
        var shape = outputs[0].GetTensorTypeAndShape().Shape;   // [1, Te, H]
        Length = (int)shape[1];
        Width = (int)shape[2];
        CrossShape = outputs[1].GetTensorTypeAndShape().Shape;  // [1, heads, Te, hd]
        _maskData = new long[Length];
        Array.Fill(_maskData, 1L);
        Mask = OrtValue.CreateTensorValueFromMemory(_maskData, [1, Length]);
    }

    public int Layers { get; }
    /// <summary>Encoder frames (Te).</summary>
    public int Length { get; }
    public int Width { get; }
    /// <summary>[Te * H] final encoder states.</summary>
    public ReadOnlySpan<float> States => _outputs[0].GetTensorDataAsSpan<float>();
    /// <summary>Whether the cross K/V are in device memory (see <see cref="SpeechEncoder.KeepCrossOn"/>).</summary>
    internal bool CrossOnDevice { get; }
    /// <summary>The element type of the cross K/V as the encoder wrote them.</summary>
    internal TensorElementType CrossType { get; }
    /// <summary>[1, heads, Te, hd] of every cross K/V tensor.</summary>
    internal long[] CrossShape { get; }
    /// <summary>encoder_attention_mask [1, Te] of ones (batch 1 has no padding).</summary>
    internal OrtValue Mask { get; }

    /// <summary>Cross K/V of <paramref name="layer"/> (kv 0 = key, 1 = value) as the decoder takes them:
    /// the encoder's own tensor when it has the decoder's type, or an fp16 copy of an fp32 one, converted
    /// once and kept with these states (host memory only: device-resident K/V go to a device cache).</summary>
    internal OrtValue Cross(int layer, int kv, TensorElementType type)
    {
        if (CrossOnDevice) throw new InvalidOperationException("these cross K/V are on the device: a device cache copies them (KvCache.LoadCross)");
        if (type == CrossType) return _outputs[1 + 2 * layer + kv];
        if (!SpeechEncoder.Fits(CrossType, type)) throw new InvalidInputException("decoder", SpeechEncoder.Mismatch(CrossType, type));
        ConvertToHalf();
        return _halfValues![2 * layer + kv];
    }

    /// <summary>The encoder's fp32 cross K/V of <paramref name="layer"/> (host memory, [1, heads, Te, hd]).</summary>
    internal ReadOnlySpan<float> CrossFloats(int layer, int kv) => _outputs[1 + 2 * layer + kv].GetTensorDataAsSpan<float>();

    /// <summary>The cross K/V of <paramref name="layer"/> as the encoder wrote them, as bytes (host memory).</summary>
    internal ReadOnlySpan<byte> CrossBytes(int layer, int kv) => _outputs[1 + 2 * layer + kv].GetTensorMutableRawData();

    /// <summary>The device address of the cross K/V of <paramref name="layer"/> (<see cref="CrossOnDevice"/>).</summary>
    internal nint CrossAddress(int layer, int kv) => Runtime.DeviceMemory.Address(_outputs[1 + 2 * layer + kv]);

    private void ConvertToHalf()
    {
        if (_halfValues is not null) return;
        var half = new Half[2 * Layers][];
        Parallel.For(0, 2 * Layers, i =>
        {
            var src = _outputs[1 + i].GetTensorDataAsSpan<float>();
            half[i] = GC.AllocateUninitializedArray<Half>(src.Length, pinned: true);
            System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(src, half[i]);
        });
        var values = new OrtValue[2 * Layers];
        for (int i = 0; i < 2 * Layers; i++)
            unsafe   // the arrays are pinned (POH) for as long as these states live
            {
                values[i] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float16, CrossShape,
                    (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref half[i][0]), (long)half[i].Length * 2);
            }
        (_half, _halfValues) = (half, values);   // only once complete
    }

    public void Dispose()
    {
        if (_halfValues is not null) foreach (var v in _halfValues) v?.Dispose();
        Mask.Dispose();
        _outputs.Dispose();
    }
}
