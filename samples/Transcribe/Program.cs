// Speech -> text: WAV (any rate, any channels) -> Kaldi filter banks -> speech encoder -> text decoder,
// once per target language. Tiny Seamless by default (random weights: the text is gibberish).
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

// Model: argument 1, else $OMM_MODELS/tiny-seamless, else models/tiny-seamless next to the app (see ModelLocation.cs).
string model = ModelLocation.Find(args, "tiny-seamless");
string wav = args.Length > 1 ? args[1] : Path.Combine(model, "reference", "stereo_44k.wav");

await using var pipeline = await MultimodalPipeline.LoadAsync(model);
foreach (var lang in new[] { "spa", "fra" })
{
    var request = new GenerationRequest([Part.Audio(wav)]) { TargetLanguage = lang, Sampling = new SamplingOptions { MaxNewTokens = 20 } };
    var (text, stats) = await pipeline.GenerateTextAsync(request);
    Console.WriteLine($"[{lang}] {text}  ({stats.GeneratedTokens} tokens, {stats.Total.TotalMilliseconds:F0} ms)");
}
