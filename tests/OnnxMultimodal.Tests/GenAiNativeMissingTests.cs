using System.Reflection;
using System.Runtime.Loader;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

/// <summary>
/// Issue 13, finding 8: with the ORT GenAI native library missing, a GenAI object whose constructor
/// failed was finalized later, its finalizer called the missing library again on the finalizer thread,
/// and the process died (exit 134) although the caller had caught the clean error. Here the library
/// and ORT GenAI's managed assembly are loaded a second time into a load context that refuses to load
/// <c>onnxruntime-genai</c>, which is what a host without the native package sees.
/// </summary>
public class GenAiNativeMissingTests
{
    private sealed class NoGenAiNative(string bin) : AssemblyLoadContext("omm-no-genai-native")
    {
        // Our library and GenAI's managed binding are private to this context; everything else is shared.
        protected override Assembly? Load(AssemblyName name) =>
            name.Name is "OnnxMultimodal" or "Microsoft.ML.OnnxRuntimeGenAI" ? LoadFromAssemblyPath(Path.Combine(bin, name.Name + ".dll")) : null;

        protected override IntPtr LoadUnmanagedDll(string name) =>
            name.Contains("onnxruntime-genai", StringComparison.Ordinal)
                ? throw new DllNotFoundException($"Unable to load shared library '{name}' (hidden by the test)")
                : IntPtr.Zero;
    }

    [Test]
    public async Task Load_fails_cleanly_and_the_process_survives_finalization_then_falls_back()
    {
        string bin = Path.GetDirectoryName(typeof(MultimodalPipeline).Assembly.Location)!;
        var context = new NoGenAiNative(bin);
        var library = context.LoadFromAssemblyPath(Path.Combine(bin, "OnnxMultimodal.dll"));
        Assert.That(library, Is.Not.SameAs(typeof(MultimodalPipeline).Assembly), "a private copy of the library");
        var optionsType = library.GetType("OnnxMultimodal.Pipeline.PipelineOptions")!;
        var options = Activator.CreateInstance(optionsType)!;
        optionsType.GetProperty("Engine")!.SetValue(options, Enum.Parse(library.GetType("OnnxMultimodal.Pipeline.EngineKind")!, "GenAi"));
        var load = library.GetType("OnnxMultimodal.Pipeline.MultimodalPipeline")!.GetMethod("LoadAsync")!;

        for (int attempt = 0; attempt < 3; attempt++)
        {
            Exception? error = null;
            try { await (Task)load.Invoke(null, [TestData.TinyLlama, options, null, CancellationToken.None])!; }
            catch (Exception e) { error = e; }
            Assert.That(error?.GetType().FullName, Is.EqualTo("OnnxMultimodal.ExecutionProviderException"), error?.ToString());
            Assert.That(error!.Message, Does.Contain("onnxruntime-genai"));
        }
        // Before the fix the finalizer thread threw DllNotFoundException here and the test host died.
        for (int i = 0; i < 3; i++) { GC.Collect(); GC.WaitForPendingFinalizers(); }

        // The host carries on with the other engine.
        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.TinyLlama, new PipelineOptions { Engine = EngineKind.Ort });
        var (_, stats) = await pipeline.GenerateTextAsync(new GenerationRequest("Once upon a time")
            { Sampling = new SamplingOptions { MaxNewTokens = 4, IgnoreStopTokens = true } });
        Assert.That(stats.GeneratedTokens, Is.EqualTo(4));
    }
}
