using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;
using OnnxMultimodal.Chat;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

/// <summary>README's "Chat and .NET integration" snippet compiles and runs: it is the body of the test below,
/// and the test checks the README still shows exactly that body.</summary>
public class ReadmeChatSnippetTests
{
    [Test]
    public async Task The_snippet_runs_on_tiny_chameleon()
    {
        string[] args = [TestData.Model("tiny-chameleon"), Path.Combine(TestData.Model("tiny-chameleon"), "reference", "shapes.png")];
        var console = new StringWriter();
        var saved = Console.Out;
        Console.SetOut(console);
        try
        {
            // README:chat-begin
            await using var pipeline = await MultimodalPipeline.LoadAsync(args[0]);   // e.g. models/tiny-chameleon
            using IChatClient chat = pipeline.AsChatClient();
            var question = new ChatMessage(ChatRole.User, [new DataContent(File.ReadAllBytes(args[1]), "image/png"), new TextContent("What is this?")]);
            ChatResponse answer = await chat.GetResponseAsync([question], new ChatOptions { MaxOutputTokens = 32 });
            Console.WriteLine($"{answer.Text} ({answer.Usage?.InputTokenCount} tokens in, {answer.Usage?.OutputTokenCount} out)");
            // README:chat-end
        }
        finally
        {
            Console.SetOut(saved);
        }
        Assert.That(console.ToString(), Does.Match(@"\(\d+ tokens in, \d+ out\)\n$"));
    }

    [Test]
    public void The_readme_shows_this_snippet()
    {
        string source = File.ReadAllText(Path.Combine(TestData.RepoRoot, "tests", "OnnxMultimodal.Tests", "ReadmeChatSnippetTests.cs"));
        var body = Regex.Match(source, @"// README:chat-begin\n(.*?)\n\s*// README:chat-end", RegexOptions.Singleline).Groups[1].Value;
        string expected = string.Join("\n", body.Split('\n').Select(l => l.Trim()));
        string readme = File.ReadAllText(Path.Combine(TestData.RepoRoot, "README.md"));
        int section = readme.IndexOf("## Chat and .NET integration", StringComparison.Ordinal);
        Assert.That(section, Is.GreaterThan(0));
        var code = Regex.Match(readme[section..], @"```csharp\n(.*?)\n```", RegexOptions.Singleline).Groups[1].Value;
        // the README block opens with the using directives a user needs (this file has them at its top)
        var lines = code.Split('\n').Select(l => l.Trim()).SkipWhile(l => l.StartsWith("using ", StringComparison.Ordinal) || l.Length == 0);
        Assert.That(string.Join("\n", lines), Is.EqualTo(expected));
    }
}
