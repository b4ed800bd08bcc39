using Microsoft.Extensions.AI;
using OnnxMultimodal.Chat;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Text;

namespace OnnxMultimodal.Tests;

/// <summary>MultimodalChatClient on tiny-llama: what Microsoft.Extensions.AI's abstractions expect of a chat client
/// (streaming concatenates to the response, cancellation, options honoured), checked against the pipeline's own
/// output for the same rendered prompt.</summary>
public class ChatClientTests
{
    private MultimodalPipeline _pipeline = null!;
    private MultimodalChatClient _client = null!;

    [OneTimeSetUp]
    public async Task Load()
    {
        _pipeline = await MultimodalPipeline.LoadAsync(TestData.TinyLlama);
        _client = _pipeline.AsChatClient();
    }

    [OneTimeTearDown]
    public void Unload()
    {
        _client.Dispose();   // does not own the pipeline
        _pipeline.Dispose();
    }

    private static readonly ChatMessage[] Conversation =
    [
        new(ChatRole.System, "Be brief."),
        new(ChatRole.User, "Once upon a time"),
        new(ChatRole.Assistant, "there was a fox"),
        new(ChatRole.User, "What happened next?"),
    ];

    private const string Rendered = "<|user|>Be brief.\n\nOnce upon a time<|end|><|assistant|>there was a fox<|end|><|user|>What happened next?<|end|><|assistant|>";

    [Test]
    public async Task Multi_turn_conversation_is_rendered_by_the_template_and_generates_what_the_pipeline_does()
    {
        var options = new ChatOptions { MaxOutputTokens = 24 };
        var response = await _client.GetResponseAsync(Conversation, options);
        var (text, stats) = await _pipeline.GenerateTextAsync(new GenerationRequest(Rendered) { Sampling = new SamplingOptions { MaxNewTokens = 24 } });
        Assert.That(response.Text, Is.EqualTo(text));
        Assert.That(response.Usage!.InputTokenCount, Is.EqualTo(stats.PromptTokens));
        Assert.That(response.Usage.InputTokenCount, Is.EqualTo(1 + _pipeline.Tokenizer.Encode(Rendered).Count), "BOS once, then the rendered turns");
        Assert.That(response.Usage.OutputTokenCount, Is.EqualTo(stats.GeneratedTokens));
        Assert.That(response.Usage.TotalTokenCount, Is.EqualTo(stats.PromptTokens + stats.GeneratedTokens));
        Assert.That(response.FinishReason, Is.EqualTo(stats.FinishReason == FinishReason.StopToken ? ChatFinishReason.Stop : ChatFinishReason.Length));
        Assert.That(response.Messages, Has.Count.EqualTo(1));
        Assert.That(response.Messages[0].Role, Is.EqualTo(ChatRole.Assistant));
        Assert.That(response.ModelId, Is.EqualTo("tiny-llama"));
    }

