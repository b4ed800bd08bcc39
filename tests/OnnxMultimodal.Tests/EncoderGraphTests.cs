using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The speech encoder replayed as a CUDA graph per exact frame count (<c>ExecutionOptions.EncoderCudaGraph</c>)
/// against plain runs: the same encoder states and cross K/V, the same transcripts. On CUDA only; elsewhere
/// skipped with the reason, like <see cref="CudaTests"/>. On the H100 (2026-11-27) ONNX Runtime refused to capture the
/// committed encoders in one session for all lengths (their shape arithmetic ran on the CPU); each length now has a
/// session with its dimensions fixed, which folds that arithmetic away (<see cref="EncoderGraphCpuTests"/>). These
/// tests have not run on a GPU since that change.
/// </summary>
[Category("Cuda")]
public class EncoderGraphCudaTests
{
    private static readonly ExecutionOptions Cuda = CudaTestSupport.Options;

    [OneTimeSetUp]
    public void RequireCuda()
    {
        CudaTestSupport.RequireCuda();
    }

    private static string Ref(string file) => Path.Combine(TestData.Model("tiny-seamless"), "reference", file);

    [TestCase("tiny-seamless-fp16-mha", 8e-3)]   // fp16 encoder, fp16 cross K/V (the large benchmark's layout): 2.1e-3 measured on an H100
    [TestCase("tiny-seamless-fp16", 1e-4)]       // fp32 encoder writing fp16 cross K/V: 7.7e-7 measured (another cuDNN algorithm may sum in another order)
    public async Task Captured_encoder_gives_the_plain_states_and_transcripts(string model, double tolerance)
    {
        var clips = new[] { "robot_16k", "fox_16k", "sky_16k" };
        await using var plain = await MultimodalPipeline.LoadAsync(TestData.Model(model), new PipelineOptions { Execution = Cuda with { CudaGraph = true } });
        await using var graphs = await MultimodalPipeline.LoadAsync(TestData.Model(model),
            new PipelineOptions { Execution = Cuda with { CudaGraph = true, EncoderCudaGraph = true } });
        var g = graphs.SpeechEncoder!.Graphs;
        Assert.That(g, Is.Not.Null, "the encoder graphs were created");
        foreach (string clip in clips)
        {
            var features = TestData.ReadFloats(Ref(clip + ".features.bin"));
            using var expected = plain.SpeechEncoder!.Encode(features);
            var want = expected.States.ToArray();
            for (int round = 0; round < 3; round++)   // plain (first sight), capture, replay
            {
                using var got = graphs.SpeechEncoder!.Encode(features);
                Assert.That((got.Length, got.Width), Is.EqualTo((expected.Length, expected.Width)), $"{clip} round {round}");
                Assert.That(got.CrossOnDevice, Is.True);
                // The same kernels on the same inputs, but the capture session's graph is folded for its fixed length
                // (it fuses differently: 8.9e-4 of the largest state for the fp16 encoder on the CPU) and cuDNN may pick
                // another convolution algorithm: an fp16 encoder may differ by a few fp16 steps of the largest state
                // (one step is 9.8e-4 of it), an fp32 one by fp32 rounding only. The transcripts below must be equal.
                double scale = want.Max(Math.Abs), err = 0;
                var states = got.States;
                for (int i = 0; i < want.Length; i++) err = Math.Max(err, Math.Abs(states[i] - want[i]));
                TestContext.Out.WriteLine($"{model} {clip} round {round}: max |captured - plain| / max = {err / scale:E2}");
                Assert.That(err / scale, Is.LessThan(tolerance), $"{clip} round {round}");
            }
        }
        Assert.That(g!.Failure, Is.Null, "capture failed");
        Assert.That(g.Captured, Is.EqualTo(clips.Length), "one graph per length, captured at its second request");
        Assert.That(g.Replays, Is.EqualTo(clips.Length), "and replayed at the third");

        // Whole requests: the replayed encoder's cross K/V reach the decoder's cache; transcripts equal the plain pipeline's.
        foreach (string clip in clips)
        {
            var request = new GenerationRequest([Part.Audio(Ref(clip + ".wav"))]) { Sampling = new SamplingOptions { MaxNewTokens = 12, IgnoreStopTokens = true } };
            var (_, want) = await plain.GenerateTextAsync(request);
            for (int round = 0; round < 2; round++)
            {
                var (_, got) = await graphs.GenerateTextAsync(request);
                Assert.That(got.Tokens, Is.EqualTo(want.Tokens), $"{clip} round {round}");
            }
        }
        Assert.That(g.Replays, Is.GreaterThanOrEqualTo(clips.Length * 3), "the requests replayed the graphs");
    }

