namespace OnnxMultimodal.Runtime;

/// <summary>Where graphs run.</summary>
public enum ExecutionProviderKind
{
    Cpu,
    Cuda,
    TensorRt,
}

/// <summary>Execution settings for every session of a model. Immutable.</summary>
public sealed record ExecutionOptions
{
    /// <summary>Providers to try, in order; the first that loads is used. Cpu may be listed as the fallback.</summary>
    public IReadOnlyList<ExecutionProviderKind> Providers { get; init; } = [ExecutionProviderKind.Cpu];

    /// <summary>GPU ordinal for Cuda and TensorRt.</summary>
    public int DeviceId { get; init; }

    /// <summary>Threads for one operator on CPU; 0 lets ONNX Runtime choose.</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>Write an ONNX Runtime profile (JSON) for each session into this folder.</summary>
    public string? ProfileDirectory { get; init; }

    public static ExecutionOptions Cpu { get; } = new();
}
