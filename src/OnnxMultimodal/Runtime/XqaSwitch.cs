using System.Runtime.InteropServices;

namespace OnnxMultimodal.Runtime;

/// <summary>
/// Which kernel ONNX Runtime's GroupQueryAttention (CUDA) decodes with. ONNX Runtime 1.31 reads <c>ORT_ENABLE_XQA</c> from
/// the process environment when it builds a session's kernels: on (its default for fp16), a decode step runs XQA
/// (<c>kernel_mha</c>) after separate rotary/append and sequence-length kernels; "0" runs cuDNN's flash attention with a
/// split-KV reduction instead, which took 4-5% off a Llama-7B int4 token on an H200 (docs/benchmarks.md, 2026-11-27).
/// <see cref="ExecutionOptions.CudaXqaAttention"/> picks; the variable is process-wide, so CUDA sessions are created one
/// at a time under <see cref="Gate"/>, each after its setting is written. A value the process started with is the
/// user's choice and is never overwritten.
/// </summary>
internal static partial class XqaSwitch
{
    internal const string Variable = "ORT_ENABLE_XQA";

    /// <summary>Held while the variable is set and a CUDA session is created, so a session sees its own setting.</summary>
    public static readonly object Gate = new();

    private static bool s_read;
    private static string? s_startValue;

    /// <summary>The value a session asking for <paramref name="xqa"/> runs with: the process's own value if it started
    /// with one, else "1" or "0".</summary>
    internal static string Decide(string? startValue, bool xqa) => startValue ?? (xqa ? "1" : "0");

    /// <summary>Writes the setting for the next session (call under <see cref="Gate"/>); returns the value in effect.</summary>
    public static string Apply(bool xqa)
    {
        if (!s_read)
        {
            s_startValue = NativeEnvironment.Get(Variable);
            s_read = true;
        }
        string value = Decide(s_startValue, xqa);
        if (NativeEnvironment.Get(Variable) != value) NativeEnvironment.Set(Variable, value);
        return value;
    }
}

/// <summary>The environment native code reads (getenv). On Linux, .NET's Environment.SetEnvironmentVariable changes only
/// the managed copy, so ONNX Runtime would not see it; there the C library's setenv is called as well.</summary>
internal static partial class NativeEnvironment
{
    private const string Libc = "libc.so.6";

    [LibraryImport(Libc, EntryPoint = "getenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint GetEnv(string name);

    [LibraryImport(Libc, EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    public static string? Get(string name) =>
        OperatingSystem.IsLinux() ? Marshal.PtrToStringUTF8(GetEnv(name)) : Environment.GetEnvironmentVariable(name);

    /// <exception cref="InvalidOperationException">The C library refused the variable.</exception>
    public static void Set(string name, string value)
    {
        if (OperatingSystem.IsLinux() && SetEnv(name, value, 1) != 0)
            throw new InvalidOperationException($"setenv({name}) failed");
        Environment.SetEnvironmentVariable(name, value);
    }
}
