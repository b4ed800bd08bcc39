using System.Text.Json;
using System.Text.Json.Serialization;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Speech;

namespace OnnxMultimodal.Tests;

public sealed record AudioCase
{
    [JsonPropertyName("name")] public string Name { get; init; } = "";
    [JsonPropertyName("file")] public string File { get; init; } = "";
    [JsonPropertyName("source_rate")] public int SourceRate { get; init; }
    [JsonPropertyName("channels")] public int Channels { get; init; }
    [JsonPropertyName("samples_file")] public string SamplesFile { get; init; } = "";
    [JsonPropertyName("fbank_file")] public string FbankFile { get; init; } = "";
    [JsonPropertyName("fbank64_file")] public string Fbank64File { get; init; } = "";
    [JsonPropertyName("fbank_shape")] public int[] FbankShape { get; init; } = [];
    [JsonPropertyName("features_file")] public string FeaturesFile { get; init; } = "";
    [JsonPropertyName("encoder_file")] public string EncoderFile { get; init; } = "";
    [JsonPropertyName("encoder_shape")] public int[] EncoderShape { get; init; } = [];
    public override string ToString() => Name;
}

public sealed record TranscriptCase
{
    [JsonPropertyName("audio")] public string Audio { get; init; } = "";
    [JsonPropertyName("lang")] public string Lang { get; init; } = "";
    [JsonPropertyName("mode")] public string Mode { get; init; } = "";
    [JsonPropertyName("ids")] public int[] Ids { get; init; } = [];
    [JsonPropertyName("tokens")] public int[] Tokens { get; init; } = [];
    [JsonPropertyName("first_logits_file")] public string FirstLogitsFile { get; init; } = "";
    [JsonPropertyName("sampling")] public JsonElement? Sampling { get; init; }
    public override string ToString() => $"{Audio} {Lang} {Mode}";
}

