// Speech -> text: WAV (any rate, any channels) -> Kaldi filter banks -> speech encoder -> text decoder,
// once per target language. The trained spoken-phrases model by default (English and Spanish).
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

string root = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..");
string model = args.Length > 0 ? args[0] : Path.Combine(root, "models", "speech");
string wav = args.Length > 1 ? args[1] : Path.Combine(root, "tests", "OnnxMultimodal.Tests", "Fixtures", "shapes-world", "a_red_triangle.wav");

await using var pipeline = await MultimodalPipeline.LoadAsync(model);
foreach (var lang in new[] { "eng", "spa" })
{
    var request = new GenerationRequest([Part.Audio(wav)]) { TargetLanguage = lang, Sampling = new SamplingOptions { MaxNewTokens = 20 } };
    var (text, stats) = await pipeline.GenerateTextAsync(request);
    Console.WriteLine($"[{lang}] {text}  ({stats.GeneratedTokens} tokens, {stats.Total.TotalMilliseconds:F0} ms)");
}
