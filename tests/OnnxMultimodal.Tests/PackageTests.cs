using System.Diagnostics;
using System.IO.Compression;
using System.Xml.Linq;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The NuGet packages as a new user gets them: tools/pack-smoke.sh packs them into a local feed and builds and
/// runs a fresh console app (outside the repository) whose Program.cs is docs/package-README.md's first C#
/// block, referencing OnnxMultimodal.Runtime.Cpu. Its output must equal what the same requests give in-process,
/// and the packages must carry the README, licence, repository, symbols and no native code.
/// </summary>
[Category("Package")]
[NonParallelizable]
public class PackageTests
{
    private static string s_work = "";
    private static string s_output = "";

    [OneTimeSetUp]
    public void PackAndRunTheSmokeApp()
    {
        s_work = Path.Combine(Path.GetTempPath(), $"omm-pack-{Guid.NewGuid():N}");
        var psi = new ProcessStartInfo("bash", [Path.Combine(TestData.RepoRoot, "tools", "pack-smoke.sh"), s_work])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail("tools/pack-smoke.sh did not finish in 10 minutes");
        }
        s_output = stdout.Result;
        Assert.That(p.ExitCode, Is.Zero, $"tools/pack-smoke.sh failed:\n{stderr.Result}\n{s_output}");
    }

    [OneTimeTearDown]
    public void Clean()
    {
        if (Directory.Exists(s_work)) Directory.Delete(s_work, recursive: true);
    }

    [Test]
    public async Task ConsumerAppPrintsWhatThePipelineGivesInProcess()
    {
        // The same three requests as the README block (greedy, 16 new tokens), run here through the project reference.
        var sampling = new SamplingOptions { MaxNewTokens = 16 };
        string models = Path.Combine(TestData.RepoRoot, "models");
        string text = "";
        await using (var llama = await MultimodalPipeline.LoadAsync(Path.Combine(models, "tiny-llama")))
            text = (await llama.GenerateTextAsync(new GenerationRequest("Once upon a time") { Sampling = sampling })).Text;
        await using var chameleon = await MultimodalPipeline.LoadAsync(Path.Combine(models, "tiny-chameleon"));
        var caption = (await chameleon.GenerateTextAsync(new GenerationRequest(
            [Part.Image(Path.Combine(models, "tiny-chameleon", "reference", "shapes.png")), Part.Text("A photo of")]) { Sampling = sampling })).Text;
        await using var seamless = await MultimodalPipeline.LoadAsync(Path.Combine(models, "tiny-seamless"));
        var transcript = (await seamless.GenerateTextAsync(new GenerationRequest(
            [Part.Audio(Path.Combine(models, "tiny-seamless", "reference", "robot_16k.wav"))]) { Sampling = sampling })).Text;

        Assert.That(text + caption + transcript, Is.Not.Empty, "the tiny models generate some text");
        Assert.That(s_output, Is.EqualTo($"{text}\n{caption}\n{transcript}\n"));
    }

    [Test]
    public void ChatAppFromThePackageReadmeChatsSeesAndHearsDrawsLogsAndMeasures()
    {
        // the package README's IChatClient program, built against the packed packages (tools/pack-smoke.sh)
        string[] lines = File.ReadAllLines(Path.Combine(s_work, "chat-output.txt"));
        string all = string.Join("\n", lines);
        Assert.That(lines.Count(l => l.StartsWith("assistant: ", StringComparison.Ordinal)), Is.EqualTo(2), all);
        Assert.That(lines, Has.One.StartsWith("answer: "), all);
        Assert.That(lines, Has.One.Matches<string>(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^image: image/png, [1-9]\d+ bytes$")), all);
        Assert.That(lines, Has.One.StartsWith("transcript: "), all);
        Assert.That(lines, Has.Some.StartsWith("metric omm.request.time_to_first_token "), "metrics reach a MeterListener");
        Assert.That(lines, Has.Some.Contains("OnnxMultimodal"), "the pipeline's log lines reach the console logger");
    }

    [Test]
    public void LibraryPackageCarriesMetadataReadmeLicenceAndSymbols()
    {
        string feed = Path.Combine(s_work, "feed");
        using var zip = ZipFile.OpenRead(Path.Combine(feed, "OnnxMultimodal.0.0.0-smoke.nupkg"));
        var entries = zip.Entries.Select(e => e.FullName).ToHashSet();
        Assert.That(entries, Does.Contain("README.md").And.Contain("LICENSE")
            .And.Contain("lib/net10.0/OnnxMultimodal.dll").And.Contain("lib/net10.0/OnnxMultimodal.xml"));
        Assert.That(entries.Where(e => e.StartsWith("runtimes/")), Is.Empty, "the library package is managed only");

        var nuspec = Nuspec(zip);
        XNamespace ns = nuspec.Root!.Name.Namespace;
        var meta = nuspec.Root.Element(ns + "metadata")!;
        Assert.That(meta.Element(ns + "license")?.Value, Is.EqualTo("MIT"));
        Assert.That(meta.Element(ns + "readme")?.Value, Is.EqualTo("README.md"));
        Assert.That(meta.Element(ns + "repository")?.Attribute("url")?.Value, Does.StartWith("https://github.com/"));
        Assert.That(meta.Element(ns + "tags")?.Value, Does.Contain("onnxruntime").And.Contain("multimodal"));
        var deps = meta.Descendants(ns + "dependency").Select(d => d.Attribute("id")!.Value).ToList();
        Assert.That(deps, Does.Contain("Microsoft.ML.OnnxRuntime.Managed").And.Not.Contain("Microsoft.ML.OnnxRuntime"));
        Assert.That(deps, Does.Not.Contain("Microsoft.SourceLink.GitHub"), "a build-time tool, not a dependency");

        using var symbols = ZipFile.OpenRead(Path.Combine(feed, "OnnxMultimodal.0.0.0-smoke.snupkg"));
        Assert.That(symbols.Entries.Select(e => e.FullName), Does.Contain("lib/net10.0/OnnxMultimodal.pdb"));
    }

    [TestCase("OnnxMultimodal.Runtime.Cpu", "Microsoft.ML.OnnxRuntime")]
    [TestCase("OnnxMultimodal.Runtime.Cuda", "Microsoft.ML.OnnxRuntime.Gpu.Linux")]
    public void RuntimeMetaPackageIsTheLibraryPlusOneNativeRuntime(string package, string native)
    {
        using var zip = ZipFile.OpenRead(Path.Combine(s_work, "feed", $"{package}.0.0.0-smoke.nupkg"));
        Assert.That(zip.Entries.Where(e => e.FullName.StartsWith("lib/")), Is.Empty, "a meta-package has no code");
        var meta = Nuspec(zip).Root!;
        var deps = meta.Descendants(meta.Name.Namespace + "dependency").ToDictionary(d => d.Attribute("id")!.Value, d => d.Attribute("version")!.Value);
        Assert.That(deps, Does.ContainKey("OnnxMultimodal").And.ContainKey(native));
        Assert.That(deps["OnnxMultimodal"], Does.Contain("0.0.0-smoke"));
        if (package.EndsWith("Cuda")) Assert.That(deps, Does.Not.ContainKey("Microsoft.ML.OnnxRuntimeGenAI"), "GenAI's natives bring the CPU libonnxruntime");
    }

    private static XDocument Nuspec(ZipArchive zip)
    {
        using var s = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec")).Open();
        return XDocument.Load(s);
    }
}
