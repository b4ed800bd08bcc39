// Text -> text: stream a continuation from the committed code model (or a folder given as argument 1).
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

// Model: argument 1, else $OMM_MODELS/code, else models/code next to the app (see ModelLocation.cs).
string model = ModelLocation.Find(args, "code");
string prompt = args.Length > 1 ? args[1] : "def fibonacci(n):";

await using var pipeline = await MultimodalPipeline.LoadAsync(model);
var request = new GenerationRequest(prompt)
{
    Sampling = new SamplingOptions { Temperature = 0.8f, TopP = 0.9f, Seed = 42, MaxNewTokens = 48 },
};
Console.Write(prompt);
await foreach (var update in pipeline.GenerateAsync(request))
{
    Console.Write(update.TextDelta);
    if (update.Stats is { } s)
        Console.WriteLine($"\n\n{s.GeneratedTokens} tokens, first after {s.TimeToFirstToken.TotalMilliseconds:F1} ms, {s.TokensPerSecond:F0} tokens/s ({s.FinishReason})");
}
