// Text -> image: guided image-token decoding (conditional and unconditional streams in one batch),
// then the VQ decoder; writes a PNG. The trained shapes-world model by default.
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

string root = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..");
string model = args.Length > 0 ? args[0] : Path.Combine(root, "models", "shapes");
string prompt = args.Length > 1 ? args[1] : "A red circle on a white background";
string output = args.Length > 2 ? args[2] : "imagine.png";

await using var pipeline = await MultimodalPipeline.LoadAsync(model);
var request = new GenerationRequest(prompt)
{
    Output = OutputModality.Image,
    GuidanceScale = 3f,
    Sampling = new SamplingOptions { Temperature = 1f, TopP = 0.9f, Seed = 7 },
};
var (image, stats) = await pipeline.GenerateImageAsync(request);
await File.WriteAllBytesAsync(output, image.Png);
Console.WriteLine($"{output}: {image.Width}x{image.Height} from {image.Codes.Count} image tokens in {stats.Total.TotalMilliseconds:F0} ms");
