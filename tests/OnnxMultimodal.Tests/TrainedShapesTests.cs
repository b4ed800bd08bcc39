using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Tests.ShapesWorld;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The trained shapes-world default (models/shapes, issue 14) on CPU, judged without the model: captions
/// and answers against the renderer's labels, imagined pictures by the pixel judge. Bars are the issue's:
/// captions name shape and colour on at least 95% of 200 held-out renders; imagine is right on at least
/// 90% of 50 prompts. Answers use the caption bar (they ask for the same two facts).
/// </summary>
[TestFixture]
[NonParallelizable]
public sealed class TrainedShapesTests
{
    private const double CaptionBar = 0.95;
    private const double AnswerBar = 0.95;
    // The imagine bar. The committed model (run 5, 2026-11-27: int4 b32, image decoder polished in training with
    // the encoder and codebook frozen, guidance 1.5 chosen on selection prompts) measures 0.94 in C# on the CPU on these 50 prompts
    // (seeded sampling) and 0.917 on 800 selection draws; the misses left are small squares drawn with round corners.
    private const double ImagineBar = 0.90;

    private MultimodalPipeline _pipeline = null!;

    [OneTimeSetUp]
    public async Task Load() => _pipeline = await MultimodalPipeline.LoadAsync(TrainedModelTests.Package("shapes"), TrainedModelTests.Options);

    [OneTimeTearDown]
    public void Unload() => _pipeline.Dispose();

    [Test]
    public void Judge_ReadsTheRendererLabels_AndMatchesThePythonJudge()
    {
        // The judge is trusted for imagined pictures only if it reads every render right (the Python one made
        // 0 errors on 3000). Fill and bottom share are compared to Python's, rounded there to 3 decimals.
        foreach (var f in ShapesFixtures.Index.Images)
        {
            var j = ShapeJudge.JudgeFile(Path.Combine(ShapesFixtures.Directory, f.File));
            Assert.That((j.Background, j.Colour, j.Shape, j.Pixels), Is.EqualTo((f.Judge.Background, f.Judge.Colour, f.Judge.Shape, f.Judge.Pixels)), f.File);
            Assert.That(j.Fill, Is.EqualTo(f.Judge.Fill).Within(5.1e-4), f.File);
            Assert.That(j.Bottom, Is.EqualTo(f.Judge.Bottom).Within(5.1e-4), f.File);
        }
        var wrong = ShapesFixtures.HeldOut.Images
            .Select(i => (i, j: ShapeJudge.JudgeFile(i.Path)))
            .Where(p => p.j.Shape != p.i.Shape || p.j.Colour != p.i.Colour || p.j.Background != p.i.Background)
            .Select(p => $"{p.i.File}: {p.i.Caption} judged {p.j}").ToList();
        Assert.That(wrong, Is.Empty, "the judge misreads rendered scenes");
    }

    [Test]
    public async Task Caption_NamesShapeAndColour_OnHeldOutRenders()
    {
        var images = ShapesFixtures.HeldOut.Images;
        var misses = new List<string>();
        foreach (var image in images)
        {
            string caption = await Text([Part.Image(image.Path), Part.Text("A photo of")], 20);
            var (shape, colour) = ShapeJudge.ParseCaption(caption);
            if (shape != image.Shape || colour != image.Colour) misses.Add($"{image.File}: want '{image.Caption}', got '{caption}'");
        }
        Report("caption (shape and colour)", images.Count, misses);
        Assert.That(1.0 - misses.Count / (double)images.Count, Is.GreaterThanOrEqualTo(CaptionBar), string.Join("\n", misses.Take(10)));
    }

    [Test]
    public async Task Ask_AnswersColourAndShapeQuestions()
    {
        // Alternating "What colour is the <shape>?" and "What shape is the <colour> object?" over the held-out renders.
        var images = ShapesFixtures.HeldOut.Images;
        var misses = new List<string>();
        for (int i = 0; i < images.Count; i++)
        {
            var image = images[i];
            var (question, want) = i % 2 == 0
                ? ($"What colour is the {image.Shape}?", image.Colour)
                : ($"What shape is the {image.Colour} object?", image.Shape);
            string answer = (await Text([Part.Image(image.Path), Part.Text(question)], 6)).Trim();
            if (answer != want) misses.Add($"{image.File} ({image.Caption}): {question} want '{want}', got '{answer}'");
        }
        Report("ask (colour/shape)", images.Count, misses);
        Assert.That(1.0 - misses.Count / (double)images.Count, Is.GreaterThanOrEqualTo(AnswerBar), string.Join("\n", misses.Take(10)));
    }

    [Test]
    public async Task Ask_CommittedScenes_BackgroundAndPresence()
    {
        // The hand-placed scenes' own question lists (index.json), one- and two-object: reported, and held to the same bar.
        var misses = new List<string>();
        int total = 0;
        foreach (var f in ShapesFixtures.Index.Images)
            foreach (var qa in f.Questions)
            {
                total++;
                string answer = (await Text([Part.Image(Path.Combine(ShapesFixtures.Directory, f.File)), Part.Text(qa[0])], 6)).Trim();
                if (answer != qa[1]) misses.Add($"{f.File}: {qa[0]} want '{qa[1]}', got '{answer}'");
            }
        Report("ask (committed scenes, all question kinds)", total, misses);
        Assert.That(1.0 - misses.Count / (double)total, Is.GreaterThanOrEqualTo(AnswerBar), string.Join("\n", misses.Take(10)));
    }

    [Test]
    public async Task Imagine_DrawsTheAskedShapeAndColour_JudgedByPixels()
    {
        // The CLI's defaults (the manifest's guidance: scale 1.5, temperature 1, top-p 0.9), one fixed seed per prompt.
        var prompts = ShapesFixtures.HeldOut.Prompts;
        var misses = new List<string>();
        for (int i = 0; i < prompts.Count; i++)
        {
            var j = ShapeJudge.JudgePng((await Imagine(prompts[i].Prompt, (ulong)(1000 + i))).Png);
            if (j.Shape != prompts[i].Shape || j.Colour != prompts[i].Colour) misses.Add($"'{prompts[i].Prompt}' judged {j.Colour} {j.Shape} ({j})");
        }
        Report("imagine (judged shape and colour)", prompts.Count, misses);
        Assert.That(1.0 - misses.Count / (double)prompts.Count, Is.GreaterThanOrEqualTo(ImagineBar), string.Join("\n", misses.Take(10)));
    }

    internal async Task<string> Text(IReadOnlyList<Part> parts, int maxTokens)
    {
        var (text, _) = await _pipeline.GenerateTextAsync(new GenerationRequest(parts) { Sampling = new SamplingOptions { MaxNewTokens = maxTokens } });
        return text;
    }

    internal async Task<GeneratedImage> Imagine(string prompt, ulong seed)
    {
        var g = _pipeline.Package.Manifest.Guidance ?? new GuidanceManifest();
        var request = new GenerationRequest(prompt) { Sampling = new SamplingOptions { Temperature = g.Temperature, TopP = g.TopP, Seed = seed } };
        return (await _pipeline.GenerateImageAsync(request)).Image;
    }

    internal static void Report(string what, int total, List<string> misses)
    {
        TestContext.Out.WriteLine($"{what}: {total - misses.Count}/{total} = {(total - misses.Count) / (double)total:P1}");
        foreach (var m in misses.Take(10)) TestContext.Out.WriteLine("  " + m);
    }
}
