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

    [LibraryImport(Library, EntryPoint = "cudaGetErrorString")]
    private static partial nint ErrorString(int error);

    public static void ToDevice(nint device, nint host, long bytes) => Check(Memcpy(device, host, (nuint)bytes, HostToDevice), "cudaMemcpy host to device");

    public static void ToHost(nint host, nint device, long bytes) => Check(Memcpy(host, device, (nuint)bytes, DeviceToHost), "cudaMemcpy device to host");

    /// <summary><paramref name="rows"/> rows of <paramref name="rowBytes"/> bytes from a packed host array into
    /// device rows <paramref name="devicePitch"/> bytes apart (a [rows, n] tensor into the head of a [rows, capacity] one).</summary>
    public static void ToDevice2D(nint device, long devicePitch, nint host, long rowBytes, long rows) =>
        Check(Memcpy2D(device, (nuint)devicePitch, host, (nuint)rowBytes, (nuint)rowBytes, (nuint)rows, HostToDevice), "cudaMemcpy2D host to device");

    /// <summary>The same between two device buffers: packed [rows, rowBytes] into rows <paramref name="dstPitch"/> bytes apart.</summary>
    public static void DeviceToDevice2D(nint dst, long dstPitch, nint src, long rowBytes, long rows) =>
        Check(Memcpy2D(dst, (nuint)dstPitch, src, (nuint)rowBytes, (nuint)rowBytes, (nuint)rows, DeviceToDevice), "cudaMemcpy2D device to device");

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
