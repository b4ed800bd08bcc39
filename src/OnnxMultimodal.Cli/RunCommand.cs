using System.CommandLine;
using Microsoft.Extensions.AI;
using OnnxMultimodal.Chat;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Cli;

/// <summary><c>omm run "prompt"</c>: streams the continuation of a text prompt.</summary>
internal static class RunCommand
{
    public static Command Create()
    {
        var prompt = new Argument<string>("prompt") { Description = "Text to continue", DefaultValueFactory = _ => "def fibonacci(n):" };
        var stats = new Option<bool>("--stats") { Description = "Print timing statistics after the text" };
        var ids = new Option<bool>("--print-ids") { Description = "Print the prompt and generated token ids (one JSON line on stderr)" };
        var cmd = new Command("run", "Generate text from a prompt, streaming it") { prompt, stats, ids };
        CliCommon.AddSampling(cmd);
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            await using var pipeline = await MultimodalPipeline.LoadAsync(CliCommon.ModelPath(r), CliCommon.PipelineOptions(r), cancellationToken: ct);
            var request = new GenerationRequest(r.GetValue(prompt)!) { Sampling = CliCommon.Sampling(r) };
            await foreach (var update in pipeline.GenerateAsync(request, ct))
            {
                Console.Write(update.TextDelta);
                if (update.Stats is { } t && r.GetValue(ids))
                    Console.Error.WriteLine(System.Text.Json.JsonSerializer.Serialize(new { prompt = pipeline.EncodePrompt(request), tokens = t.Tokens }));
                if (update.Stats is { } s && r.GetValue(stats))
                    Console.Error.WriteLine($"\n[{s.Engine}] prompt {s.PromptTokens} tok, generated {s.GeneratedTokens} tok, " +
                                            $"ttft {s.TimeToFirstToken.TotalMilliseconds:F2} ms, {s.TokensPerSecond:F1} tok/s, finish {s.FinishReason}");
            }
            Console.WriteLine();
            return 0;
        }));
        return cmd;
    }
}

/// <summary><c>omm chat</c>: a console conversation through <see cref="MultimodalChatClient"/>: the history is kept and
/// rendered by the model's chat template each turn; <c>/reset</c> forgets it, <c>/exit</c> (or an empty line, or end of
/// input) ends; <c>/image PATH</c> and <c>/audio PATH</c> attach a file to the next message.</summary>
internal static class ChatCommand
{
    public static Command Create()
    {
        var system = new Option<string?>("--system") { Description = "System prompt that opens the conversation (kept across /reset)" };
        var cmd = new Command("chat", "Chat on the console, keeping the history (/reset, /image PATH, /audio PATH, /exit)") { system };
        CliCommon.AddSampling(cmd);
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            if (r.GetValue(CliCommon.IgnoreEos)) throw new InvalidInputException("--ignore-eos", "does not apply to chat");
            await using var pipeline = await MultimodalPipeline.LoadAsync(CliCommon.ModelPath(r), CliCommon.PipelineOptions(r), cancellationToken: ct);
            using var client = pipeline.AsChatClient();
            var sampling = CliCommon.Sampling(r);
            var options = new ChatOptions
            {
                Temperature = sampling.Temperature, TopK = sampling.TopK, TopP = sampling.TopP, Seed = (long?)sampling.Seed,
                MaxOutputTokens = sampling.MaxNewTokens, FrequencyPenalty = sampling.RepetitionPenalty - 1f,
            };
            var history = new List<ChatMessage>();
            void Reset()
            {
                history.Clear();
                if (r.GetValue(system) is { Length: > 0 } s) history.Add(new ChatMessage(ChatRole.System, s));
            }
            Reset();
            var attachments = new List<AIContent>();
            bool interactive = !Console.IsInputRedirected;
            int failures = 0;
            while (!ct.IsCancellationRequested)
            {
                try
                {
                    if (interactive) Console.Write("> ");
                    string? line = Console.ReadLine();
                    if (line is null || string.IsNullOrWhiteSpace(line) || line.Trim() == "/exit") break;
                    line = line.Trim();
                    if (line == "/reset") { Reset(); attachments.Clear(); if (interactive) Console.Error.WriteLine("(history cleared)"); continue; }
                    if (line.StartsWith("/image ", StringComparison.Ordinal) || line.StartsWith("/audio ", StringComparison.Ordinal))
                    {
                        string file = line[7..].Trim();
                        if (!File.Exists(file)) throw new InvalidInputException(line[..6], $"{file}: file not found");
                        attachments.Add(new DataContent(await File.ReadAllBytesAsync(file, ct), line[1] == 'i' ? "image/" + ImageType(file) : "audio/wav"));
                        continue;
                    }
                    if (line.StartsWith('/')) throw new InvalidInputException("chat", $"unknown command {line.Split(' ')[0]} (/reset, /image PATH, /audio PATH, /exit)");
                    var message = new ChatMessage(ChatRole.User, [.. attachments, new TextContent(line)]);
                    attachments.Clear();
                    var reply = new List<ChatResponseUpdate>();
                    await foreach (var update in client.GetStreamingResponseAsync([.. history, message], options, ct))
                    {
                        Console.Write(update.Text);
                        reply.Add(update);
                    }
                    Console.WriteLine();
                    history.Add(message);
                    history.AddRange(reply.ToChatResponse().Messages.Select(m => new ChatMessage(m.Role, m.Text)));
                }
                catch (OnnxMultimodalException e)   // one bad turn or command: say so, keep the conversation
                {
                    Console.Error.WriteLine($"error: {e.Message}");
                    failures++;
                }
            }
            return failures == 0 ? 0 : 2;   // scripts see that a turn failed
        }));
        return cmd;
    }

    private static string ImageType(string file) => Path.GetExtension(file).ToLowerInvariant() switch
    {
        ".jpg" or ".jpeg" => "jpeg",
        ".gif" => "gif",
        ".bmp" => "bmp",
        ".webp" => "webp",
        _ => "png",
    };
}
