using System.CommandLine;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Cli;

/// <summary><c>omm caption</c>, <c>omm ask</c> and <c>omm imagine</c> for models with a VQ image tokenizer.</summary>
internal static class VisionCommands
{
    private static string DefaultVisionModel => DefaultModels.PathOf(DefaultModels.Shapes);

    private static readonly Option<string> ImageFile = new("--image") { Description = "Image file (PNG, JPEG, GIF, BMP, TGA, TIFF, WebP)", Required = true };

    public static Command Caption() => ImageToText("caption", "Describe an image", "A photo of");

    public static Command Ask()
    {
        var question = new Option<string>("--prompt") { Description = "The question about the image", Required = true };
        return ImageToText("ask", "Answer a question about an image", null, question);
    }

    private static Command ImageToText(string name, string description, string? fixedPrompt, Option<string>? prompt = null)
    {
        var cmd = new Command(name, description) { ImageFile };
        if (prompt is not null) cmd.Options.Add(prompt);
        CliCommon.AddSampling(cmd);
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            string file = r.GetValue(ImageFile)!;
            if (!File.Exists(file)) throw new InvalidInputException("--image", $"file not found: {file}");
            await using var pipeline = await CliConsole.LoadAsync(r.GetValue(CliCommon.Model) ?? DefaultVisionModel, CliCommon.PipelineOptions(r), ct);
            string text = fixedPrompt ?? r.GetValue(prompt!)!;
            var request = new GenerationRequest([Part.Image(r.GetValue(ImageFile)!), Part.Text(text)]) { Sampling = CliCommon.Sampling(r) };
            await foreach (var u in pipeline.GenerateAsync(request, ct)) Console.Write(u.TextDelta);
            Console.WriteLine();
            return 0;
        }, ("parts[0]", "--image")));
        return cmd;
    }

    public static Command Imagine()
    {
        var prompt = new Option<string>("--prompt") { Description = "What to draw", Required = true };
        var output = new Option<string>("--out") { Description = "PNG file to write (.png)", DefaultValueFactory = _ => "image.png" };
        var guidance = new Option<float?>("--guidance") { Description = "Classifier-free guidance scale (default: the model's)" };
        var seed = new Option<ulong?>("--seed") { Description = "Sampling seed" };
        var temperature = new Option<float?>("--temperature") { Description = "Default: the model's (1.0); 0 = greedy" };
        var topP = new Option<float?>("--top-p") { Description = "Default: the model's (0.9)" };
        var cmd = new Command("imagine", "Generate an image from text (guided image-token decoding, then the VQ decoder)") { prompt, output, guidance, seed, temperature, topP };
        cmd.Options.Add(CliCommon.Model);
        cmd.Options.Add(CliCommon.Provider);
        cmd.Options.Add(CliCommon.Threads);
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            string outPath = CliCommon.CheckOutputFile(r.GetValue(output)!, "--out");   // before minutes of generation, not after
            if (Path.GetExtension(outPath) is { Length: > 0 } ext && !ext.Equals(".png", StringComparison.OrdinalIgnoreCase))
                throw new InvalidInputException("--out", $"'{r.GetValue(output)}': imagine writes PNG; name the file .png");
            var options = new PipelineOptions { Execution = CliCommon.Execution(r) };
            string model = r.GetValue(CliCommon.Model) ?? DefaultVisionModel;
            await using var pipeline = await CliConsole.LoadAsync(model, options, ct);
            if (!pipeline.Model.ProducesImages)
                throw new InvalidInputException("--model", $"{model} ({pipeline.Model.Family}) has no image decoder; imagine needs a model that writes images, such as shapes");
            var g = pipeline.Package.Manifest.Guidance ?? new GuidanceManifest();
            var request = new GenerationRequest(r.GetValue(prompt)!)
            {
                Output = OutputModality.Image,
                GuidanceScale = r.GetValue(guidance),
                Sampling = new SamplingOptions { Temperature = r.GetValue(temperature) ?? g.Temperature, TopP = r.GetValue(topP) ?? g.TopP, Seed = r.GetValue(seed) },
            };
            int n = 0, total = pipeline.Package.Manifest.Image!.TokensPerImage;
            await foreach (var u in pipeline.GenerateAsync(request, ct))
            {
                if (u.TokenId is not null && ++n % Math.Max(1, total / 16) == 0) Console.Error.Write($"\r{n}/{total} image tokens");
                if (u.Image is { } image)
                {
                    await CliCommon.WriteOutputFile(outPath, image.Png, "--out", ct);
                    Console.Error.WriteLine($"\rwrote {r.GetValue(output)} ({image.Width}x{image.Height}, {total} tokens, {u.Stats!.Total.TotalMilliseconds:F0} ms)");
                }
            }
            return 0;
        }));
        return cmd;
    }
}
