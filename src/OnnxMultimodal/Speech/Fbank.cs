using System.Runtime.CompilerServices;

namespace OnnxMultimodal.Speech;

/// <summary>
/// Kaldi-compatible log mel filter banks, matching torchaudio.compliance.kaldi.fbank with the settings
/// Seamless uses: 16 kHz input scaled to 16-bit range, 25 ms frames every 10 ms (snip edges), no
/// dither, frame mean removed, pre-emphasis 0.97, Povey window, 512-point power spectrum, 80
/// triangular mel bins from 20 Hz to Nyquist (mel = 1127 ln(1 + f / 700)), log floored at float epsilon.
/// Then <see cref="NormaliseAndStack"/> turns them into the encoder's [T/2, 160] input.
/// </summary>
internal sealed class Fbank
{
    public const int SampleRate = 16000;
    public const int FrameLength = 400;     // 25 ms
    public const int FrameShift = 160;      // 10 ms
    public const int FftSize = 512;
    public const int MelBins = 80;
    private const double Preemphasis = 0.97;
    private const double LogFloor = 1.1920929e-07;

    private static readonly Lazy<Fbank> s_default = new(() => new Fbank());
    private readonly double[] _window = new double[FrameLength];
    private readonly (int First, double[] Weights)[] _mel = new (int, double[])[MelBins];   // sparse triangles over FFT bins
    private readonly double[] _cos = new double[FftSize / 2], _sin = new double[FftSize / 2];
    private readonly int[] _bitReverse = new int[FftSize];

    public static Fbank Default => s_default.Value;

    private Fbank()
    {
        for (int n = 0; n < FrameLength; n++)   // Povey: Hann (symmetric) to the power 0.85
            _window[n] = Math.Pow(0.5 - 0.5 * Math.Cos(2 * Math.PI * n / (FrameLength - 1)), 0.85);
        static double Mel(double f) => 1127.0 * Math.Log(1.0 + f / 700.0);
        double low = Mel(20.0), high = Mel(SampleRate / 2.0), delta = (high - low) / (MelBins + 1);
        double binWidth = (double)SampleRate / FftSize;
        for (int b = 0; b < MelBins; b++)
        {
            double left = low + b * delta, centre = low + (b + 1) * delta, right = low + (b + 2) * delta;
            var weights = new double[FftSize / 2];
            int first = -1, last = -1;
            for (int i = 0; i < FftSize / 2; i++)   // the Nyquist bin gets no weight, as in torchaudio
            {
                double m = Mel(binWidth * i);
                double w = Math.Max(0.0, Math.Min((m - left) / (centre - left), (right - m) / (right - centre)));
                if (w > 0) { if (first < 0) first = i; last = i; }
                weights[i] = w;
            }
            _mel[b] = first < 0 ? (0, []) : (first, weights[first..(last + 1)]);
        }
        for (int i = 0; i < FftSize / 2; i++) { _cos[i] = Math.Cos(2 * Math.PI * i / FftSize); _sin[i] = -Math.Sin(2 * Math.PI * i / FftSize); }
        int bitsCount = (int)Math.Log2(FftSize);
        for (int i = 0; i < FftSize; i++)
        {
            int r = 0;
            for (int k = 0; k < bitsCount; k++) r |= ((i >> k) & 1) << (bitsCount - 1 - k);
            _bitReverse[i] = r;
        }
    }

    /// <summary>Number of frames for <paramref name="samples"/> samples (snip edges).</summary>
    public static int FrameCount(int samples) => samples < FrameLength ? 0 : 1 + (samples - FrameLength) / FrameShift;

    /// <param name="samples">Mono samples in [-1, 1] at 16 kHz.</param>
    /// <returns>[frames * 80] log mel energies. Arithmetic is float64 throughout (torchaudio's default is
    /// float32, whose rounding shows in near-silent frames; the tests compare with both).</returns>
    public float[] Compute(ReadOnlySpan<float> samples)
    {
        int frames = FrameCount(samples.Length);
        var result = new float[frames * MelBins];
        // Frames are independent: blocks of them run in parallel, each block with its own buffers
        // (10 s of audio is 1000 frames; the result does not depend on how they are split).
        const int block = 64;
        int blocks = (frames + block - 1) / block;
        var input = samples.ToArray();
        Parallel.For(0, blocks, new ParallelOptions { MaxDegreeOfParallelism = Math.Min(Environment.ProcessorCount, 8) }, k =>
            ComputeFrames(input, result, k * block, Math.Min(frames, (k + 1) * block)));
        return result;
    }

