using System.Diagnostics;
using System.Runtime.InteropServices;

namespace OnnxMultimodal.Profiling;

/// <summary>One reading of the GPU: when (Stopwatch ticks), kernel-busy percent, device memory in use.</summary>
internal readonly record struct GpuReading(long Timestamp, uint BusyPercent, ulong UsedBytes);

/// <summary>
/// Samples a GPU through NVML (libnvidia-ml, shipped with the driver) on a background thread while a
/// request runs: NVML's utilisation is the share of its last sample period (1/6 s to 1 s, by card) in
/// which at least one kernel ran, so the mean over a window is the GPU's busy share there and one
/// minus it the idle share. Also the peak device memory in use. Where NVML or the GPU is missing,
/// <see cref="TryStart"/> returns null and says why; nothing is loaded until it is called.
/// </summary>
internal sealed class GpuMonitor : IDisposable
{
    private readonly nint _device;
    private readonly Thread _thread;
    private readonly List<GpuReading> _readings = new(4096);
    private readonly TimeSpan _period;
    private volatile bool _stop;

    /// <summary>The card's name as NVML gives it.</summary>
    public string Name { get; }

    private GpuMonitor(nint device, string name, TimeSpan period)
    {
        _device = device;
        Name = name;
        _period = period;
        _thread = new Thread(Loop) { IsBackground = true, Name = "omm-gpu-monitor" };
        _thread.Start();
    }

    /// <summary>Starts sampling device <paramref name="index"/> every <paramref name="period"/>; null (and the reason) without NVML or that device.</summary>
    public static GpuMonitor? TryStart(int index, TimeSpan period, out string? reason)
    {
        reason = null;
        try
        {
            if (!NativeLibrary.TryLoad("libnvidia-ml.so.1", out _) && !NativeLibrary.TryLoad("nvml.dll", out _))
            {
                reason = "NVML (libnvidia-ml.so.1, installed with the NVIDIA driver) was not found";
                return null;
            }
            int rc = Nvml.Init();
            if (rc != 0) { reason = $"nvmlInit failed (NVML error {rc})"; return null; }
            rc = Nvml.DeviceByIndex((uint)index, out nint device);
            if (rc != 0) { Nvml.Shutdown(); reason = $"NVML has no device {index} (error {rc})"; return null; }
            var name = new byte[96];
            string text = Nvml.Name(device, name, (uint)name.Length) == 0 ? System.Text.Encoding.ASCII.GetString(name).TrimEnd('\0') : "unknown";
            return new GpuMonitor(device, text, period);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or BadImageFormatException)
        {
            reason = $"NVML could not be used: {e.Message}";
            return null;
        }
    }

    private void Loop()
    {
        while (!_stop)
        {
            if (Nvml.Utilization(_device, out var u) == 0 && Nvml.Memory(_device, out var m) == 0)
                lock (_readings) _readings.Add(new GpuReading(Stopwatch.GetTimestamp(), u.Gpu, m.Used));
            Thread.Sleep(_period);
        }
    }

    /// <summary>Readings taken so far.</summary>
    public IReadOnlyList<GpuReading> Readings
    {
        get { lock (_readings) return _readings.ToArray(); }
    }

    /// <summary>Mean busy share (0..1) of the readings taken between two Stopwatch timestamps; null if none fell there.</summary>
    public double? BusyShare(long from, long to)
    {
        var inside = Readings.Where(r => r.Timestamp >= from && r.Timestamp <= to).ToArray();
        return inside.Length == 0 ? null : inside.Average(r => r.BusyPercent) / 100.0;
    }

    /// <summary>Readings between two Stopwatch timestamps.</summary>
    public int Count(long from, long to) => Readings.Count(r => r.Timestamp >= from && r.Timestamp <= to);

    /// <summary>Highest device memory in use seen so far, in MiB (all processes on the card).</summary>
    public double PeakUsedMiB => Readings.Count == 0 ? 0 : Readings.Max(r => r.UsedBytes) / 1048576.0;

    public void Dispose()
    {
        if (_stop) return;
        _stop = true;
        _thread.Join();
        Nvml.Shutdown();
    }

    private static class Nvml
    {
        private const string Lib = "libnvidia-ml.so.1";

        [StructLayout(LayoutKind.Sequential)]
        public struct UtilizationRates { public uint Gpu; public uint MemoryBus; }

        [StructLayout(LayoutKind.Sequential)]
        public struct MemoryInfo { public ulong Total; public ulong Free; public ulong Used; }

        [DllImport(Lib, EntryPoint = "nvmlInit_v2")] public static extern int Init();
        [DllImport(Lib, EntryPoint = "nvmlShutdown")] public static extern int Shutdown();
        [DllImport(Lib, EntryPoint = "nvmlDeviceGetHandleByIndex_v2")] public static extern int DeviceByIndex(uint index, out nint device);
        [DllImport(Lib, EntryPoint = "nvmlDeviceGetName")] public static extern int Name(nint device, byte[] name, uint length);
        [DllImport(Lib, EntryPoint = "nvmlDeviceGetUtilizationRates")] public static extern int Utilization(nint device, out UtilizationRates rates);
        [DllImport(Lib, EntryPoint = "nvmlDeviceGetMemoryInfo")] public static extern int Memory(nint device, out MemoryInfo info);
    }
}
