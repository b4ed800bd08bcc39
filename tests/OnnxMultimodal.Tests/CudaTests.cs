using System.Diagnostics;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The CUDA decode loop. Runs where the CUDA build of ONNX Runtime and a GPU are present (build the
/// tests with -p:OmmGpu=true; .github/workflows/cuda.yml does it on a GPU runner); elsewhere every
/// test is skipped with the reason shown.
/// </summary>
[Category("Cuda")]
public class CudaTests
{
    private static readonly ExecutionOptions Cuda = CudaTestSupport.Options;

    [OneTimeSetUp]
    public void RequireCuda()
    {
        CudaTestSupport.RequireCuda();
    }

    private static int[] Greedy(string model, ExecutionOptions execution, IReadOnlyList<int> prompt, int tokens)
    {
        using var engine = OrtDecodeEngine.Create(ModelPackage.Open(TestData.Model(model)), execution);
        using var seq = engine.Start(prompt, new SamplingOptions { MaxNewTokens = tokens, IgnoreStopTokens = true });
        while (!seq.IsDone) seq.GenerateNextToken();
        return seq.Tokens.Skip(prompt.Count).ToArray();
    }

    [TestCase("tiny-llama", 1.0)]        // fp32 reference graph, device-resident ping-pong KV
    [TestCase("tiny-llama-fp16", 0.9)]   // fused fp16, device-resident shared KV
    [TestCase("tiny-llama-ref16", 0.9)]  // reference graph in fp16, device-resident fp16 ping-pong KV
    public void Reference_tokens_on_cuda(string model, double agreement)
    {
        foreach (var p in TestData.LoadTextReference(model).Prompts)
        {
            var tokens = Greedy(model, Cuda, p.Ids, p.Greedy.Length);
            Assert.That(tokens.Zip(p.Greedy).Count(x => x.First == x.Second), Is.GreaterThanOrEqualTo((int)Math.Ceiling(agreement * p.Greedy.Length)), p.ToString());
        }
    }

    [Test]
    public void Reference_graph_with_its_cache_on_the_device_equals_the_host_cache_and_refuses_cuda_graphs()
    {
        foreach (var p in TestData.LoadTextReference("tiny-llama").Prompts)
        {
            var device = Greedy("tiny-llama", Cuda, p.Ids, 48);
            var host = Greedy("tiny-llama", Cuda with { DeviceResident = false }, p.Ids, 48);
            Assert.That(device, Is.EqualTo(host), p.ToString());
            Assert.That(device.Take(p.Greedy.Length), Is.EqualTo(p.Greedy), p.ToString());
        }
        var e = Assert.Throws<InvalidInputException>(() => Greedy("tiny-llama", Cuda with { CudaGraph = true }, [1, 2, 3], 2))!;
        Assert.That(e.Message, Does.Contain("shared-cache"));
        // Fused graphs in fp32 (the CPU's) are named as such on CUDA, where GroupQueryAttention is fp16 only.
        e = Assert.Throws<InvalidInputException>(() => Greedy("tiny-llama-fused", Cuda, [1, 2, 3], 2))!;
        Assert.That(e.Message, Does.Contain("fp16").And.Contain("decoder.onnx"));
        e = Assert.Throws<InvalidInputException>(() => OrtDecodeEngine.Create(ModelPackage.Open(TestData.Model("tiny-seamless")), Cuda with { CudaGraph = true }))!;
        Assert.That(e.Message, Does.Contain("CUDA graphs need a fused shared-cache"));
    }

    [Test]
    public async Task Cuda_graph_replay_gives_the_same_tokens_as_plain_runs_across_requests()
    {
        var prompts = TestData.LoadTextReference("tiny-llama-fp16").Prompts.Select(p => p.Ids).ToArray();
        var plain = prompts.Select(p => Greedy("tiny-llama-fp16", Cuda, p, 64)).ToArray();
        var e = Assert.Throws<InvalidInputException>(() => Greedy("tiny-llama-fp16", Cuda with { DeviceResident = false }, prompts[0], 4))!;
        Assert.That(e.Message, Does.Contain("in place"), "a host cache cannot serve an in-place (shared) graph on CUDA");

        // One engine, many requests: each pooled cache replays the graph captured with its own buffers.
        using var engine = OrtDecodeEngine.Create(ModelPackage.Open(TestData.Model("tiny-llama-fp16")), Cuda with { CudaGraph = true });
        int[] Run(int[] prompt)
        {
            using var seq = engine.Start(prompt, new SamplingOptions { MaxNewTokens = 64, IgnoreStopTokens = true });
            while (!seq.IsDone) seq.GenerateNextToken();
            return seq.Tokens.Skip(prompt.Length).ToArray();
        }
        for (int round = 0; round < 2; round++)
            Assert.That(prompts.Select(Run).ToArray(), Is.EqualTo(plain), $"sequential, round {round}");
        var concurrent = await Task.WhenAll(prompts.Select(p => Task.Run(() => Run(p))));
        Assert.That(concurrent, Is.EqualTo(plain), "concurrent requests, one graph per pooled cache");
    }

    // tiny-chameleon-fp16: the fused fp16 Chameleon decoder (GroupQueryAttention on CUDA is fp16/bf16 only);
    // -last: the same with logits only at each row's last position, whose index arithmetic must stay on
    // the device (ONNX Runtime refuses to capture a graph with host/device copies).
    [TestCase("tiny-chameleon-fp16")]
    [TestCase("tiny-chameleon-fp16-last")]
    public void Guided_image_tokens_under_a_cuda_graph_equal_plain_runs_and_pytorch(string model)
    {
        var reference = ChameleonReference.Load();
        var package = ModelPackage.Open(TestData.Model(model));
        var image = package.Manifest.Image!;
        using var plain = OrtDecodeEngine.Create(package, Cuda);
        using var graph = OrtDecodeEngine.Create(package, Cuda with { CudaGraph = true });
        var constraint = new ImageSpanConstraint(plain.VocabularySize, image.CodeToToken);
        foreach (var g in reference.Imagine.Where(x => x.Mode == "greedy"))
        {
            var a = ClassifierFreeGuidance.Generate(plain, g.CondIds, g.UncondIds, g.Tokens.Length, g.Scale, SamplingOptions.Greedy, constraint);
            var b = ClassifierFreeGuidance.Generate(graph, g.CondIds, g.UncondIds, g.Tokens.Length, g.Scale, SamplingOptions.Greedy, constraint);
            var c = ClassifierFreeGuidance.Generate(graph, g.CondIds, g.UncondIds, g.Tokens.Length, g.Scale, SamplingOptions.Greedy, constraint);
            Assert.That(b, Is.EqualTo(a), "graph replay vs plain runs");
            Assert.That(c, Is.EqualTo(a), "second request replays the same graph");
            Assert.That(a.All(constraint.IsAllowed), "image tokens only");
            // fp16 against the fp32 reference: the tiny model's top-2 gaps (~0.004) are below fp16 rounding, so this is reported, not bounded.
            TestContext.Out.WriteLine($"{g}: fp16 on CUDA agrees with fp32 PyTorch on {a.Zip(g.Tokens).Count(x => x.First == x.Second)}/{a.Length} tokens");
        }
    }

    [Test]
    public void Five_hundred_generations_keep_memory_flat_and_cancellation_leaves_the_engine_usable()
    {
        using var engine = OrtDecodeEngine.Create(ModelPackage.Open(TestData.Model("tiny-llama-fp16")), Cuda with { CudaGraph = true });
        var options = new SamplingOptions { MaxNewTokens = 16, IgnoreStopTokens = true };
        int[] prompt = [1, 20, 30, 40];
        long Resident() { GC.Collect(); GC.WaitForPendingFinalizers(); using var p = Process.GetCurrentProcess(); return p.WorkingSet64; }
        for (int i = 0; i < 20; i++) { using var s = engine.Start(prompt, options); while (!s.IsDone) s.GenerateNextToken(); }
        long before = Resident();
        int caches = engine.CachesCreated;
        for (int i = 0; i < 500; i++)
        {
            using var cts = new CancellationTokenSource();
            using var s = engine.Start(prompt, options);
            try
            {
                while (!s.IsDone)
                {
                    s.GenerateNextToken(cts.Token);
                    if (i % 5 == 0 && s.Tokens.Count == prompt.Length + 4) cts.Cancel();
                }
            }
            catch (OperationCanceledException) { }
        }
        Assert.That(engine.CachesCreated, Is.EqualTo(caches), "the device KV cache is reused, not reallocated");
        Assert.That(Resident() - before, Is.LessThan(32L << 20));
        using var after = engine.Start(prompt, options);
        while (!after.IsDone) after.GenerateNextToken();
        Assert.That(after.FinishReason, Is.EqualTo(FinishReason.MaxTokens));
    }

    [Test]
    public void Chameleon_references_on_cuda()
    {
        // fp32 reference graph on CUDA (cache on the host): captions and guided image tokens as PyTorch.
        var reference = ChameleonReference.Load();
        var package = ModelPackage.Open(TestData.Model("tiny-chameleon"));
        using var engine = OrtDecodeEngine.Create(package, Cuda);
        var image = package.Manifest.Image!;
        var suppress = new SuppressTokensProcessor(image.CodeToToken);
        foreach (var c in reference.Captions)
        {
            using var seq = engine.Start(c.Ids, new SamplingOptions { MaxNewTokens = c.Tokens.Length, IgnoreStopTokens = true }, [suppress]);
            while (!seq.IsDone) seq.GenerateNextToken();
            Assert.That(seq.Tokens.Skip(c.Ids.Length), Is.EqualTo(c.Tokens), c.ToString());
        }
        foreach (var g in reference.Imagine)
        {
            var sampling = g.Mode == "greedy" ? SamplingOptions.Greedy : new SamplingOptions { Temperature = g.Temperature, TopP = g.TopP, Seed = g.Seed };
            var tokens = ClassifierFreeGuidance.Generate(engine, g.CondIds, g.UncondIds, g.Tokens.Length, g.Scale, sampling,
                new ImageSpanConstraint(engine.VocabularySize, image.CodeToToken));
            Assert.That(tokens, Is.EqualTo(g.Tokens), g.ToString());
        }
    }

    [Test]
    public async Task Seamless_references_on_cuda()
    {
        // Speech encoder and decoder on CUDA: the sampled transcript of robot_16k from the WAV, as PyTorch.
        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-seamless"), new PipelineOptions { Execution = Cuda });
        string dir = Path.Combine(TestData.Model("tiny-seamless"), "reference");
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "reference.json")));
        var t = doc.RootElement.GetProperty("transcripts").EnumerateArray()
            .First(x => x.GetProperty("audio").GetString() == "robot_16k" && x.GetProperty("mode").GetString() == "sampled");
        var p = t.GetProperty("sampling");
        var expected = t.GetProperty("tokens").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var request = new GenerationRequest([Part.Audio(Path.Combine(dir, "robot_16k.wav"))])
        {
            TargetLanguage = t.GetProperty("lang").GetString(),
            Sampling = new SamplingOptions { Temperature = p.GetProperty("temperature").GetSingle(), TopP = p.GetProperty("top_p").GetSingle(),
                RepetitionPenalty = p.GetProperty("repetition_penalty").GetSingle(), Seed = p.GetProperty("seed").GetUInt64(),
                MaxNewTokens = expected.Length, IgnoreStopTokens = true },
        };
        var (_, stats) = await pipeline.GenerateTextAsync(request);
        Assert.That(stats.Tokens, Is.EqualTo(expected));
    }

    [Test]
    public async Task Every_task_runs_on_cuda()
    {
        var options = new PipelineOptions { Execution = Cuda };
        await using (var chameleon = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-chameleon"), options))
        {
            var image = Path.Combine(TestData.Model("tiny-chameleon"), "reference", "shapes.png");
            var (_, caption) = await chameleon.GenerateTextAsync(new GenerationRequest([Part.Image(image), Part.Text("A photo of")])
                { Sampling = new SamplingOptions { MaxNewTokens = 8, IgnoreStopTokens = true } });
            Assert.That(caption.GeneratedTokens, Is.EqualTo(8));
            var (picture, _) = await chameleon.GenerateImageAsync(new GenerationRequest("a red circle"));
            Assert.That(picture.Codes, Has.Count.EqualTo(chameleon.Package.Manifest.Image!.TokensPerImage));
        }
        // The whole image round trip under a CUDA graph: tokenizer and detokenizer sessions run uncaptured
        // beside the captured decode step, and the image equals the one made without the graph.
        var fused = TestData.Model("tiny-chameleon-fp16");
        GeneratedImage plainImage, graphImage;
        await using (var plain = await MultimodalPipeline.LoadAsync(fused, options))
            (plainImage, _) = await plain.GenerateImageAsync(new GenerationRequest("a red circle"));
        await using (var graph = await MultimodalPipeline.LoadAsync(fused, options with { Execution = Cuda with { CudaGraph = true } }))
        {
            var shapes = Path.Combine(TestData.Model("tiny-chameleon"), "reference", "shapes.png");
            for (int i = 0; i < 2; i++)
            {
                (graphImage, _) = await graph.GenerateImageAsync(new GenerationRequest("a red circle"));
                Assert.That(graphImage.Codes, Is.EqualTo(plainImage.Codes), $"request {i}");
                var (_, c) = await graph.GenerateTextAsync(new GenerationRequest([Part.Image(shapes), Part.Text("A photo of")])
                    { Sampling = new SamplingOptions { MaxNewTokens = 8, IgnoreStopTokens = true } });
                Assert.That(c.GeneratedTokens, Is.EqualTo(8));
            }
        }
        await using var seamless = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-seamless"), options);
        var wav = Path.Combine(TestData.Model("tiny-seamless"), "reference", "robot_16k.wav");
        var (_, speech) = await seamless.GenerateTextAsync(new GenerationRequest([Part.Audio(wav)])
            { TargetLanguage = "spa", Sampling = new SamplingOptions { MaxNewTokens = 8, IgnoreStopTokens = true } });
        Assert.That(speech.GeneratedTokens, Is.EqualTo(8));
    }

    [TestCase("tiny-seamless-fp16")]
    [TestCase("tiny-seamless-int4")]
    [TestCase("tiny-seamless-fp16-mha")]
    public async Task Speech_decoder_under_a_cuda_graph_equals_plain_runs_and_pytorch(string model)
    {
        // The fused fp16 / int4 seq2seq decoder on CUDA: greedy transcripts of every reference clip (each
        // a different number of encoder frames) without the graph, then twice under it (one pooled cache,
        // one captured graph, its cross K/V buffers refilled per request); all equal, and close to PyTorch.
        string dir = Path.Combine(TestData.Model("tiny-seamless"), "reference");
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "reference.json")));
        var audio = doc.RootElement.GetProperty("audio").EnumerateArray().ToDictionary(a => a.GetProperty("name").GetString()!, a => a.GetProperty("features_file").GetString()!);
        var cases = doc.RootElement.GetProperty("transcripts").EnumerateArray().Where(t => t.GetProperty("mode").GetString() == "greedy")
            .Select(t => (Audio: t.GetProperty("audio").GetString()!, Ids: t.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray(),
                          Tokens: t.GetProperty("tokens").EnumerateArray().Select(x => x.GetInt32()).ToArray())).ToArray();
        async Task<int[][]> Transcribe(ExecutionOptions execution, int rounds)
        {
            await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.Model(model), new PipelineOptions { Execution = execution });
            var engine = (OrtDecodeEngine)pipeline.Engine;
            var results = new List<int[]>();
            for (int round = 0; round < rounds; round++)
                foreach (var c in cases)
                {
                    using var encoder = pipeline.SpeechEncoder!.Encode(TestData.ReadFloats(Path.Combine(dir, audio[c.Audio])));
                    // An encoder converted with the decoder (fp16 cross K/V) leaves them on the device for the cache to copy.
                    Assert.That(encoder.CrossOnDevice, Is.EqualTo(pipeline.SpeechEncoder.CrossType == engine.KvType));
                    using var seq = engine.StartWithEncoder(encoder, c.Ids, new SamplingOptions { MaxNewTokens = c.Tokens.Length, IgnoreStopTokens = true });
                    while (!seq.IsDone) seq.GenerateNextToken();
                    results.Add(seq.Tokens.Skip(c.Ids.Length).ToArray());
                }
            if (execution.CudaGraph) Assert.That(engine.CachesCreated, Is.EqualTo(1), "one pooled cache (and graph) for every clip");
            return results.ToArray();
        }
        var plain = await Transcribe(Cuda, 1);
        var graph = await Transcribe(Cuda with { CudaGraph = true }, 2);
        Assert.That(graph, Is.EqualTo(plain.Concat(plain).ToArray()), "graph replay vs plain runs, two rounds");
        int agree = plain.Zip(cases).Sum(x => x.First.Zip(x.Second.Tokens).Count(y => y.First == y.Second)), total = cases.Sum(c => c.Tokens.Length);
        TestContext.Out.WriteLine($"{model} on CUDA: {agree}/{total} greedy tokens agree with fp32 PyTorch");
        Assert.That(agree, Is.GreaterThanOrEqualTo((int)Math.Ceiling(0.9 * total)));
    }

    [Test]
    public void An_int4_speech_decoder_with_an_fp16_prefill_decoder_runs_captured() =>
        // tiny-seamless-int4 steps (captured) after tiny-seamless-fp16 runs the prompt into the same cache.
        PrefillDecoderTests.SpeechWithFp16Prefill(Cuda with { CudaGraph = true }, Cuda);
}
