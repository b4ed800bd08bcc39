using System.Runtime.InteropServices;

namespace OnnxMultimodal.Runtime;

/// <summary>
/// Which kernel ONNX Runtime's GroupQueryAttention (CUDA) decodes with. ONNX Runtime 1.31 reads <c>ORT_ENABLE_XQA</c>
/// from the process environment in the kernel's constructor, while a session is created. On (its default for fp16), a
/// decode step runs XQA (<c>kernel_mha</c>) after separate rotary/append and sequence-length kernels. "0" runs its flash
/// attention path instead: on Hopper, cuDNN's flash attention with a split-KV reduction, which took 4-5% off a Llama-7B
/// int4 token on an H200 (docs/benchmarks.md, 2026-11-27; other cards and long contexts are not measured).
/// <see cref="ExecutionOptions.CudaXqaAttention"/> true asks for XQA anywhere; false asks for flash attention on Hopper
/// (compute capability 9 and up), where it was measured, and leaves ONNX Runtime's own choice on older cards. The
/// variable is written only around the creation of a decoder's CUDA session, under <see cref="Gate"/>, and put back as
/// it was at once, so other ONNX Runtime users in the process and child processes never see it. A value the process
/// itself holds is the user's choice and is left alone. glibc's setenv is not safe against a getenv running on another
/// thread at the same moment; the window is the creation of a decoder session, and nothing of ours reads the
/// environment then.
/// </summary>
internal static class XqaSwitch
{
    internal const string Variable = "ORT_ENABLE_XQA";

    /// <summary>Held while the variable is set and a decoder's CUDA session is created.</summary>
    public static readonly object Gate = new();

    /// <summary>The value a session asking for <paramref name="xqa"/> runs with on a device of compute capability
    /// <paramref name="major"/> (null: unknown): the process's own value if it has one, else "1" for XQA, "0" for flash
    /// attention on Hopper and up, and null (ONNX Runtime's own choice, nothing written) below Hopper or when unknown.</summary>
    internal static string? Decide(string? own, bool xqa, int? major) => own ?? (xqa ? "1" : major >= 9 ? "0" : null);

    /// <summary>Sets the switch for a session created inside the returned scope on a device of compute capability
    /// <paramref name="major"/> (hold <see cref="Gate"/>); disposing it puts the environment back.
    /// <see cref="Scope.Value"/>: the value ONNX Runtime reads (null: none, its own choice); <see cref="Scope.Own"/>: the
    /// process's own value, which overrides the option.</summary>
    public static Scope Apply(bool xqa, int? major)
    {
        string? own = NativeEnvironment.Get(Variable);
        string? value = Decide(own, xqa, major);
        bool written = own is null && value is not null && NativeEnvironment.Set(Variable, value);
        return new Scope(own ?? (written ? value : null), own, written);
    }

    public readonly struct Scope(string? value, string? own, bool written) : IDisposable
    {
        /// <summary>The value ONNX Runtime reads; null when nothing is set (its own choice applies).</summary>
        public string? Value => value;
        public string? Own => own;

        public void Dispose()
        {
            if (written) NativeEnvironment.Unset(Variable);
        }
    }
}

/// <summary>The environment native code reads (getenv). On Linux, .NET's Environment.SetEnvironmentVariable changes only
/// the managed copy, so ONNX Runtime would not see it; there glibc's setenv and unsetenv are called as well. Without
/// glibc (or on other systems) only the managed copy changes, and Set reports false there.</summary>
internal static partial class NativeEnvironment
{
    private const string Libc = "libc.so.6";

    [LibraryImport(Libc, EntryPoint = "getenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint GetEnv(string name);

    [LibraryImport(Libc, EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    [LibraryImport(Libc, EntryPoint = "unsetenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int UnsetEnv(string name);

    private static bool Native => OperatingSystem.IsLinux();

    public static string? Get(string name)
    {
        if (Native)
        {
            try { return Marshal.PtrToStringUTF8(GetEnv(name)); }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        }
        return Environment.GetEnvironmentVariable(name);
    }

    /// <summary>True when native code will see the value (Windows: the process environment; Linux: glibc's).</summary>
    public static bool Set(string name, string value)
    {
        Environment.SetEnvironmentVariable(name, value);
        if (!Native) return OperatingSystem.IsWindows();
        try { return SetEnv(name, value, 1) == 0; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }

    public static void Unset(string name)
    {
        Environment.SetEnvironmentVariable(name, null);
        if (!Native) return;
        try { UnsetEnv(name); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
    }
}
