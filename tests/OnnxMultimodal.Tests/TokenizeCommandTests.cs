using System.Diagnostics;
using System.Text;
using System.Text.Json;
using OnnxMultimodal.Text;

namespace OnnxMultimodal.Tests;

/// <summary><c>omm tokenize</c> run as a process (the CLI the solution builds beside the tests).</summary>
public class TokenizeCommandTests
{
    private static string Omm()
    {
        // tests/OnnxMultimodal.Tests/bin/<Configuration>/net10.0 -> src/OnnxMultimodal.Cli/bin/<Configuration>/net10.0/omm.dll
        var dir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string path = Path.Combine(TestData.RepoRoot, "src", "OnnxMultimodal.Cli", "bin", dir.Parent!.Name, dir.Name, "omm.dll");
        Assert.That(File.Exists(path), $"{path} is missing: build the solution (dotnet test OnnxMultimodal.sln builds it)");
        return path;
    }

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, StandardOutputEncoding = Encoding.UTF8 };
        psi.ArgumentList.Add(Omm());
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        Assert.That(p.WaitForExit(TimeSpan.FromMinutes(2)), "omm tokenize finished");
        return (p.ExitCode, stdout.TrimEnd('\n'), err.Result.TrimEnd('\n'));
    }

    private static readonly string Llama2 = TokenizerFiles.TokenizerJson("llama2");

    [Test]
    public void Prints_the_hugging_face_ids_as_a_json_array()
    {
        var (code, stdout, _) = Run("tokenize", "--tokenizer", Llama2, "Hello world");
        Assert.That(code, Is.Zero);
        // Hugging Face tokenizers' ids of "Hello world" (Fixtures/tokenizers/llama2.json); BOS only with --add-special.
        Assert.That(JsonSerializer.Deserialize<int[]>(stdout), Is.EqualTo(new[] { 22557, 1526 }));
        Assert.That(JsonSerializer.Deserialize<int[]>(Run("tokenize", "--tokenizer", Llama2, "--add-special", "Hello world").Out), Is.EqualTo(new[] { 1, 22557, 1526 }));
    }

    [Test]
    public void Decode_prints_the_text()
    {
        var (code, stdout, _) = Run("tokenize", "--tokenizer", Llama2, "--decode", "[22557, 1526, 28705, 243, 162, 148, 172]");
        Assert.That(code, Is.Zero);
        Assert.That(stdout, Is.EqualTo("Hello world 👩"));
    }

    [Test]
    public void Model_folder_uses_its_tokenizer()
    {
        string model = TestData.Model("tiny-llama");
        var expected = TextTokenizer.Load(Path.Combine(model, "tokenizer.json")).Encode("hello <|user|> world");
        var (code, stdout, _) = Run("tokenize", "--model", model, "hello <|user|> world");
        Assert.That(code, Is.Zero);
        Assert.That(JsonSerializer.Deserialize<int[]>(stdout), Is.EqualTo(expected));
    }

    [TestCase("--decode", "[1, x]", "--decode")]
    [TestCase("--decode", "[-3]", "negative")]
    [TestCase("--tokenizer", "/nonexistent/tokenizer.json", "/nonexistent/tokenizer.json")]
    public void Errors_are_one_line_and_exit_2(string option, string value, string mention)
    {
        var args = option == "--tokenizer" ? new[] { "tokenize", option, value, "hi" } : new[] { "tokenize", "--tokenizer", Llama2, option, value };
        var (code, stdout, stderr) = Run(args);
        Assert.That(code, Is.EqualTo(2), stderr);
        Assert.That(stderr, Does.StartWith("error: ").And.Contain(mention).And.Not.Contain("\n"));
        Assert.That(stdout, Is.Empty);
    }
}
