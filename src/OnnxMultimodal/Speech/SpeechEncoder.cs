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
public sealed class SpeechEncoder : IDisposable
{
    private readonly GraphSession _graph;
    private readonly int _layers;

    private SpeechEncoder(GraphSession graph, int layers)
    {
        _graph = graph;
        _layers = layers;
    }

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
        return new SpeechEncoder(new GraphSession(path, execution, [features, mask], outputs), layers);
    }

    /// <param name="features">[T * 160] stacked features (see <see cref="Fbank.NormaliseAndStack"/>).</param>
    public EncoderStates Encode(float[] features, int featureDim = 160, CancellationToken cancellationToken = default)
    {
        int t = features.Length / featureDim;
        if (t == 0 || features.Length % featureDim != 0) throw new InvalidInputException("features", $"{features.Length} values is not a whole number of {featureDim}-wide frames");
        var mask = new long[t];
        Array.Fill(mask, 1L);
        using var x = OrtValue.CreateTensorValueFromMemory(features, [1, t, featureDim]);
        using var m = OrtValue.CreateTensorValueFromMemory(mask, [1, t]);
        return new EncoderStates(_graph.Run([x, m], cancellationToken), _layers);
    }

    public void Dispose() => _graph.Dispose();
}

/// <summary>One request's encoder output: states, per-layer cross K/V and the encoder mask. Owns native memory.</summary>
public sealed class EncoderStates : IDisposable
{
    private readonly IDisposableReadOnlyCollection<OrtValue> _outputs;
    private readonly long[] _maskData;

    internal EncoderStates(IDisposableReadOnlyCollection<OrtValue> outputs, int layers)
    {
        _outputs = outputs;
        Layers = layers;
        var shape = outputs[0].GetTensorTypeAndShape().Shape;   // [1, Te, H]
        Length = (int)shape[1];
        Width = (int)shape[2];
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
    internal OrtValue CrossKey(int layer) => _outputs[1 + 2 * layer];
    internal OrtValue CrossValue(int layer) => _outputs[2 + 2 * layer];
    /// <summary>encoder_attention_mask [1, Te] of ones (batch 1 has no padding).</summary>
    internal OrtValue Mask { get; }

    public void Dispose()
    {
        Mask.Dispose();
        _outputs.Dispose();
    }
}