/// <summary>Seamless speech->text against torchaudio and PyTorch references of the tiny model; the
/// decoder as the reference graph and as the fused graph (GroupQueryAttention over one shared cache,
/// positions from seqlens_k, made by `omm_export convert`).</summary>
[TestFixture("tiny-seamless")]
[TestFixture("tiny-seamless-fused")]
public class SpeechTests(string model)
{
    private static readonly string ModelDir = TestData.Model("tiny-seamless");
    private static readonly string RefDir = Path.Combine(ModelDir, "reference");
    private static readonly JsonDocument Doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(RefDir, "reference.json")));
    private static readonly List<AudioCase> AudioCases = Doc.RootElement.GetProperty("audio").Deserialize<List<AudioCase>>()!;
    private static readonly List<TranscriptCase> Transcripts = Doc.RootElement.GetProperty("transcripts").Deserialize<List<TranscriptCase>>()!;
    private MultimodalPipeline _pipeline = null!;

    [OneTimeSetUp]
    public async Task Load() => _pipeline = await MultimodalPipeline.LoadAsync(TestData.Model(model));

    [OneTimeTearDown]
    public void Unload() => _pipeline.Dispose();

    private static IEnumerable<AudioCase> Audio() => AudioCases;
    private static IEnumerable<AudioCase> Audio16k() => AudioCases.Where(a => a.SourceRate == 16000);
    private static IEnumerable<TranscriptCase> AllTranscripts() => Transcripts;
    private static float[] Ref(string file) => TestData.ReadFloats(Path.Combine(RefDir, file));

    private static double MaxAbs(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        Assert.That(a.Length, Is.EqualTo(b.Length), "lengths");
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }

    [TestCaseSource(nameof(Audio))]
    public void Wave_reader_matches_the_reference_samples(AudioCase a)
    {
        var wave = WaveReader.Read(Path.Combine(RefDir, a.File), 16000, new AudioOptions());
        Assert.That((wave.SourceRate, wave.SourceChannels), Is.EqualTo((a.SourceRate, a.Channels)));
        // 16 kHz files: the same arithmetic, exact. 44.1 kHz stereo: the same windowed-sinc filter as
        // torchaudio, float32 accumulation order differs.
        double tolerance = a.SourceRate == 16000 ? 0 : 1e-5;
        Assert.That(MaxAbs(wave.Samples, Ref(a.SamplesFile)), Is.LessThanOrEqualTo(tolerance));
    }

    [TestCaseSource(nameof(Audio))]
    public void Fbank_matches_torchaudio_within_1e3(AudioCase a)
    {
        var fbank = Fbank.Default.Compute(Ref(a.SamplesFile));
        Assert.That(fbank.Length, Is.EqualTo(a.FbankShape[0] * a.FbankShape[1]));
        // torchaudio in float64: the same computation, so 1e-3 everywhere (measured ~1e-5).
        double err64 = MaxAbs(fbank, Ref(a.Fbank64File));
        Assert.That(err64, Is.LessThan(1e-3), "vs torchaudio float64");
        // torchaudio's default float32: its FFT rounding is relative to the frame's loudest bin, so bins
        // far below it carry a few 1e-3 of noise. 1e-3 holds for bins within 12 nats of their frame's peak.
        var f32 = Ref(a.FbankFile);
        double near = 0, all = 0;
        for (int t = 0; t < a.FbankShape[0]; t++)
        {
            var row = f32.AsSpan(t * 80, 80);
            float peak = System.Numerics.Tensors.TensorPrimitives.Max(row);
            for (int b = 0; b < 80; b++)
            {
                double d = Math.Abs(fbank[t * 80 + b] - row[b]);
                all = Math.Max(all, d);
                if (row[b] > peak - 12) near = Math.Max(near, d);
            }
        }
        TestContext.Out.WriteLine($"{a.Name}: vs float64 {err64:E2}; vs float32 {near:E2} (within 12 nats of the frame peak), {all:E2} (all)");
        Assert.That(near, Is.LessThan(1e-3), "vs torchaudio float32 within 12 nats of the frame peak");
        Assert.That(all, Is.LessThan(2e-2), "vs torchaudio float32 everywhere");
    }

    [TestCaseSource(nameof(Audio))]
    public void Normalised_stacked_features_match_within_1e3(AudioCase a)
    {
        var wave = WaveReader.Read(Path.Combine(RefDir, a.File), 16000, new AudioOptions());
        var features = Fbank.NormaliseAndStack(Fbank.Default.Compute(wave.Samples), Fbank.FrameCount(wave.Samples.Length));
        // Normalisation divides by each bin's spread; the float32 reference's near-silence rounding
        // (above) passes through it. 16 kHz files hold 1e-3; the resampled file 5e-3.
        Assert.That(MaxAbs(features, Ref(a.FeaturesFile)), Is.LessThan(a.SourceRate == 16000 ? 1e-3 : 5e-3));
    }

    [TestCaseSource(nameof(Audio))]
    public void Encoder_states_match_pytorch_within_1e4_relative(AudioCase a)
    {
        using var states = _pipeline.SpeechEncoder!.Encode(Ref(a.FeaturesFile));
        var expected = Ref(a.EncoderFile);
        Assert.That((states.Length, states.Width), Is.EqualTo((a.EncoderShape[0], a.EncoderShape[1])));
        double maxRef = expected.Max(Math.Abs);
        Assert.That(MaxAbs(states.States, expected) / maxRef, Is.LessThan(1e-4));
    }

    [TestCaseSource(nameof(AllTranscripts))]
    public void Transcript_tokens_and_first_logits_match_pytorch(TranscriptCase t)
    {
        var audio = AudioCases.Single(a => a.Name == t.Audio);
        using var encoder = _pipeline.SpeechEncoder!.Encode(Ref(audio.FeaturesFile));
        var sampling = t.Mode == "greedy"
            ? new SamplingOptions { MaxNewTokens = t.Tokens.Length, IgnoreStopTokens = true }
            : new SamplingOptions
            {
                Temperature = t.Sampling!.Value.GetProperty("temperature").GetSingle(), TopK = t.Sampling.Value.GetProperty("top_k").GetInt32(),
                TopP = t.Sampling.Value.GetProperty("top_p").GetSingle(), RepetitionPenalty = t.Sampling.Value.GetProperty("repetition_penalty").GetSingle(),
                Seed = t.Sampling.Value.GetProperty("seed").GetUInt64(), MaxNewTokens = t.Tokens.Length, IgnoreStopTokens = true,
            };
        var ort = (OrtDecodeEngine)_pipeline.Engine;
        using var seq = ort.StartWithEncoder(encoder, t.Ids, sampling);
        var first = Ref(t.FirstLogitsFile);
        Assert.That(MaxAbs(seq.PrefillLogits, first) / first.Max(Math.Abs), Is.LessThan(1e-4), "first-step logits");
        while (!seq.IsDone) seq.GenerateNextToken();
        Assert.That(seq.Tokens.Skip(t.Ids.Length), Is.EqualTo(t.Tokens));
    }

    [Test]
    public async Task Transcribe_end_to_end_from_a_wav_file()
    {
        var t = Transcripts.First(x => x.Audio == "robot_16k" && x.Mode == "sampled");
        var s = t.Sampling!.Value;
        var request = new GenerationRequest([Part.Audio(Path.Combine(RefDir, "robot_16k.wav"))])
        {
            TargetLanguage = t.Lang,
            Sampling = new SamplingOptions { Temperature = s.GetProperty("temperature").GetSingle(), TopP = s.GetProperty("top_p").GetSingle(),
                RepetitionPenalty = s.GetProperty("repetition_penalty").GetSingle(), Seed = s.GetProperty("seed").GetUInt64(),
                MaxNewTokens = t.Tokens.Length, IgnoreStopTokens = true },
        };
        var (_, stats) = await _pipeline.GenerateTextAsync(request);
        Assert.That(stats.Tokens, Is.EqualTo(t.Tokens), "reader, fbank, encoder and decoder from C# end to end");
    }

    [Test]
    public void Unknown_target_language_is_named()
    {
        var request = new GenerationRequest([Part.Audio(Path.Combine(RefDir, "sky_16k.wav"))]) { TargetLanguage = "klingon" };
        var e = Assert.ThrowsAsync<InvalidInputException>(async () => await _pipeline.GenerateTextAsync(request))!;
        Assert.That(e.Message, Does.Contain("klingon").And.Contain("spa"));
    }
}

