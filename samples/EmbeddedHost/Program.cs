// How a desktop or service host embeds the pipeline: load once with progress, serve several requests
// at the same time, cancel one of them half-way (as a "Stop" button would), keep serving afterwards.
using OnnxMultimodal;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

// Model: argument 1, else $OMM_MODELS/code, else models/code next to the app (see ModelLocation.cs).
string model = ModelLocation.Find(args, "code");

var progress = new Progress<float>(p => Console.WriteLine($"loading {p:P0}"));
MultimodalPipeline pipeline;
try
{
    pipeline = await MultimodalPipeline.LoadAsync(model, new PipelineOptions(), progress);
}
catch (OnnxMultimodalException e)   // every library error names the file or input at fault
{
    Console.Error.WriteLine($"cannot load the model: {e.Message}");
    return 1;
}

await using (pipeline)
{
    var sampling = new SamplingOptions { MaxNewTokens = 40, IgnoreStopTokens = true };
    using var stop = new CancellationTokenSource();

    async Task<string> Serve(string name, string prompt, CancellationToken ct)
    {
        int tokens = 0;
        try
        {
            await foreach (var u in pipeline.GenerateAsync(new GenerationRequest(prompt) { Sampling = sampling }, ct))
                if (u.TokenId is not null && ++tokens == 10 && name == "B") stop.Cancel();   // the user pressed Stop
            return $"{name}: finished, {tokens} tokens";
        }
        catch (OperationCanceledException)
        {
            return $"{name}: stopped by the user after {tokens} tokens";
        }
    }

    var results = await Task.WhenAll(
        Serve("A", "The weather today is", CancellationToken.None),
        Serve("B", "Once upon a time", stop.Token),
        Serve("C", "def add(a, b):", CancellationToken.None));
    foreach (var r in results) Console.WriteLine(r);

    var (text, stats) = await pipeline.GenerateTextAsync(new GenerationRequest("Still serving:") { Sampling = sampling });
    Console.WriteLine($"after the cancel: {stats.GeneratedTokens} more tokens, ok");
}
return 0;