    // Hot loops run once per request: optimised from the first call, not after tiering (a request right
    // after start-up otherwise computes its filter banks in unoptimised code, 2-3x slower). Plain loops,
    // not TensorPrimitives: its generic double instantiations would themselves start unoptimised.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ComputeFrames(float[] samples, float[] result, int from, int to)
    {
        var frame = new double[FrameLength];
        var re = new double[FftSize];
        var im = new double[FftSize];
        var power = new double[FftSize / 2 + 1];
        for (int t = from; t < to; t++)
        {
            var source = samples.AsSpan(t * FrameShift, FrameLength);
            double sum = 0;
            for (int n = 0; n < FrameLength; n++) sum += frame[n] = source[n] * 32768.0;             // 16-bit range
            double mean = sum / FrameLength;
            for (int n = 0; n < FrameLength; n++) frame[n] -= mean;                                   // remove DC
            for (int n = FrameLength - 1; n > 0; n--) frame[n] -= Preemphasis * frame[n - 1];          // pre-emphasis
            frame[0] -= Preemphasis * frame[0];
            for (int n = 0; n < FrameLength; n++) frame[n] *= _window[n];                             // Povey window
            Array.Clear(re);
            Array.Clear(im);
            for (int n = 0; n < FrameLength; n++) re[_bitReverse[n]] = frame[n];                       // zero-padded to 512
            Fft(re, im);
            for (int k = 0; k <= FftSize / 2; k++) power[k] = re[k] * re[k] + im[k] * im[k];
            var row = result.AsSpan(t * MelBins, MelBins);
            for (int b = 0; b < MelBins; b++)
            {
                var (first, weights) = _mel[b];
                double energy = 0;
                for (int i = 0; i < weights.Length; i++) energy += weights[i] * power[first + i];
                row[b] = (float)Math.Log(Math.Max(energy, LogFloor));
            }
        }
    }

    /// <summary>In-place radix-2 FFT; the input is already in bit-reversed order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Fft(double[] re, double[] im)
    {
        for (int size = 2; size <= FftSize; size <<= 1)
        {
            int half = size >> 1, step = FftSize / size;
            for (int start = 0; start < FftSize; start += size)
            {
                for (int k = 0; k < half; k++)
                {
                    double wr = _cos[k * step], wi = _sin[k * step];
                    int a = start + k, b = a + half;
                    double tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
                    re[b] = re[a] - tr; im[b] = im[a] - ti;
                    re[a] += tr; im[a] += ti;
                }
            }
        }
    }

    /// <summary>
    /// Seamless' encoder input: each bin normalised over the utterance, (x - mean) / sqrt(var + 1e-7)
    /// with the unbiased variance, an odd frame count padded with one zero frame, then frame pairs
    /// stacked: [frames * 80] -> [(frames + 1) / 2 * 160].
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float[] NormaliseAndStack(float[] fbank, int frames)
    {
        if (frames < 2) throw new InvalidInputException("audio", $"{frames} filter-bank frames: at least 2 (about 35 ms of audio) are needed");
        var x = new float[(frames + 1) / 2 * 2 * MelBins];
        for (int b = 0; b < MelBins; b++)
        {
            double sum = 0;
            for (int t = 0; t < frames; t++) sum += fbank[t * MelBins + b];
            double mean = sum / frames, sq = 0;
            for (int t = 0; t < frames; t++) { double d = fbank[t * MelBins + b] - mean; sq += d * d; }
            double inv = 1.0 / Math.Sqrt(sq / (frames - 1) + 1e-7);
            for (int t = 0; t < frames; t++) x[t * MelBins + b] = (float)((fbank[t * MelBins + b] - mean) * inv);
        }
        return x;   // row-major [T, 80] with T even is already [T/2, 160]
    }
}
