// Image -> text: caption an image, then ask a question about it (the trained shapes-world model by default).
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

string root = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..");
string model = args.Length > 0 ? args[0] : Path.Combine(root, "models", "shapes");
string image = args.Length > 1 ? args[1] : Path.Combine(root, "tests", "OnnxMultimodal.Tests", "Fixtures", "shapes-world", "red_triangle_on_white.png");

await using var pipeline = await MultimodalPipeline.LoadAsync(model);
var sampling = new SamplingOptions { MaxNewTokens = 24 };
foreach (var prompt in new[] { "A photo of", "What colour is the triangle?" })
{
    var request = new GenerationRequest([Part.Image(image), Part.Text(prompt)]) { Sampling = sampling };
    Console.Write($"{prompt} ->");
    await foreach (var update in pipeline.GenerateAsync(request)) Console.Write(update.TextDelta);
    Console.WriteLine();
}
