// Speech -> text: WAV (any rate, any channels) -> Kaldi filter banks -> speech encoder -> text decoder,
// once per target language. The trained spoken-phrases model by default (English and Spanish).
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

// Model: argument 1, else $OMM_MODELS/speech, else models/speech next to the app (see ModelLocation.cs).
string model = ModelLocation.Find(args, "speech");
string wav = args.Length > 1 ? args[1] : Path.Combine(model, "examples", "a_red_triangle.wav");

await using var pipeline = await MultimodalPipeline.LoadAsync(model);
foreach (var lang in new[] { "eng", "spa" })
{
    var request = new GenerationRequest([Part.Audio(wav)]) { TargetLanguage = lang, Sampling = new SamplingOptions { MaxNewTokens = 20 } };
    var (text, stats) = await pipeline.GenerateTextAsync(request);
    Console.WriteLine($"[{lang}] {text}  ({stats.GeneratedTokens} tokens, {stats.Total.TotalMilliseconds:F0} ms)");
}
