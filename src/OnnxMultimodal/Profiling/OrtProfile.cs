using System.Text.Json;

namespace OnnxMultimodal.Profiling;

/// <summary>The operator classes of the paper's breakdowns.</summary>
internal enum OpClass
{
    Linear,
    Attention,
    Norm,
    Elementwise,
    Memcpy,
    Other,
}

/// <summary>
/// Reads an ONNX Runtime profile (the JSON written when profiling is enabled on a session) and sums
/// kernel time by operator class. Times are what ONNX Runtime measured around each kernel: on CPU the
/// work itself; on CUDA mostly the launch (kernels run asynchronously), so GPU-side splits need CUPTI.
/// </summary>
internal static class OrtProfile
{
    public static OpClass Classify(string opType) => opType switch
    {
        "MatMul" or "Gemm" or "MatMulNBits" or "FusedMatMul" or "MatMulInteger" or "Conv" or "ConvTranspose" or "QuickGelu" => OpClass.Linear,
        "GroupQueryAttention" or "MultiHeadAttention" or "Attention" or "Softmax" or "RotaryEmbedding" or "SparseAttention" => OpClass.Attention,
        "LayerNormalization" or "SimplifiedLayerNormalization" or "SkipSimplifiedLayerNormalization" or "SkipLayerNormalization"
            or "GroupNorm" or "InstanceNormalization" or "ReduceMean" or "RMSNormalization" => OpClass.Norm,
        "Add" or "Sub" or "Mul" or "Div" or "Sigmoid" or "Relu" or "Neg" or "Sqrt" or "Pow" or "Cast" or "Where" or "Erf" or "Tanh"
            or "Exp" or "Log" or "And" or "Not" or "Equal" or "Less" or "LessOrEqual" or "Greater" or "Clip" or "Max" or "Min" => OpClass.Elementwise,
        "MemcpyToHost" or "MemcpyFromHost" => OpClass.Memcpy,
        _ => OpClass.Other,
    };

    /// <summary>Kernel microseconds by class and by graph (the session's log id), and the number of model runs.</summary>
    public static ProfileSummary Summarise(IEnumerable<string> files)
    {
        var byClass = Enum.GetValues<OpClass>().ToDictionary(c => c, _ => 0.0);
        var byOp = new Dictionary<string, double>();
        int runs = 0;
        double runMicros = 0;
        foreach (var file in files)
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(file));
            foreach (var e in doc.RootElement.EnumerateArray())
            {
                if (!e.TryGetProperty("cat", out var cat) || !e.TryGetProperty("name", out var name)) continue;
                double dur = e.TryGetProperty("dur", out var d) ? d.GetDouble() : 0;
                if (cat.GetString() == "Session" && name.GetString() == "model_run") { runs++; runMicros += dur; }
                if (cat.GetString() != "Node" || !name.GetString()!.EndsWith("_kernel_time", StringComparison.Ordinal)) continue;
                string op = e.GetProperty("args").GetProperty("op_name").GetString() ?? "?";
                byClass[Classify(op)] += dur;
                byOp[op] = byOp.GetValueOrDefault(op) + dur;
            }
        }
        return new ProfileSummary(byClass, byOp, runs, runMicros);
    }
}

/// <summary>Kernel time by operator class (µs), by operator type, and the runs it covers.</summary>
internal sealed record ProfileSummary(IReadOnlyDictionary<OpClass, double> ClassMicros, IReadOnlyDictionary<string, double> OpMicros, int Runs, double RunMicros)
{
    public double KernelMicros => ClassMicros.Values.Sum();

    /// <summary>Share of each class in the kernel time.</summary>
    public IReadOnlyDictionary<OpClass, double> Shares => ClassMicros.ToDictionary(kv => kv.Key, kv => KernelMicros > 0 ? kv.Value / KernelMicros : 0);
}
