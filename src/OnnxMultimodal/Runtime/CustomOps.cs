using Microsoft.ML.OnnxRuntime;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Runtime;

/// <summary>Our own CUDA kernels as an ONNX Runtime custom-op library (src/OnnxMultimodal.Kernels): graphs that
/// use its domain load only where the library is registered.</summary>
internal static class CustomOps
{
    /// <summary>The ONNX domain of our custom ops (OmmMatMulInt4, ...).</summary>
    public const string Domain = "omm";

    /// <summary>Refuses, before ONNX Runtime is asked, a missing library file or a graph that imports our domain
    /// while no library is registered.</summary>
    /// <exception cref="ExecutionProviderException">The configured library file does not exist.</exception>
    /// <exception cref="ModelPackageException">The graph uses our custom ops and no library is configured.</exception>
    public static void EnsureLoadable(string graphPath, ExecutionOptions options)
    {
        if (options.CustomOpLibrary is { } library)
        {
            if (!File.Exists(library))
                throw new ExecutionProviderException($"the custom-op library {library} (ExecutionOptions.CustomOpLibrary) does not exist; " +
                                                     "build it with src/OnnxMultimodal.Kernels/build.sh on a machine with the CUDA toolkit");
            return;
        }
        OnnxHeader header;
        try { header = OnnxHeader.Read(graphPath); }
        catch (ModelPackageException) { return; }   // not readable as a model: ONNX Runtime's own error names the problem
        if (header.Opsets.ContainsKey(Domain))
            throw new ModelPackageException(graphPath, $"the graph uses our CUDA custom ops (domain '{Domain}', written by convert --custom-ops omm or omm-fused, or --sampling-op omm); " +
                                                       "set ExecutionOptions.CustomOpLibrary (omm --custom-op-library) to libomm_kernels.so, or use the stock package");
    }

    /// <summary>Registers the library with one session's options; the options are disposed if that fails.</summary>
    /// <exception cref="ExecutionProviderException">ONNX Runtime could not load or register the library.</exception>
    public static void Register(SessionOptions so, string library)
    {
        try
        {
            so.RegisterCustomOpLibrary(Path.GetFullPath(library));
        }
        catch (OnnxRuntimeException e)
        {
            so.Dispose();
            throw new ExecutionProviderException($"the custom-op library {library} could not be registered (it needs the CUDA 13 runtime " +
                                                 $"and a GPU driver to load): {e.Message.Trim()}", e);
        }
    }
}
