using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>What every Cuda-category fixture needs first: the CUDA provider loading in this process.</summary>
internal static class CudaTestSupport
{
    /// <summary>CUDA first, no fallback.</summary>
    public static ExecutionOptions Options { get; } = new() { Providers = [ExecutionProviderKind.Cuda] };

    /// <summary>Ignores the calling fixture, with the probe's reason, where the CUDA provider does not load.</summary>
    public static void RequireCuda()
    {
        var probe = SessionFactory.Probe().Single(p => p.Kind == ExecutionProviderKind.Cuda);
        if (!probe.Loads) Assert.Ignore($"CUDA is not available in this test process: {probe.Detail}");
    }
}