    [Test]
    public async Task A_length_whose_graph_is_leased_runs_plain()
    {
        await using var p = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-seamless-fp16-mha"),
            new PipelineOptions { Execution = Cuda with { CudaGraph = true, EncoderCudaGraph = true } });
        var features = TestData.ReadFloats(Ref("sky_16k.features.bin"));
        p.SpeechEncoder!.Encode(features).Dispose();            // seen
        using var held = p.SpeechEncoder.Encode(features);      // captured, its buffers leased
        var want = held.States.ToArray();
        using var other = p.SpeechEncoder.Encode(features);     // the slot is leased: a plain run, its own buffers
        Assert.That(p.SpeechEncoder.Graphs!.Captured, Is.EqualTo(1));
        Assert.That(p.SpeechEncoder.Graphs.Replays, Is.EqualTo(0));
        Assert.That(other.CrossAddress(0, 0), Is.Not.EqualTo(held.CrossAddress(0, 0)), "not the leased buffers");
        Assert.That(other.States.ToArray(), Is.EqualTo(want).Within(1e-2), "fp16 encoder: the plain and captured runs agree to fp16 rounding");
    }
}

/// <summary>Where the encoder cannot be captured (CPU), asking for it changes nothing: plain runs, same results;
/// and why the graphs are per exact length rather than per padded bucket.</summary>
public class EncoderGraphCpuTests
{
    /// <summary>The evidence for exact-length graphs: padding the committed encoder's input (mask 0 on the padded
    /// frames) changes the real frames' states far beyond fp32 rounding. If an exporter change makes padding
    /// exact, this fails: then buckets become possible (docs/benchmarks.md, speech time to first token).</summary>
    [TestCase(92, 96)]
    [TestCase(138, 144)]
    public void Padding_the_committed_encoder_changes_the_real_states(int frames, int padded)
    {
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(Path.Combine(TestData.Model("tiny-seamless"), "speech_encoder.onnx"));
        var rng = new Random(frames);
        var features = new float[padded * 160];
        for (int i = 0; i < frames * 160; i++) features[i] = (float)(rng.NextDouble() * 2 - 1);
        float[] States(int length)
        {
            var mask = new long[length];
            Array.Fill(mask, 1L, 0, frames);
            using var x = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(features.AsSpan(0, length * 160).ToArray(), [1, length, 160]);
            using var m = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(mask, [1, length]);
            using var o = session.Run(new Microsoft.ML.OnnxRuntime.RunOptions(), ["input_features", "attention_mask"], [x, m], ["encoder_hidden_states"]);
            return o[0].GetTensorDataAsSpan<float>().ToArray();
        }
        var plain = States(frames);
        var withPadding = States(padded);
        double err = 0;
        for (int i = 0; i < plain.Length; i++) err = Math.Max(err, Math.Abs(plain[i] - withPadding[i]));   // the real encoder frames come first
        TestContext.Out.WriteLine($"{frames} -> {padded} frames: max |padded - plain| over the real states {err:E2}");
        Assert.That(err, Is.GreaterThan(1e-3), "fp32 rounding would be ~1e-6");
    }

