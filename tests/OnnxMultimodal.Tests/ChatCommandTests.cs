using System.Diagnostics;
using Microsoft.Extensions.AI;
using OnnxMultimodal.Chat;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

/// <summary><c>omm chat</c> fed through stdin: it keeps the history, opens with --system, forgets on /reset and
/// stops at /exit; each reply equals what the chat client gives for the same conversation.</summary>
public class ChatCommandTests
{
    /// <summary>The CLI the solution build wrote beside this test assembly's configuration (bin/Release/net10.0).</summary>
    private static string Omm()
    {
        var bin = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string path = Path.Combine(TestData.RepoRoot, "src", "OnnxMultimodal.Cli", "bin", bin.Parent!.Name, bin.Name, "omm.dll");
        if (!File.Exists(path))
        {
            if (Environment.GetEnvironmentVariable("OMM_REPO_ROOT") is { Length: > 0 }) Assert.Ignore("published test bundle: the CLI is not built here");
            Assert.Fail($"{path} is missing: build the solution (dotnet test OnnxMultimodal.sln builds the CLI)");
        }
        return path;
    }

    private static async Task<(int Code, string Out, string Err)> Chat(string stdin, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, StandardOutputEncoding = System.Text.Encoding.UTF8 };
        start.ArgumentList.Add(Omm());
        start.ArgumentList.Add("chat");
        foreach (var a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        await process.StandardInput.WriteAsync(stdin);
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(timeout.Token);
        return (process.ExitCode, await stdout, await stderr);
    }

    private static async Task<string> Reply(IChatClient client, List<ChatMessage> history, string user)
    {
        history.Add(new ChatMessage(ChatRole.User, user));
        var text = (await client.GetResponseAsync(history, new ChatOptions { MaxOutputTokens = 8, Temperature = 0, TopK = 0, TopP = 1, FrequencyPenalty = 0 })).Text;
        history.Add(new ChatMessage(ChatRole.Assistant, text));
        return text;
    }

    [TestCase(null)]
    [TestCase("You answer in rhymes.")]
    public async Task Keeps_the_history_until_reset_and_stops_at_exit(string? system)
    {
        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.TinyLlama);
        using var client = pipeline.AsChatClient();
        List<ChatMessage> Start() => system is null ? [] : [new ChatMessage(ChatRole.System, system)];
        var history = Start();
        string first = await Reply(client, history, "Hello");
        string second = await Reply(client, history, "Tell me more");
        string alone = await Reply(client, Start(), "Tell me more");
        Assume.That(second, Is.Not.EqualTo(alone), "the history changes the second reply on this model (else this test proves nothing)");
        string afterReset = await Reply(client, Start(), "Hello");

        // the same model on both sides (omm chat's default is the trained code model)
        string[] args = system is null ? ["--model", TestData.TinyLlama, "--max-tokens", "8"]
                                       : ["--model", TestData.TinyLlama, "--max-tokens", "8", "--system", system];
        var (code, stdout, stderr) = await Chat("Hello\nTell me more\n/reset\nHello\n/exit\nnot read\n", args);
        Assert.That(code, Is.EqualTo(0), stderr);
        Assert.That(stdout, Is.EqualTo($"{first}\n{second}\n{afterReset}\n"));
        Assert.That(afterReset, Is.EqualTo(first));
    }

    [Test]
    public async Task A_bad_command_is_reported_and_the_conversation_goes_on()
    {
        var (code, stdout, stderr) = await Chat("/bogus\n/image no-such.png\nHello\n", "--max-tokens", "3");
        Assert.That(stderr, Does.Contain("error: chat: unknown command /bogus"));
        Assert.That(stderr, Does.Contain("error: /image: no-such.png: file not found"));
        Assert.That(stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.Length.EqualTo(1), "the turn after the errors was answered");
        Assert.That(code, Is.EqualTo(2), "a failed turn shows in the exit code");
    }
}
