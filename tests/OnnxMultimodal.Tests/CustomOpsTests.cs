using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>Our CUDA custom-op library (src/OnnxMultimodal.Kernels): a missing library file and a graph that needs
/// the library while none is registered are clear errors, on any machine.</summary>
public class CustomOpsTests
{
    // A ModelProto with only its header: ir_version 10 and opset imports ("" 21 and, optionally, "omm" 1).
    // Enough for OnnxHeader, which is where the refusal is decided; ONNX Runtime would reject it (no graph).
    private static string HeaderOnlyModel(bool withOmm)
    {
        var bytes = new List<byte> { 0x08, 10, 0x42, 0x02, 0x10, 21 };
        if (withOmm) bytes.AddRange([0x42, 0x07, 0x0A, 0x03, (byte)'o', (byte)'m', (byte)'m', 0x10, 0x01]);
        string path = Path.Combine(Path.GetTempPath(), $"omm-header-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, bytes.ToArray());
        return path;
    }

    [Test]
    public void A_missing_library_file_is_named()
    {
        string missing = Path.Combine(Path.GetTempPath(), "no-such-dir", "libomm_kernels.so");
        var e = Assert.Throws<ExecutionProviderException>(() =>
            OrtDecodeEngine.Create(ModelPackage.Open(TestData.TinyLlama), new ExecutionOptions { CustomOpLibrary = missing }))!;
        Assert.That(e.Message, Does.Contain(missing).And.Contain("build.sh"));
    }

    [Test]
    public void A_graph_with_omm_ops_is_refused_without_the_library()
    {
        string path = HeaderOnlyModel(withOmm: true);
        try
        {
            var e = Assert.Throws<ModelPackageException>(() => SessionFactory.Create(path, ExecutionOptions.Cpu))!;
            Assert.That(e.Message, Does.Contain(path).And.Contain("CustomOpLibrary").And.Contain("'omm'"));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void A_graph_without_omm_ops_is_left_to_onnx_runtime()
    {
        string path = HeaderOnlyModel(withOmm: false);
        try
        {
            // No graph at all: ONNX Runtime refuses it, with its own reason rather than ours.
            var e = Assert.Throws<ModelPackageException>(() => SessionFactory.Create(path, ExecutionOptions.Cpu))!;
            Assert.That(e.Message, Does.Contain("ONNX Runtime cannot load this graph").And.Not.Contain("CustomOpLibrary"));
        }
        finally { File.Delete(path); }
    }
}
