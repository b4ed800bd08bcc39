using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

/// <summary>
/// Issue 13, findings 7 and 9 for callers: options and request paths are checked against
/// <see cref="ResourceLimits"/> and the file system before any work, and refused with an
/// <see cref="InvalidInputException"/> that names the input.
/// </summary>
public class RequestLimitsTests
{
    private static GenerationRequest Text(int tokens) =>
        new("Once upon a time") { Sampling = new SamplingOptions { MaxNewTokens = tokens, IgnoreStopTokens = true } };

    [Test]
    public async Task Max_new_tokens_is_bounded_and_never_overflows_the_engines()
    {
        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.TinyLlama);
        var e = Assert.ThrowsAsync<InvalidInputException>(() => pipeline.GenerateTextAsync(Text(int.MaxValue)))!;
        Assert.That(e.Input, Is.EqualTo("sampling.MaxNewTokens"));
        Assert.That(e.Message, Does.Contain(nameof(ResourceLimits.MaxNewTokens)));

        // Straight on the engines (no pipeline limit): before, prompt + 2^31-1 overflowed a List capacity
        // (ArgumentOutOfRange) and ORT GenAI's max_length (std::bad_alloc); now both stop at the context.
        var package = ModelPackage.Open(TestData.TinyLlama);
        var prompt = pipeline.Tokenizer.Encode("Once upon a time");
        var sampling = new SamplingOptions { MaxNewTokens = int.MaxValue, IgnoreStopTokens = true };
        using (var ort = OrtDecodeEngine.Create(package, Runtime.ExecutionOptions.Cpu))
            Assert.That(Drain(ort.Start(prompt, sampling)), Is.EqualTo(ort.ContextLength));
        using (var genai = TestData.GenAi(package))
            Assert.That(Drain(genai.Start(prompt, sampling)), Is.EqualTo(genai.ContextLength));
    }

    private static int Drain(IDecodeSequence sequence)
    {
        using (sequence)
        {
            while (!sequence.IsDone) sequence.GenerateNextToken();
            Assert.That(sequence.FinishReason, Is.EqualTo(FinishReason.ContextFull));
            return sequence.Tokens.Count;
        }
    }

    [TestCase(5000)]
    [TestCase(-1)]
    public void Threads_are_bounded(int threads)
    {
        var options = new PipelineOptions { Execution = Runtime.ExecutionOptions.Cpu with { IntraOpThreads = threads } };
        var e = Assert.ThrowsAsync<InvalidInputException>(() => MultimodalPipeline.LoadAsync(TestData.TinyLlama, options))!;
        Assert.That(e.Input, Is.EqualTo("threads"));
        Assert.That(e.Message, Does.Contain(nameof(ResourceLimits.MaxThreads)));
    }

    [TestCase(float.NaN)]
    [TestCase(float.PositiveInfinity)]
    public async Task Non_finite_guidance_is_named(float scale)
    {
        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-chameleon"));
        var e = Assert.ThrowsAsync<InvalidInputException>(() => pipeline.GenerateImageAsync(new GenerationRequest("a red circle") { GuidanceScale = scale }))!;
        Assert.That(e.Input, Is.EqualTo("GuidanceScale"));
    }

    [Test]
    public async Task Image_and_audio_paths_that_are_directories_or_fifos_are_refused_without_hanging()
    {
        string scratch = Path.Combine(Path.GetTempPath(), $"omm-parts-{Guid.NewGuid():N}");
        Directory.CreateDirectory(scratch);
        string fifo = Path.Combine(scratch, "input.fifo");
        ModelFileLimitsTests.MakeFifo(fifo);

        await using var vision = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-chameleon"));
        await using var speech = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-seamless"));
        foreach (var (pipeline, part) in new[] { (vision, Part.Image(scratch)), (vision, Part.Image(fifo)), (speech, Part.Audio(scratch)), (speech, Part.Audio(fifo)) })
        {
            var request = pipeline == vision ? new GenerationRequest([part, Part.Text("What is this?")]) : new GenerationRequest([part]);
            var run = pipeline.GenerateTextAsync(request);
            Assert.That(await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(20))), Is.SameAs(run), "a FIFO blocks its open until a writer comes");
            var e = Assert.ThrowsAsync<InvalidInputException>(() => run)!;
            Assert.That(e.Input, Is.EqualTo("parts[0]"));
            Assert.That(e.Message, Does.Contain(part is ImagePart { Path: var p } && p == scratch || part is AudioPart { Path: var a } && a == scratch
                ? "is a directory" : "not a regular file"));
        }
    }
}
