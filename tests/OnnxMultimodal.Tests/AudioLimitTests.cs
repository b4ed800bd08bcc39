using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Speech;

namespace OnnxMultimodal.Tests;

/// <summary>Audio bounds (issue 13, findings 3, 4 and 9): duration compared exactly and reported exactly,
/// sample rates bounded, non-finite samples refused, and a resampler whose table does not grow with
/// co-prime rates.</summary>
public class AudioLimitTests
{
    internal static byte[] Wav(int format, int channels, int rate, int bits, byte[] data, int? claimedDataSize = null) =>
        WaveReaderTests.Wav(format, channels, rate, bits, data, claimedDataSize);

    private static InvalidInputException Refused(byte[] bytes, AudioOptions? options = null) =>
        Assert.Throws<InvalidInputException>(() => WaveReader.Read(new MemoryStream(bytes), 16000, options ?? new AudioOptions(), "clip"))!;

    [Test]
    public void Duration_is_compared_exactly_and_printed_exactly()
    {
        var options = new AudioOptions { MaxSeconds = 120 };
        Assert.That(WaveReader.Read(new MemoryStream(Wav(1, 1, 8000, 16, new byte[120 * 8000 * 2])), 16000, options).Samples,
            Has.Length.EqualTo(120 * 16000), "exactly the limit is accepted");
        var e = Refused(Wav(1, 1, 8000, 16, new byte[(120 * 8000 + 1) * 2]), options);
        // Was "120.0 s of audio is over the limit of 120 s".
        Assert.That(e.Message, Does.Contain("120.000125 s of audio is over the limit of 120 s"));
    }

    [Test]
    public void The_default_limit_refuses_two_minutes_from_the_header()
    {
        // The encoder's memory is quadratic in the duration: 120 s takes 3.2 GB peak on tiny-seamless, 60 s 0.75 GB
        // (AudioMemoryTests holds the default to its budget); the default is 60 s.
        Assert.That(ResourceLimits.Default.MaxAudioSeconds, Is.EqualTo(60));
        var e = Refused(Wav(1, 1, 16000, 16, new byte[120 * 16000 * 2]));
        Assert.That(e.Message, Does.Contain("120 s of audio is over the limit of 60 s").And.Contain("MaxAudioSeconds"));
    }

    [Test]
    public async Task The_pipeline_applies_its_limits_to_audio_parts()
    {
        var options = new PipelineOptions { Limits = ResourceLimits.Default with { MaxAudioSeconds = 1 } };
        await using var pipeline = await MultimodalPipeline.LoadAsync(TestData.Model("tiny-seamless"), options);
        var request = new GenerationRequest([Part.Audio(Wav(1, 1, 16000, 16, new byte[2 * 16000 * 2]))]);
        var e = Assert.ThrowsAsync<InvalidInputException>(async () => await pipeline.GenerateTextAsync(request))!;
        Assert.That(e.Input, Is.EqualTo("parts[0]"));
        Assert.That(e.Message, Does.Contain("2 s of audio is over the limit of 1 s"));
    }

    [Test]
    public void A_tiny_file_at_1_hz_cannot_claim_a_long_recording()
    {
        // The 284-byte WAV at 1 Hz: 120 frames were 120 s, resampled to 1.92M samples.
        var e = Refused(Wav(1, 1, 1, 16, new byte[240]));
        Assert.That(e.Message, Does.Contain("1 Hz").And.Contain("4,000-192,000 Hz"));
        Assert.That(Refused(Wav(1, 1, 200_000, 16, new byte[400])).Message, Does.Contain("200,000 Hz"));
        Assert.That(WaveReader.Read(new MemoryStream(Wav(1, 1, 4000, 16, new byte[400])), 16000, new AudioOptions()).Samples, Has.Length.EqualTo(800));
    }

    [TestCase(float.NaN, "NaN")]
    [TestCase(float.PositiveInfinity, "infinite")]
    [TestCase(float.NegativeInfinity, "infinite")]
    public void Non_finite_float_samples_are_refused(float bad, string word)
    {
        var samples = new float[100];
        samples[37] = bad;
        var data = new byte[400];
        Buffer.BlockCopy(samples, 0, data, 0, 400);
        var e = Refused(Wav(3, 1, 16000, 32, data));
        Assert.That(e.Message, Does.Contain("sample 37").And.Contain(word));
        Assert.That(e.Input, Is.EqualTo("clip"));
    }

    [Test]
    public void Co_prime_rates_resample_with_a_small_table()
    {
        // 44,101 -> 16,000 Hz has gcd 1: torchaudio's kernel (and ours before) was 16,000 x 44,118 floats, 2.8 GB.
        Assert.That(Resampler.TableBytes(44_101, 16_000), Is.LessThan(3_000_000));
        Assert.That(Resampler.TableBytes(191_999, 16_000), Is.LessThan(12_000_000));
        var tone = Enumerable.Range(0, 44_101).Select(i => (float)Math.Sin(2 * Math.PI * 440 * i / 44_101)).ToArray();
        long before = GC.GetAllocatedBytesForCurrentThread();
        var output = Resampler.Resample(tone, 44_101, 16_000);
        Assert.That(GC.GetAllocatedBytesForCurrentThread() - before, Is.LessThan(4_000_000), "table, padded copy and output only");
        Assert.That(output, Has.Length.EqualTo(16_000));
        // Above ~134 kHz the old table size overflowed an int.
        Assert.That(Resampler.Resample(new float[1000], 150_001, 16_000), Has.Length.EqualTo(107));
    }

    [TestCase(44_101, 16_000)]
    [TestCase(44_100, 16_000)]
    [TestCase(8_000, 16_000)]
    [TestCase(22_050, 16_000)]
    [TestCase(11_025, 16_000)]
    public void Resampler_equals_the_direct_windowed_sinc_sum(int from, int to)
    {
        // Independent check of the table: each output is the sum over every input sample of torchaudio's
        // weight, written out from its definition (t = (n/from - j/to) * min * 0.99, clamped to +-6,
        // sinc(pi t) * cos^2(pi t / 12) * min * 0.99 / from) in float64. The table is float32: 1e-5.
        var rng = new Random(7);
        var x = Enumerable.Range(0, 3000).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var y = Resampler.Resample(x, from, to);
        double min = Math.Min(from, to) * 0.99, worst = 0;
        for (int j = 0; j < y.Length; j += 7)
        {
            double sum = 0;
            for (int n = 0; n < x.Length; n++)
            {
                double t = ((double)n / from - (double)j / to) * min;
                if (Math.Abs(t) >= 6) continue;
                double w = Math.Pow(Math.Cos(t * Math.PI / 12), 2) * (t == 0 ? 1 : Math.Sin(Math.PI * t) / (Math.PI * t)) * min / from;
                sum += w * x[n];
            }
            worst = Math.Max(worst, Math.Abs(sum - y[j]));
        }
        Assert.That(y, Has.Length.EqualTo((int)Math.Ceiling((double)x.Length * to / from)));
        Assert.That(worst, Is.LessThan(1e-5), $"max difference {worst:E2}");
    }
}
