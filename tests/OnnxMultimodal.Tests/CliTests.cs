using System.Text.Json;
using static OnnxMultimodal.Tests.ProcessRunner;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The CLI as a new user meets it (issue 15, part 5): help that states the real defaults, bad input as one
/// line naming the CLI's own option and exit code 2, output that survives pipes. Each test runs the built
/// <c>omm</c> as a process with stdout and stderr piped.
/// </summary>
[Category("Cli")]
public class CliTests
{
    private static string Model(string name) => TestData.Model(name);

    /// <summary>One line on stderr, naming <paramref name="option"/>, exit code 2, nothing on stdout.</summary>
    private static void AssertCleanError(Result r, string option)
    {
        Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
        Assert.That(r.Stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1), r.Stderr);
        Assert.That(r.Stderr, Does.StartWith("error: ").And.Contain(option).And.Not.Contain("Exception").And.Not.Contain("   at "));
        Assert.That(r.Stdout, Is.Empty);
    }

    [TestCase("caption", "shapes")]
    [TestCase("ask", "shapes")]
    [TestCase("transcribe", "speech")]
    public void HelpNamesTheDefaultModelOfTheCommand(string command, string model)
    {
        var r = Omm(command, "--help");
        Assert.That(r.ExitCode, Is.Zero);
        string modelLine = r.Stdout.Split('\n').First(l => l.Contains("--model"));
        Assert.That(modelLine + r.Stdout, Does.Contain(model));
        Assert.That(modelLine, Does.Not.Contain("default: the embedded tiny-llama"));
    }

    [Test]
    public void HelpSaysOpClassesIsOnAndTranscribeIsOrtOnly()
    {
        Assert.That(Omm("profile", "--help").Stdout, Does.Contain("on by default"));
        Assert.That(Omm("transcribe", "--help").Stdout, Does.Contain("ort only"));
    }

    [Test]
    public void TranscribeWithTheGenAiEngineIsACleanError() =>
        AssertCleanError(Omm("transcribe", "--engine", "genai", "--audio", Path.Combine(Model("tiny-seamless"), "reference", "robot_16k.wav")), "--engine");

    [Test]
    public void ImagineWithATextOnlyModelIsACleanError()
    {
        var r = Omm("imagine", "--model", Model("tiny-llama"), "--prompt", "a cat", "--out", Path.Combine(Path.GetTempPath(), $"omm-{Guid.NewGuid():N}.png"));
        AssertCleanError(r, "--model");
        Assert.That(r.Stderr, Does.Contain("image decoder"));
    }

    [Test]
    public void ImagineRefusesANonPngFileBeforeGenerating()
    {
        string jpg = Path.Combine(Path.GetTempPath(), $"omm-{Guid.NewGuid():N}.jpg");
        AssertCleanError(Omm("imagine", "--prompt", "a cat", "--out", jpg), "--out");
        Assert.That(File.Exists(jpg), Is.False);
    }

    [Test]
    public void ChartOfAFileThatIsNotALadderIsACleanError()
    {
        string dir = Directory.CreateTempSubdirectory("omm-chart-").FullName;
        try
        {
            string profile = Path.Combine(dir, "profile.json");
            File.WriteAllText(profile, """{ "task": "text", "phases_ms": { "prefill": 1.5 } }""");
            AssertCleanError(Omm("chart", "ladder", "--in", profile, "--out", Path.Combine(dir, "x.png")), "--in");

            string ladder = Path.Combine(dir, "ladder.json");
            File.WriteAllText(ladder, """{ "rungs": [ { "name": "naive", "result": { "tpot_ms_p50": 2.0, "end_to_end_ms_p50": 9.0 } } ] }""");
            string torch = Path.Combine(dir, "torch.json");
            File.WriteAllText(torch, "{ not json");
            AssertCleanError(Omm("chart", "ladder", "--in", ladder, "--torch", torch, "--out", Path.Combine(dir, "x.png")), "--torch");

            AssertCleanError(Omm("chart", "tasks", "--in", ladder, "--out", Path.Combine(dir, "t.png")), "--in");
            var ok = Omm("chart", "ladder", "--in", ladder, "--out", Path.Combine(dir, "x.png"));
            Assert.That(ok.ExitCode, Is.Zero, ok.Stderr);
            Assert.That(new FileInfo(Path.Combine(dir, "x.png")).Length, Is.GreaterThan(1000));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void NegativeThreadsAreRejected() => AssertCleanError(Omm("run", "hello", "--threads", "-3"), "--threads");

    [Test]
    public void MissingImageIsNamedByItsOption() =>
        AssertCleanError(Omm("caption", "--image", "/nonexistent/cat.png"), "--image");

    [Test]
    public void AudioLimitNamesTheCliFlag()
    {
        var r = Omm("transcribe", "--audio", Path.Combine(Model("tiny-seamless"), "reference", "robot_16k.wav"), "--max-seconds", "0.1");
        AssertCleanError(r, "--max-seconds");
        Assert.That(r.Stderr, Does.Not.Contain("AudioOptions").And.Not.Contain("ResourceLimits").And.Not.Contain("parts["));
    }

    [Test]
    public void BenchBothEnginesOnAFusedGraphRunsOrtAndSaysWhatWasSkipped()
    {
        var r = Omm("bench", "--model", Model("tiny-llama-fused"), "--runs", "1", "--warmup", "0", "--new-tokens", "4", "--prompt-tokens", "8");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.Contain("│ ort"), "the ort result is in the table");
        Assert.That(r.Stderr, Does.Contain("skipped engine genai"));
        // piped: the table keeps its full headers (no 80-column cut) and there is no JSON after it
        Assert.That(r.Stdout, Does.Contain("end-to-end ms").And.Contain("peak MB").And.Not.Contain("{"));
        Assert.That(r.Stdout.Split('\n').Max(l => l.Length), Is.GreaterThan(80));
    }

    [Test]
    public void BenchImageTimesDecodeAndPreparationAndNamesABadImage()
    {
        string png = Path.Combine(Model("tiny-chameleon"), "reference", "shapes.png");
        var r = Omm("bench", "image", "--image", png, "--size", "64", "--runs", "3", "--warmup", "1", "--json", "-");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var root = doc.RootElement;
        Assert.That(root.GetProperty("size").GetInt32(), Is.EqualTo(64));
        Assert.That(root.GetProperty("runs").GetInt32(), Is.EqualTo(3));
        Assert.That(root.GetProperty("width").GetInt32(), Is.GreaterThan(0));
        double decode = root.GetProperty("decode_ms_p50").GetDouble(), prepare = root.GetProperty("prepare_ms_p50").GetDouble();
        Assert.That(decode, Is.GreaterThan(0));
        Assert.That(prepare, Is.GreaterThan(0));
        Assert.That(root.GetProperty("preprocess_ms_min").GetDouble(), Is.LessThanOrEqualTo(root.GetProperty("preprocess_ms_p90").GetDouble()));
        AssertCleanError(Omm("bench", "image", "--image", Path.Combine(Model("tiny-chameleon"), "multimodal.json"), "--runs", "1"), "--image");
        AssertCleanError(Omm("bench", "image", "--image", png, "--size", "0"), "--size");
        AssertCleanError(Omm("bench", "image", "--image", png, "--warmup", "-1"), "--warmup");
    }

    [Test]
    public void BenchTaskCaptionTimesWholeRequestsOnOurEngine()
    {
        string model = Model("tiny-chameleon"), png = Path.Combine(model, "reference", "shapes.png");
        var r = Omm("bench", "--model", model, "--task", "caption", "--image", png, "--new-tokens", "4", "--runs", "2", "--warmup", "1", "--json", "-");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.That(doc.RootElement.GetProperty("task").GetString(), Is.EqualTo("caption"));
        Assert.That(doc.RootElement.GetProperty("image").GetString(), Is.EqualTo(png));
        var results = doc.RootElement.GetProperty("results");
        Assert.That(results.GetArrayLength(), Is.EqualTo(1), "our engine only");
        var result = results[0];
        int imageTokens = OnnxMultimodal.Pipeline.ModelPackage.Open(model).Manifest.Image!.TokensPerImage;
        Assert.That(result.GetProperty("engine").GetString(), Is.EqualTo("ort"));
        Assert.That(result.GetProperty("prompt_tokens").GetInt32(), Is.GreaterThan(imageTokens), "the image's tokens and the text's");
        Assert.That(result.GetProperty("new_tokens").GetInt32(), Is.EqualTo(4), "end tokens ignored");
        Assert.That(result.GetProperty("runs").GetInt32(), Is.EqualTo(2));
        double ttft = result.GetProperty("ttft_ms_p50").GetDouble();
        Assert.That(ttft, Is.GreaterThan(0).And.LessThan(result.GetProperty("end_to_end_ms_p50").GetDouble()));
        AssertCleanError(Omm("bench", "--model", model, "--task", "caption", "--image", png, "--engine", "genai"), "--engine");
        AssertCleanError(Omm("bench", "--model", model, "--task", "bogus"), "--task");
    }

    [Test]
    public void BenchPrintsJsonOnStdoutOnlyWhenAsked()
    {
        var r = Omm("bench", "--engine", "ort", "--runs", "1", "--warmup", "0", "--new-tokens", "4", "--prompt-tokens", "8", "--json", "-");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        Assert.That(doc.RootElement.GetProperty("results")[0].GetProperty("engine").GetString(), Is.EqualTo("ort"));
        Assert.That(r.Stderr, Is.Empty, "no progress drawn into a pipe");
    }

    [Test]
    public void CpuLadderDoesNotClaimADeviceOrACudaGraph()
    {
        var r = Omm("bench", "--ladder", "--model", Model("tiny-llama"), "--fp16-model", Model("tiny-llama-fused"),
                    "--runs", "1", "--warmup", "0", "--new-tokens", "4", "--prompt-tokens", "8", "--json", "-");
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        using var doc = JsonDocument.Parse(r.Stdout);
        var names = doc.RootElement.GetProperty("rungs").EnumerateArray().Select(x => x.GetProperty("name").GetString()!).ToList();
        Assert.That(names, Has.Count.EqualTo(3));
        Assert.That(names, Has.None.Contain("device").And.None.Contain("CUDA graph"));
        Assert.That(r.Stderr, Does.Contain("CUDA graph rung not run"));
    }

    [Test]
    public void CustomOpLadderRungsNeedTheLibrary()
    {
        // Checked before any rung runs: a ladder that would load a custom-op package without the library stops at once,
        // naming the option (the packages need not exist for the check).
        foreach (var option in new[] { "--int4-omm-model", "--int4-ommf-model", "--int4-ommfs-model" })
            AssertCleanError(Omm("bench", "--ladder", "--model", Model("tiny-llama"), option, Model("tiny-llama-fused"),
                                 "--runs", "1", "--warmup", "0", "--new-tokens", "2", "--prompt-tokens", "4"), option);
    }

    [Test]
    public void InfoShowsNoGeneratedDimensionNames()
    {
        var r = Omm("info", "--model", Model("tiny-seamless"));
        Assert.That(r.ExitCode, Is.Zero, r.Stderr);
        Assert.That(r.Stdout, Does.Contain("cross.0.key").And.Contain("encoder_frames"));
        Assert.That(r.Stdout, Does.Not.Contain("_dim_").And.Not.Contain("unk__"));
    }

    [Test]
    public void ProfilePrintsMarkdownUnlessJsonIsAsked()
    {
        string dir = Directory.CreateTempSubdirectory("omm-profile-").FullName;
        try
        {
            var r = Omm("profile", "--op-classes", "false", "--warmup", "0", "--max-tokens", "4", "--out", dir);
            Assert.That(r.ExitCode, Is.Zero, r.Stderr);
            Assert.That(r.Stdout.TrimStart(), Does.Not.StartWith("{"));
            Assert.That(r.Stdout, Does.Match(@"\.NET GC during the request: \d+ gen0, \d+ gen1, \d+ gen2 collections; paused \d+\.\d\d ms"));
            Assert.That(File.Exists(Path.Combine(dir, "profile.json")));
            var j = Omm("profile", "--op-classes", "false", "--warmup", "0", "--max-tokens", "4", "--out", dir, "--json");
            Assert.That(j.ExitCode, Is.Zero, j.Stderr);
            using var doc = JsonDocument.Parse(j.Stdout);
            Assert.That(doc.RootElement.GetProperty("task").GetString(), Is.EqualTo("text"));
            var gc = doc.RootElement.GetProperty("gc_during_request");
            Assert.That(gc.GetProperty("gen0").GetInt32(), Is.GreaterThanOrEqualTo(gc.GetProperty("gen1").GetInt32()), "a gen1 collection counts as gen0 too");
            Assert.That(gc.GetProperty("pause_ms").GetDouble(), Is.GreaterThanOrEqualTo(0));
        }
        finally { Directory.Delete(dir, true); }
    }
}
