using OnnxMultimodal.Speech;

namespace OnnxMultimodal.Tests;

/// <summary>The vectorised, multi-threaded filter banks against the slow scalar DFT oracle on clips longer
/// than the torchaudio references (SpeechTests), and their independence from the thread count.</summary>
public class FbankTests
{
    /// <summary>Speech-like: harmonics with a wandering pitch, bursts, seeded noise, and a stretch of
    /// near-silence (where float64 matters).</summary>
    private static float[] Clip(double seconds, int seed = 7)
    {
        var rng = new Random(seed);
        var x = new float[(int)(seconds * 16000)];
        double phase = 0;
        for (int i = 0; i < x.Length; i++)
        {
            double t = i / 16000.0;
            phase += 2 * Math.PI * (120 + 60 * Math.Sin(2 * Math.PI * 0.4 * t)) / 16000;
            double envelope = t is > 1.0 and < 1.3 ? 1e-4 : 0.5 + 0.5 * Math.Sin(2 * Math.PI * 2.5 * t);
            x[i] = (float)(envelope * (0.4 * Math.Sin(phase) + 0.2 * Math.Sin(3 * phase)) + 0.01 * envelope * (rng.NextDouble() * 2 - 1));
        }
        return x;
    }

    private static double MaxAbs(float[] a, float[] b)
    {
        Assert.That(a.Length, Is.EqualTo(b.Length), "lengths");
        double m = 0;
        for (int i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs(a[i] - b[i]));
        return m;
    }

    [Test]
    public void Ten_seconds_match_the_scalar_dft_oracle()
    {
        var clip = Clip(10.0);
        var fast = Fbank.Default.Compute(clip);
        var slow = FbankScalarReference.Compute(clip);
        Assert.That(fast.Length, Is.EqualTo(998 * 80));
        // Both float64 up to the final float32 cast of log energies of magnitude < 32 (ulp 2e-6 at most);
        // FFT and DFT round differently by ~1e-12 relative, far below that.
        double err = MaxAbs(fast, slow);
        TestContext.Out.WriteLine($"max |fast - DFT| = {err:E2}");
        Assert.That(err, Is.LessThan(1e-5));
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    [TestCase(16)]
    public void Thread_count_does_not_change_a_bit(int threads)
    {
        var clip = Clip(7.3, seed: 3);
        Assert.That(Fbank.Default.Compute(clip, threads), Is.EqualTo(Fbank.Default.Compute(clip, 1)).AsCollection);
    }

    [Test]
    public void Threads_follow_the_clip_length()
    {
        Assert.That(Fbank.Threads(Fbank.MinFramesPerThread * 2 - 1, 16), Is.EqualTo(1), "short clips stay on the calling thread");
        Assert.That(Fbank.Threads(998, 16), Is.EqualTo(998 / Fbank.MinFramesPerThread));
        Assert.That(Fbank.Threads(100_000, 3), Is.EqualTo(3), "never above the cap");
        Assert.That(Fbank.Threads(0, 0), Is.EqualTo(1));
    }

    [TestCase(0, 0)]
    [TestCase(399, 0)]
    [TestCase(400, 1)]
    [TestCase(559, 1)]
    [TestCase(560, 2)]
    public void Frame_counts_snip_the_edges(int samples, int frames)
    {
        Assert.That(Fbank.FrameCount(samples), Is.EqualTo(frames));
        var clip = Clip(samples / 16000.0 + 1e-9);
        Assert.That(Fbank.Default.Compute(clip.AsSpan(0, samples)).Length, Is.EqualTo(frames * 80));
        if (frames > 0)
            Assert.That(Fbank.Default.Compute(clip.AsSpan(0, samples)), Is.EqualTo(FbankScalarReference.Compute(clip.AsSpan(0, samples))).Within(1e-5).AsCollection);
    }

    [TestCase(998)]
    [TestCase(183)]
    public void Normalise_and_stack_equals_the_per_bin_loop_bit_for_bit(int frames)
    {
        var rng = new Random(frames);
        var fbank = new float[frames * 80];
        for (int i = 0; i < fbank.Length; i++) fbank[i] = (float)(rng.NextDouble() * 30 - 10);
        var expected = new float[(frames + 1) / 2 * 160];   // the bins one at a time, as the library did before it ran row by row
        for (int b = 0; b < 80; b++)
        {
            double sum = 0, sq = 0;
            for (int t = 0; t < frames; t++) sum += fbank[t * 80 + b];
            double mean = sum / frames;
            for (int t = 0; t < frames; t++) { double d = fbank[t * 80 + b] - mean; sq += d * d; }
            double inv = 1.0 / Math.Sqrt(sq / (frames - 1) + 1e-7);
            for (int t = 0; t < frames; t++) expected[t * 80 + b] = (float)((fbank[t * 80 + b] - mean) * inv);
        }
        Assert.That(Fbank.NormaliseAndStack(fbank, frames), Is.EqualTo(expected).AsCollection);
    }
}
