// Image -> text: caption an image, then ask a question about it (the trained shapes-world model by default).
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

// Model: argument 1, else $OMM_MODELS/shapes, else models/shapes next to the app (see ModelLocation.cs).
string model = ModelLocation.Find(args, "shapes");
string image = args.Length > 1 ? args[1] : Path.Combine(model, "examples", "red_triangle_on_white.png");

await using var pipeline = await MultimodalPipeline.LoadAsync(model);
var sampling = new SamplingOptions { MaxNewTokens = 24 };
foreach (var prompt in new[] { "A photo of", "What colour is the triangle?" })
{
    var request = new GenerationRequest([Part.Image(image), Part.Text(prompt)]) { Sampling = sampling };
    Console.Write($"{prompt} ->");
    await foreach (var update in pipeline.GenerateAsync(request)) Console.Write(update.TextDelta);
    Console.WriteLine();
}