/// <summary>Bad and unusual WAV files.</summary>
public class WaveReaderTests
{
    internal static byte[] Wav(int format, int channels, int rate, int bits, byte[] data, int? claimedDataSize = null)
    {
        var ms = new MemoryStream();
        var w = new BinaryWriter(ms);
        w.Write("RIFF"u8); w.Write(36 + data.Length); w.Write("WAVE"u8);
        w.Write("fmt "u8); w.Write(16); w.Write((short)format); w.Write((short)channels); w.Write(rate);
        w.Write(rate * channels * bits / 8); w.Write((short)(channels * bits / 8)); w.Write((short)bits);
        w.Write("data"u8); w.Write(claimedDataSize ?? data.Length); w.Write(data);
        return ms.ToArray();
    }

    private static InvalidInputException Refused(byte[] bytes) =>
        Assert.Throws<InvalidInputException>(() => WaveReader.Read(new MemoryStream(bytes), 16000, new AudioOptions()))!;

    [Test]
    public void Truncated_header() => Assert.That(Refused("RIFF\x10\0\0\0WA"u8.ToArray()).Message, Does.Contain("truncated"));

    [Test]
    public void Not_a_wav() => Assert.That(Refused("hello, this is text and not audio"u8.ToArray()).Message, Does.Contain("RIFF"));

    [Test]
    public void Data_chunk_longer_than_the_file() =>
        Assert.That(Refused(Wav(1, 1, 16000, 16, new byte[2000], claimedDataSize: 200000)).Message, Does.Contain("truncated"));

    [Test]
    public void A_law_is_refused_by_name() => Assert.That(Refused(Wav(6, 1, 8000, 8, new byte[800])).Message, Does.Contain("A-law"));

