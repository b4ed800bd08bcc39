using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;

namespace OnnxMultimodal.Tests;

/// <summary>
/// samples/Playground in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium): the
/// test starts the playground on 127.0.0.1 at a free port with the committed tiny models, uploads an image and
/// reads the caption off the page, streams a prompt, uploads a WAV and draws an image. What the page shows must
/// equal what the same requests give in-process. .ci/run installs the browser; without it the test is ignored
/// locally and fails under CI.
/// </summary>
[Category("Browser")]
[NonParallelizable]
public class PlaygroundTests
{
    private Process? _server;
    private ChromeDriver? _browser;
    private string _url = "";
    private string _profile = "";

    private static string? Which(params string[] names) =>
        names.SelectMany(n => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, n))).FirstOrDefault(File.Exists);

    [OneTimeSetUp]
    public async Task StartPlaygroundAndBrowser()
    {
        string? chromium = Which("chromium", "chromium-browser"), driver = Which("chromedriver");
        if (chromium is null || driver is null)
        {
            string why = "chromium and chromium-driver are not installed (apt-get install -y chromium chromium-driver; .ci/run does it)";
            if (Environment.GetEnvironmentVariable("CI") == "true") Assert.Fail(why);
            Assert.Ignore(why);
        }

        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0)) { probe.Start(); port = ((IPEndPoint)probe.LocalEndpoint).Port; }
        _url = $"http://127.0.0.1:{port}";
        string dll = ProcessRunner.Built("samples/Playground", "Playground");
        Assert.That(File.Exists(dll), $"{dll} is not built");
        var psi = new ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { dll, "--models", Path.Combine(TestData.RepoRoot, "models"), "--urls", _url }) psi.ArgumentList.Add(a);
        _server = Process.Start(psi)!;
        _server.OutputDataReceived += (_, _) => { };
        _server.ErrorDataReceived += (_, _) => { };
        _server.BeginOutputReadLine();
        _server.BeginErrorReadLine();
        using var http = new HttpClient();
        var ready = Stopwatch.StartNew();
        while (true)
        {
            try { if ((await http.GetAsync(_url + "/api/info")).IsSuccessStatusCode) break; }
            catch (HttpRequestException) { }
            if (_server.HasExited || ready.Elapsed > TimeSpan.FromSeconds(90)) Assert.Fail($"the playground did not start at {_url}");
            await Task.Delay(250);
        }

        _profile = Directory.CreateTempSubdirectory("omm-chromium-").FullName;
        var options = new ChromeOptions { BinaryLocation = chromium };
        // headless, no sandbox (root in CI), nothing that reaches the network (the machine's is closed)
        options.AddArguments("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                             "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", $"--user-data-dir={_profile}");
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(driver)!, Path.GetFileName(driver));
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        _browser = new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
        _browser.Navigate().GoToUrl(_url);
        Wait(() => Text("info").Contains("tiny-chameleon"), "the page shows the loaded models");
    }

    [OneTimeTearDown]
    public void Stop()
    {
        _browser?.Quit();
        if (_server is { HasExited: false }) { _server.Kill(entireProcessTree: true); _server.WaitForExit(10_000); }
        _server?.Dispose();
        if (_profile.Length > 0 && Directory.Exists(_profile)) Directory.Delete(_profile, true);
    }

    private string Text(string id) => (string)((IJavaScriptExecutor)_browser!).ExecuteScript($"return document.getElementById('{id}').textContent")!;
    private string Data(string id, string key) => (string?)((IJavaScriptExecutor)_browser!).ExecuteScript($"return document.getElementById('{id}').dataset.{key} || ''") ?? "";

    private void Wait(Func<bool> condition, string what) =>
        new WebDriverWait(_browser!, TimeSpan.FromSeconds(90)) { Message = what }.Until(_ => condition());

    private static async Task<string> InProcess(string model, IReadOnlyList<Part> parts)
    {
        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.Model(model));
        return (await pipeline.GenerateTextAsync(new GenerationRequest(parts) { Sampling = new SamplingOptions { MaxNewTokens = 32 } })).Text;
    }

    [Test]
    public async Task UploadedImageGetsItsCaptionOnThePage()
    {
        string image = Path.Combine(TestData.Model("tiny-chameleon"), "reference", "shapes.png");
        _browser!.FindElement(By.Id("image-file")).SendKeys(image);
        _browser.FindElement(By.Id("caption")).Click();
        Wait(() => Data("caption-output", "done") == "1", "the caption finished streaming");
        string expected = await InProcess("tiny-chameleon", [Part.Image(File.ReadAllBytes(image)), Part.Text("A photo of")]);
        Assert.That(Text("caption-meta"), Does.Contain("32 tokens"), Text("caption-meta"));
        Assert.That(Text("caption-output"), Is.EqualTo(expected).And.Not.Empty);
    }

    [Test]
    public async Task PromptStreamsTokenByToken()
    {
        var box = _browser!.FindElement(By.Id("prompt"));
        box.Clear();
        box.SendKeys("The robot climbed");
        _browser.FindElement(By.Id("generate")).Click();
        Wait(() => Data("generate-output", "done") == "1", "the text finished streaming");
        Assert.That(Text("generate-output"), Is.EqualTo(await InProcess("tiny-llama", [Part.Text("The robot climbed")])));
        Assert.That(int.Parse(Data("generate-output", "chunks")), Is.GreaterThan(1), "the deltas arrived as separate events");
    }

    [Test]
    public async Task UploadedWavGetsItsTranscript()
    {
        string wav = Path.Combine(TestData.Model("tiny-seamless"), "reference", "robot_16k.wav");
        _browser!.FindElement(By.Id("audio-file")).SendKeys(wav);
        _browser.FindElement(By.Id("transcribe")).Click();
        Wait(() => Data("transcribe-output", "done") == "1", "the transcript finished streaming");
        Assert.That(Text("transcribe-output"), Is.EqualTo(await InProcess("tiny-seamless", [Part.Audio(File.ReadAllBytes(wav))])));
    }

    [Test]
    public void ImaginedImageAppears()
    {
        _browser!.FindElement(By.Id("imagine-go")).Click();
        Wait(() => Data("imagine-output", "done") == "1", "the image arrived");
        var size = ((IJavaScriptExecutor)_browser).ExecuteScript("const i = document.getElementById('imagine-output'); return [i.naturalWidth, i.naturalHeight, i.src.slice(0, 22)]") as IReadOnlyCollection<object>;
        Assert.That(size!.Select(x => x.ToString()), Is.EqualTo(new[] { "64", "64", "data:image/png;base64," }), Text("imagine-meta"));
    }
}