    /// <summary>The capture sessions' fixed dimensions (free-dimension overrides, batch 1 and the exact frame count): the
    /// encoder gives the states of a session without them, ONNX Runtime folds away the shape arithmetic it would run on
    /// the CPU under CUDA (the reason it refused to capture the encoder), and another length is refused.</summary>
    [TestCase("tiny-seamless-fp16", 1e-5)]      // fp32 encoder: the same arithmetic
    [TestCase("tiny-seamless-fp16-mha", 2e-3)]  // fp16 encoder: the folded graph fuses differently, within fp16 rounding
    public void Fixed_dimensions_give_the_same_states_and_fold_the_shape_arithmetic(string model, double tolerance)
    {
        const int frames = 92;
        string path = Path.Combine(TestData.Model(model), "speech_encoder.onnx");
        string[] inputs = ["input_features", "attention_mask"], outputs = ["encoder_hidden_states"];
        var rng = new Random(7);
        var features = new float[frames * 160];
        for (int i = 0; i < features.Length; i++) features[i] = (float)(rng.NextDouble() * 2 - 1);
        string folded = Path.Combine(Path.GetTempPath(), $"omm-fixed-{Guid.NewGuid():N}.onnx");
        float[] States(Microsoft.ML.OnnxRuntime.InferenceSession session, int length)
        {
            var mask = new long[length];
            Array.Fill(mask, 1L);
            using var x = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(features.AsSpan(0, Math.Min(length, frames) * 160).ToArray()
                .Concat(new float[Math.Max(0, length - frames) * 160]).ToArray(), [1, length, 160]);
            using var m = Microsoft.ML.OnnxRuntime.OrtValue.CreateTensorValueFromMemory(mask, [1, length]);
            using var runOptions = new Microsoft.ML.OnnxRuntime.RunOptions();
            using var o = session.Run(runOptions, inputs, [x, m], outputs);
            return o[0].GetTensorDataAsSpan<float>().ToArray();
        }
        try
        {
            var (plainSession, _) = SessionFactory.Create(path, ExecutionOptions.Cpu);
            using var plain = plainSession;
            // The overrides the capture sessions get, from the encoder's own input names (TryCreate makes no session)
            using var component = new GraphSession(path, ExecutionOptions.Cpu, inputs, outputs);
            var graphs = Speech.EncoderGraphs.TryCreate(path, ExecutionOptions.Cpu with { Providers = [ExecutionProviderKind.Cuda] }, component, out string? reason);
            Assert.That(graphs, Is.Not.Null, reason);
            var fixedDimensions = graphs!.FixedDimensionsFor(frames);
            Assert.That(fixedDimensions, Is.EquivalentTo(new Dictionary<string, long> { ["batch"] = 1, ["frames"] = frames }));
            var (fixedSession, _) = SessionFactory.Create(path, ExecutionOptions.Cpu, fixedDimensions: fixedDimensions);
            using var fixedOne = fixedSession;
            var want = States(plain, frames);
            var got = States(fixedOne, frames);
            double scale = want.Max(Math.Abs), err = 0;
            for (int i = 0; i < want.Length; i++) err = Math.Max(err, Math.Abs(got[i] - want[i]));
            Assert.That(err / scale, Is.LessThan(tolerance), "fixed dimensions change no arithmetic beyond the encoder's precision");
            Assert.That(() => States(fixedOne, frames + 4), Throws.InstanceOf<Microsoft.ML.OnnxRuntime.OnnxRuntimeException>(), "the length is fixed");

            // What ONNX Runtime's optimiser leaves: no shape arithmetic once the dimensions are known.
            int ShapeOps(Dictionary<string, long>? fixedDims)
            {
                using var so = new Microsoft.ML.OnnxRuntime.SessionOptions { OptimizedModelFilePath = folded,
                    GraphOptimizationLevel = Microsoft.ML.OnnxRuntime.GraphOptimizationLevel.ORT_ENABLE_ALL };   // as SessionFactory
                foreach (var (k, v) in fixedDims ?? []) so.AddFreeDimensionOverrideByName(k, v);
                using (new Microsoft.ML.OnnxRuntime.InferenceSession(path, so)) { }
                string text = File.ReadAllText(folded, System.Text.Encoding.Latin1);
                // a node's op_type as serialized: field 4 (0x22), then its length, then the name
                return new[] { "\u0022\u0005Shape", "\u0022\u0005Range", "\u0022\u000fConstantOfShape" }
                    .Sum(op => System.Text.RegularExpressions.Regex.Matches(text, System.Text.RegularExpressions.Regex.Escape(op)).Count);
            }
            int before = ShapeOps(null), after = ShapeOps(fixedDimensions);
            TestContext.Out.WriteLine($"{model}: Shape + Range + ConstantOfShape nodes {before} -> {after}, max |fixed - plain| / max {err / scale:E2}");
            Assert.That(before, Is.GreaterThan(0), "the committed encoder computes shapes from its input");
            Assert.That(after, Is.Zero, "all of it folded away");
        }
        finally
        {
            File.Delete(folded);
        }
    }

    [Test]
    public async Task On_the_cpu_the_encoder_graphs_are_off_and_transcripts_unchanged()
    {
        string wav = Path.Combine(TestData.Model("tiny-seamless"), "reference", "robot_16k.wav");
        var request = new GenerationRequest([Part.Audio(wav)]) { Sampling = new SamplingOptions { MaxNewTokens = 8, IgnoreStopTokens = true } };
        await using var plain = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-seamless"));
        await using var asked = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-seamless"),
            new PipelineOptions { Execution = ExecutionOptions.Cpu with { EncoderCudaGraph = true } });
        Assert.That(asked.SpeechEncoder!.Graphs, Is.Null);
        var (_, want) = await plain.GenerateTextAsync(request);
        var (_, got) = await asked.GenerateTextAsync(request);
        Assert.That(got.Tokens, Is.EqualTo(want.Tokens));
    }
}