    [Test]
    public void Zero_samples() => Assert.That(Refused(Wav(1, 1, 16000, 16, [])).Message, Does.Contain("no samples"));

    [Test]
    public void Eight_bit_pcm_is_read()
    {
        var wave = WaveReader.Read(new MemoryStream(Wav(1, 1, 16000, 8, [128, 255, 0, 192])), 16000, new AudioOptions());
        Assert.That(wave.Samples, Is.EqualTo(new[] { 0f, 127 / 128f, -1f, 0.5f }));
    }

    [Test]
    public void Twenty_four_bit_stereo_is_downmixed()
    {
        byte[] frame = [0x00, 0x00, 0x40, 0x00, 0x00, 0xC0];   // left +0.5, right -0.5
        var wave = WaveReader.Read(new MemoryStream(Wav(1, 2, 16000, 24, frame)), 16000, new AudioOptions());
        Assert.That(wave.Samples, Is.EqualTo(new[] { 0f }));
    }

    [Test]
    public void Ten_minute_file_is_refused_from_its_header_with_the_limit()
    {
        string path = Path.Combine(Path.GetTempPath(), $"omm-10min-{Guid.NewGuid():N}.wav");
        File.WriteAllBytes(path, Wav(1, 1, 16000, 16, new byte[10 * 60 * 16000 * 2]));
        try
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            var e = Assert.Throws<InvalidInputException>(() => WaveReader.Read(path, 16000, new AudioOptions()))!;
            Assert.That(e.Message, Does.Contain("600 s").And.Contain("limit"));
            Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(1 << 20), "refused before reading samples");
            var longer = WaveReader.Read(path, 16000, new AudioOptions { MaxSeconds = 700 });
            Assert.That(longer.Samples, Has.Length.EqualTo(10 * 60 * 16000), "with a raised limit it reads, streaming in blocks");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void Resampler_keeps_a_tone_and_removes_what_is_above_nyquist()
    {
        var tone = Enumerable.Range(0, 44100).Select(i => (float)Math.Sin(2 * Math.PI * 1000 * i / 44100)).ToArray();
        var alias = Enumerable.Range(0, 44100).Select(i => (float)Math.Sin(2 * Math.PI * 12000 * i / 44100)).ToArray();
        static double Rms(float[] x) => Math.Sqrt(x.Skip(1000).Take(x.Length - 2000).Average(v => (double)v * v));
        Assert.That(Rms(Resampler.Resample(tone, 44100, 16000)), Is.EqualTo(Math.Sqrt(0.5)).Within(0.01), "1 kHz passes");
        Assert.That(Rms(Resampler.Resample(alias, 44100, 16000)), Is.LessThan(0.01), "12 kHz is above the new Nyquist: filtered, not aliased");
    }
}

/// <summary>
/// The fused seq2seq decoder in fp16 and in int4 (MatMulNBits, fp16 activations), as made for CUDA by
/// `omm_export convert --graph fused --precision fp16|int4`, run on the CPU against the fp32 PyTorch
/// references of tiny-seamless: first-step logits within a relative tolerance, greedy tokens agreeing
/// on a share of the positions (the figures are printed). The encoder's fp32 cross K/V are converted
/// to fp16 once per request.
/// </summary>
[TestFixture("tiny-seamless-fp16", 1e-2, 0.9)]    // measured: 8.0e-4 relative, 48/48 tokens
[TestFixture("tiny-seamless-int4", 0.25, 0.9)]   // measured: 1.8e-1 relative, 48/48 tokens
[TestFixture("tiny-seamless-fp16-mha", 1e-2, 0.9)]   // cross-attention as MultiHeadAttention (--cross-mha) and the fp16 encoder (--encoder-precision fp16)
public class ReducedPrecisionSpeechTests(string model, double logitTolerance, double tokenAgreement)
{
    private static readonly string RefDir = Path.Combine(TestData.Model("tiny-seamless"), "reference");
    private MultimodalPipeline _pipeline = null!;

