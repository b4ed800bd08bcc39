using Microsoft.Extensions.AI;
using OnnxMultimodal.Chat;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

/// <summary>Images and audio through IChatClient (tiny-chameleon, tiny-seamless), each compared to the pipeline's
/// direct output for the same request.</summary>
public class ChatClientMultimodalTests
{
    private static string Reference(string model, string file) => Path.Combine(TestData.Model(model), "reference", file);

    [Test]
    public async Task An_image_and_a_question_give_what_the_pipeline_gives_for_the_same_prompt()
    {
        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-chameleon"));
        using var client = pipeline.AsChatClient();
        byte[] png = File.ReadAllBytes(Reference("tiny-chameleon", "shapes.png"));
        var message = new ChatMessage(ChatRole.User, [new DataContent(png, "image/png"), new TextContent("What is this?")]);
        var response = await client.GetResponseAsync([message], new ChatOptions { MaxOutputTokens = 12 });

        // The role-tokens template puts the image where it was in the message: <|user|>, image span, text, <|end|><|assistant|>.
        var direct = new GenerationRequest([Part.Text("<|user|>"), Part.Image(png), Part.Text("What is this?<|end|><|assistant|>")])
        {
            Sampling = new SamplingOptions { MaxNewTokens = 12 },
        };
        var (text, stats) = await pipeline.GenerateTextAsync(direct);
        Assert.That(response.Text, Is.EqualTo(text));
        Assert.That(response.Usage!.InputTokenCount, Is.EqualTo(stats.PromptTokens));
        int tokensPerImage = pipeline.Package.Manifest.Image!.TokensPerImage;
        Assert.That(stats.PromptTokens, Is.EqualTo(1 + pipeline.Tokenizer.Encode("<|user|>").Count + tokensPerImage + 2
                                                   + pipeline.Tokenizer.Encode("What is this?<|end|><|assistant|>").Count));

        // A stop sequence ends it early; the input count (computed without the image encoder then) is unchanged.
        if (text.Length > 4)
        {
            var cut = await client.GetResponseAsync([message], new ChatOptions { MaxOutputTokens = 12, StopSequences = [text.Substring(2, 2)] });
            Assert.That(cut.Usage!.InputTokenCount, Is.EqualTo(stats.PromptTokens));
        }
    }

    [Test]
    public async Task An_image_request_returns_the_png_the_pipeline_draws()
    {
        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-chameleon"));
        using var client = pipeline.AsChatClient();
        var options = new ChatOptions { Seed = 3, AdditionalProperties = new() { [MultimodalChatClient.OutputKey] = "image" } };
        var response = await client.GetResponseAsync("a red circle", options);
        var image = response.Messages.Single().Contents.OfType<DataContent>().Single();
        Assert.That(image.MediaType, Is.EqualTo("image/png"));

        var g = pipeline.Package.Manifest.Guidance!;   // image requests default to the model's guidance sampling
        var (direct, stats) = await pipeline.GenerateImageAsync(new GenerationRequest("a red circle")
        {
            Sampling = new SamplingOptions { Temperature = g.Temperature, TopP = g.TopP, Seed = 3 },
        });
        Assert.That(image.Data.ToArray(), Is.EqualTo(direct.Png));
        Assert.That(image.Data.Span[..8].ToArray(), Is.EqualTo(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }), "PNG signature");
        using var decoded = SixLabors.ImageSharp.Image.Load(image.Data.Span);
        Assert.That((decoded.Width, decoded.Height), Is.EqualTo((direct.Width, direct.Height)));
        Assert.That(response.Usage!.OutputTokenCount, Is.EqualTo(pipeline.Package.Manifest.Image!.TokensPerImage));
        Assert.That(response.Usage.InputTokenCount, Is.EqualTo(stats.PromptTokens));
        Assert.That(response.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
    }

    [TestCase("spa")]
    [TestCase("fra")]
    public async Task An_audio_clip_is_transcribed_as_the_pipeline_does(string language)
    {
        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-seamless"));
        using var client = pipeline.AsChatClient();
        Assert.That(client.Template, Is.Null, "speech->text has no conversation template");
        string wavPath = Reference("tiny-seamless", "robot_16k.wav");
        var message = new ChatMessage(ChatRole.User, [new TextContent("Transcribe this."), new DataContent(File.ReadAllBytes(wavPath), "audio/wav")]);
        var options = new ChatOptions { MaxOutputTokens = 20, AdditionalProperties = new() { [MultimodalChatClient.TargetLanguageKey] = language } };
        var streamed = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync([message], options)) streamed.Add(u);
        var (text, stats) = await pipeline.GenerateTextAsync(new GenerationRequest([Part.Audio(wavPath)])
        {
            TargetLanguage = language,
            Sampling = new SamplingOptions { MaxNewTokens = 20 },
        });
        var response = streamed.ToChatResponse();
        Assert.That(response.Text, Is.EqualTo(text));
        Assert.That(stats.GeneratedTokens, Is.GreaterThan(0));
        Assert.That(response.Usage!.OutputTokenCount, Is.EqualTo(stats.GeneratedTokens));
        Assert.That(response.Usage.InputTokenCount, Is.EqualTo(stats.PromptTokens));
    }

    [Test]
    public async Task Speech_requests_need_exactly_one_wav()
    {
        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-seamless"));
        using var client = pipeline.AsChatClient();
        Assert.That(() => client.GetResponseAsync("no audio here"), Throws.InstanceOf<InvalidInputException>().With.Message.Contains("exactly one audio/wav"));
        var mp3 = new ChatMessage(ChatRole.User, [new DataContent(new byte[] { 1, 2 }, "audio/mpeg")]);
        Assert.That(() => client.GetResponseAsync([mp3]), Throws.InstanceOf<InvalidInputException>().With.Message.Contains("send audio/wav"));
        var broken = new ChatMessage(ChatRole.User, [new DataContent(new byte[] { 1, 2, 3 }, "audio/wav")]);
        Assert.That(() => client.GetResponseAsync([broken]), Throws.InstanceOf<OnnxMultimodalException>());
    }
}
