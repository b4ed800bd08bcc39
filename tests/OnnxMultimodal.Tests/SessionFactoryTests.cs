using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

public class SessionFactoryTests
{
    private static void RequireCpuOnlyRuntime()
    {
        if (SessionFactory.AvailableProviders().Contains("CUDAExecutionProvider"))
            Assert.Ignore("this test process loaded a CUDA build of ONNX Runtime; the missing-CUDA path cannot be shown here");
    }

    [Test]
    public void Missing_cuda_is_a_clear_error_naming_the_provider()
    {
        RequireCpuOnlyRuntime();
        var package = ModelPackage.Open(TestData.TinyLlama);
        var e = Assert.Throws<ExecutionProviderException>(() =>
            OrtDecodeEngine.Create(package, new ExecutionOptions { Providers = [ExecutionProviderKind.Cuda] }))!;
        Assert.That(e.Message, Does.Contain("Cuda").And.Contain("Microsoft.ML.OnnxRuntime.Gpu.Linux"));
    }

    [Test]
    public void Fallback_order_is_honoured()
    {
        RequireCpuOnlyRuntime();
        using var engine = OrtDecodeEngine.Create(ModelPackage.Open(TestData.TinyLlama),
            new ExecutionOptions { Providers = [ExecutionProviderKind.Cuda, ExecutionProviderKind.TensorRt, ExecutionProviderKind.Cpu] });
        Assert.That(engine.Provider, Is.EqualTo(ExecutionProviderKind.Cpu));
    }

    [Test]
    public void Probe_reports_every_provider()
    {
        var probe = SessionFactory.Probe();
        Assert.That(probe.Select(p => p.Kind), Is.EquivalentTo(Enum.GetValues<ExecutionProviderKind>()));
        Assert.That(probe.Single(p => p.Kind == ExecutionProviderKind.Cpu).Loads, Is.True);
        Assert.That(probe.Where(p => !p.Loads).All(p => p.Detail.Length > 0), "every failure says why");
    }
}
