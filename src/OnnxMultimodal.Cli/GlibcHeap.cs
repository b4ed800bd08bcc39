using System.Runtime.InteropServices;

namespace OnnxMultimodal.Cli;

/// <summary>
/// What glibc's malloc holds, for <c>omm soak</c>: bytes in live allocations versus freed bytes it keeps
/// in its arenas, and <c>malloc_trim</c> to hand those free pages back. A growing resident set with flat
/// live bytes is allocator retention, not a leak. Only the CLI calls this (a library must not steer its
/// host's allocator); on other C libraries or operating systems every member reports "unavailable".
/// </summary>
internal static class GlibcHeap
{
    /// <summary>glibc's <c>struct mallinfo2</c> (glibc 2.33+): ten size_t fields, summed over every arena.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, Ordblks, Smblks, Hblks, Hblkhd, Usmblks, Fsmblks, Uordblks, Fordblks, Keepcost;
    }

    [DllImport("libc.so.6", EntryPoint = "mallinfo2")]
    private static extern MallInfo2 NativeMallInfo2();

    [DllImport("libc.so.6", EntryPoint = "malloc_trim")]
    private static extern int NativeMallocTrim(nuint pad);

    [DllImport("libc.so.6", EntryPoint = "mallopt")]
    private static extern int NativeMallopt(int param, int value);

    [DllImport("libc.so.6", EntryPoint = "malloc_stats")]
    private static extern void NativeMallocStats();

    private const int M_ARENA_MAX = -8, M_MMAP_THRESHOLD = -3;

    private static bool _unavailable = !OperatingSystem.IsLinux();

    /// <summary>Bytes in live malloc allocations (heap and mmapped) and free bytes kept in the arenas; null without glibc 2.33+.</summary>
    public static (double InUseMiB, double FreeMiB)? Read()
    {
        if (_unavailable) return null;
        try
        {
            var m = NativeMallInfo2();
            return ((m.Uordblks + m.Hblkhd) / 1048576.0, m.Fordblks / 1048576.0);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _unavailable = true;
            return null;
        }
    }

    /// <summary>Returns the arenas' free pages to the system (<c>malloc_trim(0)</c>); false where unavailable.</summary>
    public static bool Trim()
    {
        if (_unavailable) return false;
        try { return NativeMallocTrim(0) >= 0; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _unavailable = true;
            return false;
        }
    }

    /// <summary>Caps glibc's malloc arenas (<c>mallopt(M_ARENA_MAX, n)</c>, as MALLOC_ARENA_MAX does): threads
    /// started later share these arenas instead of each new thread getting one of up to 8 per core) and, when
    /// <paramref name="mmapThreshold"/> > 0, fixes the size from which blocks are mmapped (<c>M_MMAP_THRESHOLD</c>,
    /// as MALLOC_MMAP_THRESHOLD_ does; fixing it stops glibc raising it to 32 MiB after the first large free, which
    /// puts large short-lived buffers in the arenas' heaps). False where unavailable.</summary>
    public static bool Tune(int arenaMax, int mmapThreshold)
    {
        if (_unavailable) return false;
        try
        {
            bool ok = arenaMax <= 0 || NativeMallopt(M_ARENA_MAX, arenaMax) == 1;
            return (mmapThreshold <= 0 || NativeMallopt(M_MMAP_THRESHOLD, mmapThreshold) == 1) && ok;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            _unavailable = true;
            return false;
        }
    }

    /// <summary>glibc's per-arena report (system and in-use bytes of every arena) on standard error.</summary>
    public static void PrintStats()
    {
        if (_unavailable) return;
        try { NativeMallocStats(); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { _unavailable = true; }
    }
}
