using System.Runtime.InteropServices;

namespace OnnxMultimodal.Runtime;

/// <summary>
/// The few CUDA runtime calls the device-resident decode loop needs: synchronous copies of the step
/// inputs (and of a request's cross-attention K/V) to the device and of the logits back. The CUDA execution provider of ONNX Runtime loads the
/// same libcudart (CUDA 13), so nothing new is required of the machine.
/// </summary>
internal static partial class CudaRuntime
{
    private const string Library = "libcudart.so.13";
    private const int HostToDevice = 1, DeviceToHost = 2, DeviceToDevice = 3;

    [LibraryImport(Library, EntryPoint = "cudaMemcpy")]
    private static partial int Memcpy(nint dst, nint src, nuint count, int kind);

    [LibraryImport(Library, EntryPoint = "cudaMemcpy2D")]
    private static partial int Memcpy2D(nint dst, nuint dpitch, nint src, nuint spitch, nuint width, nuint height, int kind);

    [LibraryImport(Library, EntryPoint = "cudaMemset")]
    private static partial int Memset(nint dst, int value, nuint count);

    [LibraryImport(Library, EntryPoint = "cudaHostRegister")]
    private static partial int HostRegister(nint ptr, nuint size, uint flags);

    [LibraryImport(Library, EntryPoint = "cudaHostUnregister")]
    private static partial int HostUnregister(nint ptr);

    [LibraryImport(Library, EntryPoint = "cudaGetLastError")]
    private static partial int GetLastError();

    [LibraryImport(Library, EntryPoint = "cudaGetErrorString")]
    private static partial nint ErrorString(int error);

    [LibraryImport(Library, EntryPoint = "cudaDeviceGetAttribute")]
    private static partial int DeviceGetAttribute(out int value, int attribute, int device);

    /// <summary>The device's compute capability major (9 for Hopper), or null where the runtime cannot say.</summary>
    public static int? ComputeCapabilityMajor(int device)
    {
        const int attributeMajor = 75;   // cudaDevAttrComputeCapabilityMajor
        try
        {
            if (DeviceGetAttribute(out int major, attributeMajor, device) == 0) return major;
            GetLastError();
            return null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return null; }
    }

    public static void ToDevice(nint device, nint host, long bytes) => Check(Memcpy(device, host, (nuint)bytes, HostToDevice), "cudaMemcpy host to device");

    public static void ToHost(nint host, nint device, long bytes) => Check(Memcpy(host, device, (nuint)bytes, DeviceToHost), "cudaMemcpy device to host");

    /// <summary><paramref name="rows"/> rows of <paramref name="rowBytes"/> bytes from a packed host array into
    /// device rows <paramref name="devicePitch"/> bytes apart (a [rows, n] tensor into the head of a [rows, capacity] one).</summary>
    public static void ToDevice2D(nint device, long devicePitch, nint host, long rowBytes, long rows) =>
        Check(Memcpy2D(device, (nuint)devicePitch, host, (nuint)rowBytes, (nuint)rowBytes, (nuint)rows, HostToDevice), "cudaMemcpy2D host to device");

    /// <summary>The same between two device buffers: packed [rows, rowBytes] into rows <paramref name="dstPitch"/> bytes apart.</summary>
    public static void DeviceToDevice2D(nint dst, long dstPitch, nint src, long rowBytes, long rows) =>
        Check(Memcpy2D(dst, (nuint)dstPitch, src, (nuint)rowBytes, (nuint)rowBytes, (nuint)rows, DeviceToDevice), "cudaMemcpy2D device to device");

    /// <summary>Page-locks <paramref name="bytes"/> of host memory that never moves (a pinned-heap array)
    /// so copies between it and the device run at full speed instead of through the driver's staging
    /// buffer. False where the driver refuses (the memory then stays pageable; the error is cleared so
    /// that it cannot surface in a later CUDA call).</summary>
    public static bool TryPageLock(nint host, long bytes)
    {
        if (HostRegister(host, (nuint)bytes, 0) == 0) return true;
        GetLastError();
        return false;
    }

    /// <summary>Undoes <see cref="TryPageLock"/>.</summary>
    public static void Unlock(nint host)
    {
        if (HostUnregister(host) != 0) GetLastError();
    }

    public static void Zero(nint device, long bytes) => Check(Memset(device, 0, (nuint)bytes), "cudaMemset");

    private static void Check(int status, string what)
    {
        if (status != 0)
            throw new InferenceException("CUDA runtime", $"{what} failed: {Marshal.PtrToStringAnsi(ErrorString(status))} ({status})");
    }

    /// <summary>Whether libcudart can be loaded here (the device-resident loop needs it).</summary>
    public static bool Available()
    {
        try
        {
            return NativeLibrary.TryLoad(Library, typeof(CudaRuntime).Assembly, null, out _);
        }
        catch (Exception)
        {
            return false;
        }
    }
}