    [OneTimeSetUp]
    public async Task Load() => _pipeline = await MultimodalPipeline.LoadAsync(TestData.Model(model));

    [OneTimeTearDown]
    public void Unload() => _pipeline.Dispose();

    [Test]
    public void Greedy_transcripts_and_first_logits_are_close_to_pytorch()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(RefDir, "reference.json")));
        var audio = doc.RootElement.GetProperty("audio").Deserialize<List<AudioCase>>()!;
        var greedy = doc.RootElement.GetProperty("transcripts").Deserialize<List<TranscriptCase>>()!.Where(t => t.Mode == "greedy").ToList();
        Assert.That(greedy, Is.Not.Empty);
        int agree = 0, total = 0;
        double worst = 0;
        foreach (var t in greedy)
        {
            var a = audio.Single(x => x.Name == t.Audio);
            using var encoder = _pipeline.SpeechEncoder!.Encode(TestData.ReadFloats(Path.Combine(RefDir, a.FeaturesFile)));
            using var seq = ((OrtDecodeEngine)_pipeline.Engine).StartWithEncoder(encoder, t.Ids, new SamplingOptions { MaxNewTokens = t.Tokens.Length, IgnoreStopTokens = true });
            var first = TestData.ReadFloats(Path.Combine(RefDir, t.FirstLogitsFile));
            double diff = 0;
            for (int i = 0; i < first.Length; i++) diff = Math.Max(diff, Math.Abs(seq.PrefillLogits[i] - first[i]));
            worst = Math.Max(worst, diff / first.Max(Math.Abs));
            while (!seq.IsDone) seq.GenerateNextToken();
            agree += seq.Tokens.Skip(t.Ids.Length).Zip(t.Tokens).Count(x => x.First == x.Second);
            total += t.Tokens.Length;
        }
        TestContext.Out.WriteLine($"{model}: first-step logits within {worst:E2} relative; {agree}/{total} greedy tokens agree with fp32 PyTorch");
        Assert.That(worst, Is.LessThan(logitTolerance), "first-step logits");
        Assert.That(agree, Is.GreaterThanOrEqualTo((int)Math.Ceiling(tokenAgreement * total)), "greedy tokens");
    }
}

/// <summary>
/// `omm_export convert` of a seq2seq package to fp16 activations rewrites the speech encoder to write
/// the cross K/V in fp16 (a Cast per output, the weights shared), so a device cache copies them where
/// they were computed. On the host the two encoders must give the same K/V to rounding, and decoding
/// through either must be identical.
/// </summary>
public class HalfCrossEncoderTests
{
    private static readonly string RefDir = Path.Combine(TestData.Model("tiny-seamless"), "reference");

    /// <summary>A package of <paramref name="decoderModel"/>'s files with the speech encoder of <paramref name="encoderModel"/>.</summary>
    private static string WithEncoder(string decoderModel, string encoderModel) =>
        TestData.PackageWith(decoderModel, ("speech_encoder", encoderModel, "speech_encoder"));

