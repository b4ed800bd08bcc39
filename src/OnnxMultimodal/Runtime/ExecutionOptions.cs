namespace OnnxMultimodal.Runtime;

/// <summary>Where graphs run.</summary>
public enum ExecutionProviderKind
{
    /// <summary>ONNX Runtime's CPU provider (always present).</summary>
    Cpu,
    /// <summary>NVIDIA CUDA (needs Microsoft.ML.OnnxRuntime.Gpu.Linux, CUDA 13 and cuDNN 9).</summary>
    Cuda,
    /// <summary>NVIDIA TensorRT (needs its libraries beside the CUDA ones).</summary>
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

    /// <summary>CUDA: capture the decode step once as a CUDA graph and replay it (fused shared-cache graphs only).</summary>
    public bool CudaGraph { get; init; }

    /// <summary>CUDA: keep the KV cache (either layout) and the step I/O on the device (IOBinding to device memory). Off = host KV,
    /// copied by ONNX Runtime every step (the naive baseline; reference graphs only, since a shared-cache
    /// graph appends in place and the copies would split its past from its present).</summary>
    public bool DeviceResident { get; init; } = true;

    /// <summary>CUDA: run the speech encoder under a CUDA graph per exact frame count: the first request of a
    /// length runs plain, the second creates a session for that length (its dimensions fixed, so ONNX Runtime folds the
    /// shape arithmetic it would otherwise keep on the CPU) and captures, later ones replay. Up to 4 lengths, each
    /// holding the encoder's weights and its own ONNX Runtime memory arena on the device (<see cref="GpuMemoryLimit"/>
    /// bounds each session, not their sum). Needs the decoder's device cache in the encoder's cross K/V type.</summary>
    public bool EncoderCudaGraph { get; init; }

    /// <summary>Most threads for a request's filter banks (0: one per 128 frames, up to the processor count).</summary>
    internal int FbankThreads { get; init; }

    /// <summary>CUDA: let fp32 matrix products use TF32 (faster, ~1e-3 relative). Off by default so fp32
    /// graphs give fp32 results.</summary>
    public bool CudaTf32 { get; init; }

    /// <summary>CUDA: decode attention by ONNX Runtime's XQA kernel (its own default for fp16 GroupQueryAttention). Off by
    /// default: on Hopper (compute capability 9 and up) decoders then use ONNX Runtime's flash attention path (cuDNN's
    /// flash attention), which took 4-5% off a Llama-7B int4 token on an H200 (batch 1, CUDA graph; long contexts not
    /// measured); older cards keep ONNX Runtime's own choice. ONNX Runtime
    /// reads the switch (ORT_ENABLE_XQA) from the process environment while a decoder session is created; the library
    /// sets it only then and puts it back, and a value the process sets itself wins over this option.</summary>
    public bool CudaXqaAttention { get; init; }

    /// <summary>CUDA: cap on the memory ONNX Runtime's arena may take on the device, in bytes; 0 = no cap.</summary>
    public long GpuMemoryLimit { get; init; }

    /// <summary>CUDA: cuDNN convolution algorithm search (EXHAUSTIVE, HEURISTIC, DEFAULT); the VQ and speech convolutions use it.</summary>
    public string CudnnConvAlgoSearch { get; init; } = "HEURISTIC";

    /// <summary>TensorRT: build fp16 engines.</summary>
    public bool TensorRtFp16 { get; init; } = true;

    /// <summary>TensorRT: folder where built engines are cached between runs (null: no cache).</summary>
    public string? TensorRtEngineCache { get; init; }

    /// <summary>TensorRT: builder workspace in bytes.</summary>
    public long TensorRtWorkspace { get; init; } = 4L << 30;

    /// <summary>Path of a custom-op library registered with every session (SessionOptions.RegisterCustomOpLibrary):
    /// libomm_kernels.so from src/OnnxMultimodal.Kernels/build.sh, which packages converted with
    /// <c>convert --custom-ops omm</c> need (CUDA only). Null: none; such packages are refused at load.</summary>
    public string? CustomOpLibrary { get; init; }

    /// <summary>Take the token the graph chose (output <c>next_token</c>): a step hands back 8 bytes a row instead of the
    /// logits. Packages converted with <c>convert --next-token</c> choose greedily (used for greedy decoding without
    /// processors); packages converted with <c>--device-sampling</c> also sample with the request's seed, penalty, fixed
    /// masks and guidance, giving the host sampler's tokens (docs/device-sampling.md). False always reads the logits and
    /// chooses on the host (the benchmark's comparison).</summary>
    public bool GraphTokenChoice { get; init; } = true;

    /// <summary>Write an ONNX Runtime profile (JSON) for each session into this folder.</summary>
    public string? ProfileDirectory { get; init; }

    /// <summary>The defaults: CPU only.</summary>
    public static ExecutionOptions Cpu { get; } = new();
}