    [Test]
    public async Task Streaming_updates_concatenate_to_the_non_streaming_response()
    {
        var options = new ChatOptions { MaxOutputTokens = 30, Temperature = 0.9f, TopK = 50, Seed = 11 };
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in _client.GetStreamingResponseAsync(Conversation, options)) updates.Add(u);
        var response = await _client.GetResponseAsync(Conversation, options);
        Assert.That(updates.Count(u => u.Text.Length > 0), Is.GreaterThan(1), "text arrives token by token");
        Assert.That(string.Concat(updates.Select(u => u.Text)), Is.EqualTo(response.Text));
        Assert.That(updates.ToChatResponse().Text, Is.EqualTo(response.Text));
        Assert.That(updates.Select(u => u.ResponseId).Distinct().Count(), Is.EqualTo(1));
        Assert.That(updates[^1].Contents.OfType<UsageContent>().Single().Details.OutputTokenCount, Is.EqualTo(response.Usage!.OutputTokenCount));
        Assert.That(updates[^1].FinishReason, Is.EqualTo(response.FinishReason));
    }

    [Test]
    public async Task MaxOutputTokens_and_seed_are_honoured()
    {
        var five = await _client.GetResponseAsync("Hello", new ChatOptions { MaxOutputTokens = 5, Temperature = 1f });
        Assert.That(five.Usage!.OutputTokenCount, Is.LessThanOrEqualTo(5));
        if (five.Usage.OutputTokenCount == 5) Assert.That(five.FinishReason, Is.EqualTo(ChatFinishReason.Length));

        var sampled = new ChatOptions { MaxOutputTokens = 40, Temperature = 1.2f, Seed = 1234 };
        var a = await _client.GetResponseAsync("Hello", sampled);
        var b = await _client.GetResponseAsync("Hello", sampled.Clone());
        var c = await _client.GetResponseAsync("Hello", new ChatOptions { MaxOutputTokens = 40, Temperature = 1.2f, Seed = 99 });
        Assert.That(b.Text, Is.EqualTo(a.Text), "same seed, same text");
        Assert.That(c.Text, Is.Not.EqualTo(a.Text), "another seed draws other tokens (40 draws at temperature 1.2 over a 721-token vocabulary)");

        // The same sampling through the pipeline directly gives the same text: the options map one to one.
        var direct = await _pipeline.GenerateTextAsync(new GenerationRequest("<|user|>Hello<|end|><|assistant|>")
        {
            Sampling = new SamplingOptions { MaxNewTokens = 40, Temperature = 1.2f, Seed = 1234 },
        });
        Assert.That(a.Text, Is.EqualTo(direct.Text));
    }

    [Test]
    public async Task FrequencyPenalty_maps_to_the_repetition_penalty()
    {
        var chat = await _client.GetResponseAsync("Hello", new ChatOptions { MaxOutputTokens = 40, FrequencyPenalty = 0.5f });
        var direct = await _pipeline.GenerateTextAsync(new GenerationRequest("<|user|>Hello<|end|><|assistant|>")
        {
            Sampling = new SamplingOptions { MaxNewTokens = 40, RepetitionPenalty = 1.5f },
        });
        var plain = await _pipeline.GenerateTextAsync(new GenerationRequest("<|user|>Hello<|end|><|assistant|>") { Sampling = new SamplingOptions { MaxNewTokens = 40 } });
        Assert.That(chat.Text, Is.EqualTo(direct.Text));
        Assert.That(direct.Text, Is.Not.EqualTo(plain.Text), "the penalty changes greedy output on this model (else the test proves nothing)");
    }

    [Test]
    public async Task Stop_sequences_end_the_text_before_the_first_occurrence()
    {
        var full = await _client.GetResponseAsync("Hello", new ChatOptions { MaxOutputTokens = 40 });
        Assume.That(full.Text.Length, Is.GreaterThan(12), "needs some text to cut");
        string stop = full.Text.Substring(full.Text.Length / 2, 3);
        var cut = await _client.GetResponseAsync("Hello", new ChatOptions { MaxOutputTokens = 40, StopSequences = ["never-appears", stop] });
        Assert.That(cut.Text, Is.EqualTo(full.Text[..full.Text.IndexOf(stop, StringComparison.Ordinal)]));
        Assert.That(cut.FinishReason, Is.EqualTo(ChatFinishReason.Stop));
        Assert.That(cut.Usage!.OutputTokenCount, Is.LessThan(full.Usage!.OutputTokenCount!.Value));
        Assert.That(cut.Usage.InputTokenCount, Is.EqualTo(full.Usage.InputTokenCount));

        // Streaming never hands out a piece of the stop sequence first.
        var streamed = new List<string>();
        await foreach (var u in _client.GetStreamingResponseAsync("Hello", new ChatOptions { MaxOutputTokens = 40, StopSequences = [stop] })) streamed.Add(u.Text);
        Assert.That(string.Concat(streamed), Is.EqualTo(cut.Text));
    }

    [Test]
    public async Task Cancelling_mid_stream_throws_and_the_client_keeps_serving()
    {
        using var cts = new CancellationTokenSource();
        int seen = 0;
        Assert.That(async () =>
        {
            await foreach (var u in _client.GetStreamingResponseAsync(Conversation, new ChatOptions { MaxOutputTokens = 200 }, cts.Token))
                if (++seen == 3) cts.Cancel();
        }, Throws.InstanceOf<OperationCanceledException>());
        Assert.That(seen, Is.EqualTo(3), "no update after the cancel");
        var after = await _client.GetResponseAsync("Hello", new ChatOptions { MaxOutputTokens = 4 });
        Assert.That(after.Usage!.OutputTokenCount, Is.GreaterThan(0));
    }

    [Test]
    public void Unsupported_options_and_contents_are_refused_by_name()
    {
        Assert.That(() => _client.GetResponseAsync("x", new ChatOptions { Tools = [AIFunctionFactory.Create(() => 1, "one")] }),
                    Throws.InstanceOf<InvalidInputException>().With.Property(nameof(InvalidInputException.Input)).EqualTo("options.Tools"));
        Assert.That(() => _client.GetResponseAsync("x", new ChatOptions { ResponseFormat = ChatResponseFormat.Json }),
                    Throws.InstanceOf<InvalidInputException>().With.Property(nameof(InvalidInputException.Input)).EqualTo("options.ResponseFormat"));
        Assert.That(() => _client.GetResponseAsync("x", new ChatOptions { PresencePenalty = 0.5f }), Throws.InstanceOf<InvalidInputException>());
        Assert.That(() => _client.GetResponseAsync("x", new ChatOptions { ModelId = "gpt-x" }), Throws.InstanceOf<InvalidInputException>());
        Assert.That(() => _client.GetResponseAsync("x", new ChatOptions { TopP = 1.5f }),
                    Throws.InstanceOf<InvalidInputException>().With.Property(nameof(InvalidInputException.Input)).EqualTo("options.TopP"));
        Assert.That(() => _client.GetResponseAsync("x", new ChatOptions { FrequencyPenalty = -1f }), Throws.InstanceOf<InvalidInputException>());
        var wav = File.ReadAllBytes(Path.Combine(TestData.Model("tiny-seamless"), "reference", "robot_16k.wav"));
        Assert.That(() => _client.GetResponseAsync([new ChatMessage(ChatRole.User, [new TextContent("hi"), new DataContent(wav, "audio/wav")])]),
                    Throws.InstanceOf<InvalidInputException>().With.Message.StartsWith("messages[0].Contents[1]: ").And.Message.Contains("no speech encoder"));
        Assert.That(() => _client.GetResponseAsync([new ChatMessage(ChatRole.User, [new DataContent(new byte[] { 1 }, "image/png")])]),
                    Throws.InstanceOf<InvalidInputException>().With.Message.Contains("no image encoder"));
        Assert.That(() => _client.GetResponseAsync("x", new ChatOptions { AdditionalProperties = new() { ["output"] = "image" } }),
                    Throws.InstanceOf<InvalidInputException>().With.Message.Contains("no image decoder"));
    }

    [Test]
    public void GetService_exposes_the_pipeline_template_and_metadata()
    {
        Assert.That(_client.GetService<MultimodalPipeline>(), Is.SameAs(_pipeline));
        Assert.That(_client.GetService<ChatTemplate>()!.Source, Is.EqualTo("built-in:role-tokens"));
        Assert.That(_client.GetService<ChatClientMetadata>()!.DefaultModelId, Is.EqualTo("tiny-llama"));
        Assert.That(_client.GetService<IChatClient>(), Is.SameAs(_client));
        Assert.That(_client.GetService<MultimodalPipeline>("some-key"), Is.Null);
    }

    [Test]
    public async Task An_owning_client_disposes_its_pipeline()
    {
        var pipeline = await MultimodalPipeline.LoadAsync(TestData.TinyLlama);
        var client = pipeline.AsChatClient(ownsPipeline: true);
        Assert.That((await client.GetResponseAsync("Hi", new ChatOptions { MaxOutputTokens = 2 })).Usage!.OutputTokenCount, Is.GreaterThan(0));
        client.Dispose();
        Assert.That(() => client.GetResponseAsync("Hi"), Throws.InstanceOf<ObjectDisposedException>());
        Assert.That(async () => await pipeline.GenerateTextAsync(new GenerationRequest("Hi")), Throws.Exception, "the pipeline was disposed with its client");
    }

    [Test]
    public async Task A_real_template_from_tokenizer_config_is_used_and_its_bos_is_not_doubled()
    {
        string dir = TestData.CopyModel("tiny-llama");
        try
        {
            string config = Path.Combine(dir, "tokenizer_config.json");
            var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(config))!;
            json["chat_template"] = File.ReadAllText(Path.Combine(TestData.RepoRoot, "tests", "OnnxMultimodal.Tests", "Fixtures", "chat_templates", "llama3.jinja"));
            File.WriteAllText(config, json.ToJsonString());   // bos_token stays "<|bos|>", the tiny tokenizer's BOS
            await using var pipeline = await MultimodalPipeline.LoadAsync(dir);
            using var client = pipeline.AsChatClient();
            string rendered = client.Template!.Render([new("user", "Hello")]);
            Assert.That(rendered, Does.StartWith("<|bos|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"));
            var response = await client.GetResponseAsync("Hello", new ChatOptions { MaxOutputTokens = 4 });
            var direct = await pipeline.GenerateTextAsync(new GenerationRequest(rendered["<|bos|>".Length..]) { Sampling = new SamplingOptions { MaxNewTokens = 4 } });
            Assert.That(response.Usage!.InputTokenCount, Is.EqualTo(direct.Stats.PromptTokens));
            Assert.That(response.Usage.InputTokenCount, Is.EqualTo(_pipeline.Tokenizer.Encode(rendered).Count), "one BOS: the pipeline's, not the template's too");
            Assert.That(response.Text, Is.EqualTo(direct.Text));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