    private static List<AudioCase> Audio()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(RefDir, "reference.json")));
        return doc.RootElement.GetProperty("audio").Deserialize<List<AudioCase>>()!;
    }

    [Test]
    public async Task The_fp16_cross_encoder_rounds_the_fp32_one_and_decodes_identically()
    {
        string viaFloat = WithEncoder("tiny-seamless-fp16", "tiny-seamless");   // fp32 K/V, converted on the host per request
        try
        {
            await using var half = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-seamless-fp16"));
            await using var single = await MultimodalPipeline.LoadAsync(viaFloat);
            Assert.That(half.SpeechEncoder!.CrossType, Is.EqualTo(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float16));
            Assert.That(single.SpeechEncoder!.CrossType, Is.EqualTo(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float));
            var wavs = Audio();
            Assert.That(wavs, Is.Not.Empty);
            foreach (var a in wavs)
            {
                var features = TestData.ReadFloats(Path.Combine(RefDir, a.FeaturesFile));
                using var h = half.SpeechEncoder.Encode(features);
                using var f = single.SpeechEncoder.Encode(features);
                Assert.That(h.States.ToArray(), Is.EqualTo(f.States.ToArray()), $"{a}: the states are untouched");
                for (int l = 0; l < h.Layers; l++)
                    for (int kv = 0; kv < 2; kv++)
                    {
                        var rounded = new Half[f.CrossFloats(l, kv).Length];
                        System.Numerics.Tensors.TensorPrimitives.ConvertToHalf(f.CrossFloats(l, kv), rounded);
                        Assert.That(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(h.CrossBytes(l, kv)).ToArray(), Is.EqualTo(rounded),
                            $"{a}: layer {l} {(kv == 0 ? "key" : "value")} is the fp32 output rounded to fp16");
                    }
                var options = new SamplingOptions { MaxNewTokens = 12, IgnoreStopTokens = true };
                using var sh = ((OrtDecodeEngine)half.Engine).StartWithEncoder(h, [3, 4], options);
                using var sf = ((OrtDecodeEngine)single.Engine).StartWithEncoder(f, [3, 4], options);
                Assert.That(sh.PrefillLogits.ToArray(), Is.EqualTo(sf.PrefillLogits.ToArray()), $"{a}: first-step logits");
                while (!sh.IsDone) sh.GenerateNextToken();
                while (!sf.IsDone) sf.GenerateNextToken();
                Assert.That(sh.Tokens, Is.EqualTo(sf.Tokens), $"{a}: tokens");
            }
        }
        finally
        {
            Directory.Delete(viaFloat, true);
        }
    }

    [Test]
    public void An_fp16_cross_encoder_beside_an_fp32_decoder_is_refused_at_load()
    {
        string mismatched = WithEncoder("tiny-seamless", "tiny-seamless-fp16");
        try
        {
            var e = Assert.ThrowsAsync<ModelPackageException>(async () => await MultimodalPipeline.LoadAsync(mismatched))!;
            Assert.That(e.Message, Does.Contain("Float16").And.Contain("omm_export convert"));
        }
        finally
        {
            Directory.Delete(mismatched, true);
        }
    }

    [Test]
    public async Task The_fp16_encoder_stays_close_to_the_fp32_one()
    {
        // `convert --encoder-precision fp16` (tiny-seamless-fp16-mha): the feature path in fp16, frame and
        // length bookkeeping in fp32. States and cross K/V against the fp32 encoder, relative to each tensor's largest value.
        await using var half = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-seamless-fp16-mha"));
        await using var single = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-seamless"));
        double worst = 0;
        foreach (var a in Audio())
        {
            var features = TestData.ReadFloats(Path.Combine(RefDir, a.FeaturesFile));
            using var h = half.SpeechEncoder!.Encode(features);
            using var f = single.SpeechEncoder!.Encode(features);
            Assert.That(h.Length, Is.EqualTo(f.Length), $"{a}: encoder frames");
            worst = Math.Max(worst, Relative(h.States, f.States));
            for (int l = 0; l < h.Layers; l++)
                for (int kv = 0; kv < 2; kv++)
                {
                    var widened = new float[f.CrossFloats(l, kv).Length];
                    System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(h.CrossBytes(l, kv)), widened);
                    worst = Math.Max(worst, Relative(widened, f.CrossFloats(l, kv)));
                }
        }
        TestContext.Out.WriteLine($"fp16 encoder: states and cross K/V within {worst:E2} of the fp32 encoder (relative to each tensor's largest value)");
        Assert.That(worst, Is.LessThan(5e-2));   // measured 1.7e-2
        Assert.That(worst, Is.GreaterThan(0), "the fp16 graph computes in fp16");
    }

    private static double Relative(ReadOnlySpan<float> x, ReadOnlySpan<float> reference)
    {
        Assert.That(x.Length, Is.EqualTo(reference.Length));
        double diff = 0, scale = 0;
        for (int i = 0; i < x.Length; i++)
        {
            diff = Math.Max(diff, Math.Abs(x[i] - reference[i]));
            scale = Math.Max(scale, Math.Abs(reference[i]));
        }
        return diff / scale;
    }
}
