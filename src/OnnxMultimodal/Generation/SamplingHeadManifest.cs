using System.Text.Json.Serialization;
using Microsoft.ML.OnnxRuntime;

namespace OnnxMultimodal.Generation;

/// <summary>
/// <c>decoder.sampling_head</c> of multimodal.json: the decoder graph ends in the sampling head that
/// <c>omm_export convert --device-sampling</c> appends (onnx-export/omm_export/sampling_head.py). Its output is
/// <c>next_token</c> [B, 1] int64; its inputs are small tensors the engine fills (fixed shapes, so a captured
/// CUDA graph replays them): the sampling parameters, one uniform draw per row from the host's SplitMix64 stream,
/// each row's guidance rows, the ids already seen (repetition penalty) and an additive logit mask (constraints).
/// </summary>
internal sealed record SamplingHeadManifest
{
    /// <summary>The version of the head's contract this engine speaks.</summary>
    public const int SupportedVersion = 1;

    /// <summary>Roles of the inputs, in the order the engine binds them.</summary>
    public static readonly string[] Roles = ["params", "uniform", "rows", "seen", "mask"];

    /// <summary>The order of the values in the params input.</summary>
    public static readonly string[] ParamOrder = ["temperature", "top_k", "top_p", "repetition_penalty", "guidance_scale"];

    [JsonPropertyName("version")] public int Version { get; init; }
    [JsonPropertyName("inputs")] public Dictionary<string, string> Inputs { get; init; } = new();
    [JsonPropertyName("params")] public string[] Params { get; init; } = [];
    [JsonPropertyName("output")] public string Output { get; init; } = "next_token";
    /// <summary>The greedy choice alone (mix, mask, penalty, ArgMax), which greedy requests bind instead of
    /// <see cref="Output"/> so the sort and sums do not run; absent in older heads.</summary>
    [JsonPropertyName("greedy_output")] public string? GreedyOutput { get; init; }

    /// <summary>The graph input names, in <see cref="Roles"/> order.</summary>
    /// <exception cref="ModelPackageException">The entry is not one this engine can feed.</exception>
    public string[] InputNames(string path)
    {
        if (Version != SupportedVersion)
            throw new ModelPackageException(path, $"decoder.sampling_head.version is {Version}; this engine feeds version {SupportedVersion}: re-export with this omm_export");
        if (!Params.SequenceEqual(ParamOrder))
            throw new ModelPackageException(path, $"decoder.sampling_head.params is [{string.Join(", ", Params)}]; expected [{string.Join(", ", ParamOrder)}]");
        if (Output != "next_token")
            throw new ModelPackageException(path, $"decoder.sampling_head.output is '{Output}'; the head writes next_token");
        return Roles.Select(r => Inputs.TryGetValue(r, out var n) && !string.IsNullOrEmpty(n) ? n
            : throw new ModelPackageException(path, $"decoder.sampling_head.inputs has no '{r}'")).ToArray();
    }

    /// <summary>The graph's head inputs have the shapes the engine binds: params [5], uniform [B], rows [B, 2],
    /// seen [B, vocab], mask [vocab] (float32, rows int64).</summary>
    /// <exception cref="ModelPackageException">An input's type or shape differs.</exception>
    public static void CheckGraph(string path, IReadOnlyList<string> names, int vocab, IReadOnlyDictionary<string, NodeMetadata> inputs)
    {
        var expected = new (long[] Shape, Microsoft.ML.OnnxRuntime.Tensors.TensorElementType Type)[]
        {
            ([ParamOrder.Length], Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float),
            ([-1], Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float),
            ([-1, 2], Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Int64),
            ([-1, vocab], Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float),
            ([vocab], Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float),
        };
        for (int i = 0; i < names.Count; i++)
        {
            var meta = inputs[names[i]];
            var (shape, type) = expected[i];
            bool fits = meta.ElementDataType == type && meta.Dimensions.Length == shape.Length
                        && meta.Dimensions.Zip(shape).All(d => d.Second < 0 || d.First <= 0 || d.First == d.Second);
            if (!fits)
                throw new ModelPackageException(path, $"sampling head input {names[i]} is {meta.ElementDataType} [{string.Join(", ", meta.Dimensions)}]; " +
                    $"the engine binds {type} [{string.Join(", ", shape.Select(d => d < 0 ? "batch" : d.ToString()))}]");
        }
    }

    /// <summary>
    /// Whether the head computes exactly what the host <see cref="Sampler"/> would for these options and processors:
    /// every processor must be a fixed mask (<see cref="IStaticLogitMask"/>: the image-span constraint, suppressed ids).
    /// Not expressed (the host path runs): any other processor (it may read the sequence), a top-k above 2^24 (the head
    /// holds it as float32), and temperatures in (0, 1e-3) or repetition penalties outside [1e-3, 1e3], whose division
    /// or product could overflow float32 where float64 does not.
    /// </summary>
    public static bool Expresses(SamplingOptions sampling, IReadOnlyList<ILogitsProcessor>? processors)
    {
        if (processors is not null && processors.Any(p => p is not IStaticLogitMask)) return false;
        if (sampling.TopK > 1 << 24) return false;
        if (sampling.RepetitionPenalty is < 1e-3f or > 1e3f) return false;
        return sampling.IsGreedy || sampling.Temperature >= 1e-3f;
    }
}

/// <summary>A processor that only bans a fixed set of ids (independent of the sequence): the sampling head applies it
/// as its additive mask, which gives exactly the host's result (a banned logit becomes float32's minimum).</summary>
internal interface IStaticLogitMask : ILogitsProcessor
{
    /// <summary>Sets <paramref name="mask"/>[id] to <see cref="float.MinValue"/> for each banned id (leaves the rest).</summary>
    void FillMask(Span<float> mask);
}
