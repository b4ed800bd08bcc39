using Microsoft.ML.OnnxRuntime;

namespace OnnxMultimodal.Runtime;

/// <summary>Creates ONNX Runtime sessions with the requested providers, in the user's fallback order.</summary>
internal static class SessionFactory
{
    /// <summary>Creates a session; returns it and the provider it runs on. <paramref name="decoder"/>: a decoder graph, whose
    /// CUDA session is created with the decode-attention switch of <see cref="ExecutionOptions.CudaXqaAttention"/> set
    /// (<see cref="XqaSwitch"/>). <paramref name="fixedDimensions"/>: symbolic input dimensions given a value
    /// (free-dimension overrides), so ONNX Runtime folds the shape arithmetic that depends on them.</summary>
    /// <exception cref="ExecutionProviderException">None of the requested providers could be created.</exception>
    /// <exception cref="ModelPackageException">ONNX Runtime refused the graph file, or it needs a custom-op library that is not registered.</exception>
    public static (InferenceSession Session, ExecutionProviderKind Provider) Create(string path, ExecutionOptions options, bool decoder = false,
        IReadOnlyDictionary<string, long>? fixedDimensions = null)
    {
        CustomOps.EnsureLoadable(path, options);
        var failures = new List<string>();
        foreach (var kind in options.Providers)
        {
            SessionOptions? so = null;
            try
            {
                so = NewOptions(options, Path.GetFileNameWithoutExtension(path));
                foreach (var (name, value) in fixedDimensions ?? new Dictionary<string, long>()) so.AddFreeDimensionOverrideByName(name, value);
                if (!TryAppend(so, kind, options, failures)) { so.Dispose(); continue; }
                InferenceSession session;
                if (decoder && kind == ExecutionProviderKind.Cuda)
                    lock (XqaSwitch.Gate)   // ONNX Runtime reads the decode-attention switch from the environment here
                    {
                        using var xqa = XqaSwitch.Apply(options.CudaXqaAttention, CudaRuntime.ComputeCapabilityMajor(options.DeviceId));
                        session = new InferenceSession(path, so);
                    }
                else
                    session = new InferenceSession(path, so);
                so.Dispose();
                return (session, kind);
            }
            catch (OnnxRuntimeException e) when (IsProviderFailure(e))
            {
                so?.Dispose();
                failures.Add($"{kind}: {e.Message}");
            }
            catch (OnnxRuntimeException e)
            {
                so?.Dispose();
                throw new ModelPackageException(path, $"ONNX Runtime cannot load this graph: {e.Message}", e);
            }
            catch (Exception e) when (e is DllNotFoundException or TypeInitializationException)
            {
                so?.Dispose();
                throw new ExecutionProviderException(
                    "the ONNX Runtime native library was not found; the application must reference a native package " +
                    "(Microsoft.ML.OnnxRuntime for CPU, Microsoft.ML.OnnxRuntime.Gpu.Linux for CUDA)", e);
            }
        }
        throw new ExecutionProviderException($"no execution provider could be created for {path}: {string.Join("; ", failures)}");
    }

    /// <summary>Creates a session and checks that the graph has the inputs and outputs the manifest names;
    /// the session is disposed if it does not.</summary>
    /// <exception cref="ModelPackageException">The graph does not load or an expected name is missing.</exception>
    /// <exception cref="ExecutionProviderException">No requested execution provider could be created.</exception>
    public static (InferenceSession Session, ExecutionProviderKind Provider) CreateChecked(string path, ExecutionOptions options,
        IEnumerable<string> inputs, IEnumerable<string> outputs, bool decoder = false, IReadOnlyDictionary<string, long>? fixedDimensions = null)
    {
        var (session, provider) = Create(path, options, decoder, fixedDimensions);
        try
        {
            Pipeline.ModelPackage.CheckNames(path, session.InputMetadata.Keys, inputs, "inputs");
            Pipeline.ModelPackage.CheckNames(path, session.OutputMetadata.Keys, outputs, "outputs");
            return (session, provider);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>Providers compiled into the loaded ONNX Runtime (a listed provider can still fail to load its libraries).</summary>
    public static IReadOnlyList<string> AvailableProviders()
    {
        try { return OrtEnv.Instance().GetAvailableProviders(); }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException) { return []; }
    }

    /// <summary>Tries to create each provider on an empty session: what loads here, and why the others do not.</summary>
    public static IReadOnlyList<(ExecutionProviderKind Kind, bool Loads, string Detail)> Probe(int deviceId = 0)
    {
        var result = new List<(ExecutionProviderKind, bool, string)>();
        foreach (var kind in Enum.GetValues<ExecutionProviderKind>())
        {
            var failures = new List<string>();
            try
            {
                using var so = new SessionOptions();
                bool ok = TryAppend(so, kind, new ExecutionOptions { DeviceId = deviceId }, failures);
                result.Add((kind, ok, ok ? "loads" : string.Join("; ", failures)));
            }
            catch (Exception e) when (e is DllNotFoundException or TypeInitializationException)
            {
                result.Add((kind, false, "ONNX Runtime native library not found: " + e.Message));
            }
        }
        return result;
    }

    private static SessionOptions NewOptions(ExecutionOptions options, string logId)
    {
        var so = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            LogId = logId,
            LogSeverityLevel = OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR,
        };
        if (options.IntraOpThreads > 0) so.IntraOpNumThreads = options.IntraOpThreads;
        if (options.ProfileDirectory is { } dir)
        {
            Directory.CreateDirectory(dir);
            so.ProfileOutputPathPrefix = Path.Combine(dir, logId);   // the prefix must be set before profiling is enabled
            so.EnableProfiling = true;
        }
        if (options.CustomOpLibrary is { } library) CustomOps.Register(so, library);
        return so;
    }

