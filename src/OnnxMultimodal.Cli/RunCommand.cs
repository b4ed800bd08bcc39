using System.CommandLine;
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

/// <summary><c>omm chat</c>: a read-eval loop with the model's chat template.</summary>
internal static class ChatCommand
{
    public static Command Create()
    {
        var cmd = new Command("chat", "Chat on the console (empty line or Ctrl-D ends)");
        CliCommon.AddSampling(cmd);
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            await using var pipeline = await MultimodalPipeline.LoadAsync(CliCommon.ModelPath(r), CliCommon.PipelineOptions(r), cancellationToken: ct);
            while (!ct.IsCancellationRequested)
            {
                Console.Write("> ");
                string? line = Console.ReadLine();
                if (string.IsNullOrWhiteSpace(line)) break;
                var request = new GenerationRequest(line) { Sampling = CliCommon.Sampling(r), UseChatTemplate = true };
                await foreach (var update in pipeline.GenerateAsync(request, ct)) Console.Write(update.TextDelta);
                Console.WriteLine();
            }
            return 0;
        }));
        return cmd;
    }
}
