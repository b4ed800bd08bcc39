// Text -> image: guided image-token decoding (conditional and unconditional streams in one batch),
// then the VQ decoder; writes a PNG. The trained shapes-world model by default.
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

// Model: argument 1, else $OMM_MODELS/shapes, else models/shapes next to the app (see ModelLocation.cs).
string model = ModelLocation.Find(args, "shapes");
string prompt = args.Length > 1 ? args[1] : "A red circle on a white background";
// by default next to the app (the build output), never into the folder the sample is started from
string output = args.Length > 2 ? args[2] : Path.Combine(AppContext.BaseDirectory, "imagine.png");

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