    private static bool TryAppend(SessionOptions so, ExecutionProviderKind kind, ExecutionOptions options, List<string> failures)
    {
        try
        {
            switch (kind)
            {
                case ExecutionProviderKind.Cpu:
                    return true;
                case ExecutionProviderKind.Cuda:
                    using (var cuda = new OrtCUDAProviderOptions())
                    {
                        cuda.UpdateOptions(new Dictionary<string, string>
                        {
                            ["device_id"] = options.DeviceId.ToString(),
                            ["enable_cuda_graph"] = options.CudaGraph ? "1" : "0",
                            ["cudnn_conv_algo_search"] = options.CudnnConvAlgoSearch,
                            ["use_tf32"] = options.CudaTf32 ? "1" : "0",
                            ["gpu_mem_limit"] = (options.GpuMemoryLimit > 0 ? options.GpuMemoryLimit : long.MaxValue).ToString(),
                        });
                        so.AppendExecutionProvider_CUDA(cuda);
                    }
                    return true;
                case ExecutionProviderKind.TensorRt:
                    using (var trt = new OrtTensorRTProviderOptions())
                    {
                        var settings = new Dictionary<string, string>
                        {
                            ["device_id"] = options.DeviceId.ToString(),
                            ["trt_fp16_enable"] = options.TensorRtFp16 ? "1" : "0",
                            ["trt_max_workspace_size"] = options.TensorRtWorkspace.ToString(),
                        };
                        if (options.TensorRtEngineCache is { } cache)
                        {
                            Directory.CreateDirectory(cache);
                            settings["trt_engine_cache_enable"] = "1";
                            settings["trt_engine_cache_path"] = cache;
                        }
                        trt.UpdateOptions(settings);
                        so.AppendExecutionProvider_Tensorrt(trt);
                    }
                    return true;
            }
        }
        catch (OnnxRuntimeException e) when (e.Message.Contains("not enabled in this build", StringComparison.OrdinalIgnoreCase))
        {
            failures.Add($"{kind}: {CpuOnlyBuild}");
            return false;
        }
        catch (OnnxRuntimeException e)
        {
            failures.Add($"{kind}: {e.Message.Trim()} (provider libraries are looked for beside libonnxruntime, then on LD_LIBRARY_PATH / PATH; " +
                         "CUDA 13 runtime, cuBLAS and cuDNN 9 must be loadable)");
            return false;
        }
        catch (EntryPointNotFoundException)
        {
            failures.Add($"{kind}: {CpuOnlyBuild}");
            return false;
        }
        return false;
    }

    private const string CpuOnlyBuild = "the loaded ONNX Runtime is a CPU-only build; reference Microsoft.ML.OnnxRuntime.Gpu.Linux " +
                                        "(CUDA 13 and cuDNN 9 libraries on the library path) instead of Microsoft.ML.OnnxRuntime";

    private static bool IsProviderFailure(OnnxRuntimeException e) =>
        e.Message.Contains("provider", StringComparison.OrdinalIgnoreCase) && e.Message.Contains("CUDA", StringComparison.OrdinalIgnoreCase);
}
