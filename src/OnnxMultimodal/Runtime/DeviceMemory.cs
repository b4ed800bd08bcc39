using Microsoft.ML.OnnxRuntime;

namespace OnnxMultimodal.Runtime;

/// <summary>
/// Memory on the session's device (CUDA), allocated through ONNX Runtime's allocator for that device,
/// so tensors bound there are never copied by ONNX Runtime. Host code reaches it only through
/// <see cref="CudaRuntime"/> copies.
/// </summary>
internal sealed class DeviceMemory : IDisposable
{
    private readonly OrtAllocator _allocator;

    public OrtMemoryInfo Info { get; }

    public DeviceMemory(InferenceSession session, int deviceId)
    {
        Info = new OrtMemoryInfo(OrtMemoryInfo.allocatorCUDA, OrtAllocatorType.DeviceAllocator, deviceId, OrtMemType.Default);
        _allocator = new OrtAllocator(session, Info);
    }

    /// <summary>
    /// <paramref name="bytes"/> bytes on the device, owned by the returned byte tensor (dispose it to
    /// free them), and their device address for views of other shapes over the same memory.
    /// </summary>
    public (OrtValue Owner, nint Address) Allocate(long bytes)
    {
        var owner = OrtValue.CreateAllocatedTensorValue(_allocator, Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.UInt8, [Math.Max(bytes, 1)]);
        return (owner, Address(owner));
    }

    /// <summary>The device address of a device tensor. The span is only a carrier for the address: it is
    /// never read or written from the host.</summary>
    public static unsafe nint Address(OrtValue deviceTensor) => (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(
        ref System.Runtime.InteropServices.MemoryMarshal.GetReference(deviceTensor.GetTensorMutableRawData()));

    /// <summary>A tensor of the given type and shape on the device.</summary>
    public OrtValue Tensor(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType type, long[] shape) =>
        OrtValue.CreateAllocatedTensorValue(_allocator, type, shape);

    public void Dispose()
    {
        _allocator.Dispose();
        Info.Dispose();
    }
}
