using System.Numerics;
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

    /// <summary>Frames each thread takes at least: below 2 x this a clip is computed on the calling thread
    /// (a frame costs about a microsecond; a parallel loop's start costs tens).</summary>
    public const int MinFramesPerThread = 128;

    private static readonly Lazy<Fbank> s_default = new(() => new Fbank());
    private readonly double[] _window = new double[FrameLength];
    // Sparse mel triangles over the FFT bins: bin b weighs power[_melFirst[b] + i] by _melWeights[_melOffset[b] + i], i < _melCount[b].
    private readonly int[] _melFirst = new int[MelBins], _melOffset = new int[MelBins], _melCount = new int[MelBins];
    private readonly double[] _melWeights;

    public static Fbank Default => s_default.Value;

    private Fbank()
    {
        for (int n = 0; n < FrameLength; n++)   // Povey: Hann (symmetric) to the power 0.85
            _window[n] = Math.Pow(0.5 - 0.5 * Math.Cos(2 * Math.PI * n / (FrameLength - 1)), 0.85);
        static double Mel(double f) => 1127.0 * Math.Log(1.0 + f / 700.0);
        double low = Mel(20.0), high = Mel(SampleRate / 2.0), delta = (high - low) / (MelBins + 1);
        double binWidth = (double)SampleRate / FftSize;
        var weights = new List<double>();
        for (int b = 0; b < MelBins; b++)
        {
            double left = low + b * delta, centre = low + (b + 1) * delta, right = low + (b + 2) * delta;
            _melOffset[b] = weights.Count;
            for (int i = 0; i < FftSize / 2; i++)   // the Nyquist bin gets no weight, as in torchaudio
            {
                double m = Mel(binWidth * i);
                double w = Math.Max(0.0, Math.Min((m - left) / (centre - left), (right - m) / (right - centre)));
                if (w <= 0) continue;
                if (_melCount[b] == 0) _melFirst[b] = i;
                weights.Add(w);   // a triangle's bins are contiguous
                _melCount[b]++;
            }
        }
        _melWeights = weights.ToArray();
    }

    /// <summary>Number of frames for <paramref name="samples"/> samples (snip edges).</summary>
    public static int FrameCount(int samples) => samples < FrameLength ? 0 : 1 + (samples - FrameLength) / FrameShift;

    /// <summary>Threads <see cref="Compute"/> uses for <paramref name="frames"/> frames: one per
    /// <see cref="MinFramesPerThread"/> frames, at most <paramref name="maxThreads"/> (0: the processor count).</summary>
    public static int Threads(int frames, int maxThreads = 0) =>
        Math.Clamp(Math.Min(maxThreads > 0 ? maxThreads : Environment.ProcessorCount, frames / MinFramesPerThread), 1, 64);

    /// <param name="samples">Mono samples in [-1, 1] at 16 kHz.</param>
    /// <param name="maxThreads">Most threads to use (0: the processor count); see <see cref="Threads"/>.</param>
    /// <returns>[frames * 80] log mel energies. Arithmetic is float64 throughout (torchaudio's default is
    /// float32, whose rounding shows in near-silent frames; the tests compare with both).</returns>
    public float[] Compute(ReadOnlySpan<float> samples, int maxThreads = 0)
    {
        int frames = FrameCount(samples.Length);
        var result = new float[frames * MelBins];
        int threads = Threads(frames, maxThreads);
        if (threads <= 1)
        {
            ComputeFrames(samples, result, 0, frames);
            return result;
        }
        // Frames are independent: each thread takes a contiguous range with its own scratch (the result
        // does not depend on the split). The samples stay pinned for the loop; no copy.
        unsafe
        {
            fixed (float* p = samples)
            {
                nint address = (nint)p;
                int length = samples.Length;
                Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, k =>
                    ComputeFrames(new ReadOnlySpan<float>((void*)address, length), result,
                                  (int)((long)frames * k / threads), (int)((long)frames * (k + 1) / threads)));
            }
        }
        return result;
    }

    // Hot loops run once per request: optimised from the first call, not after tiering (a request right
    // after start-up otherwise computes its filter banks in unoptimised code, 2-3x slower).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void ComputeFrames(ReadOnlySpan<float> samples, float[] result, int from, int to)
    {
        var scaled = new double[FrameLength];
        var frame = new double[FrameLength];
        var power = new double[RealFft.Bins];
        var energies = new double[MelBins];
        var floor = new Vector<double>(LogFloor);
        var scratch = new RealFft.Scratch();
        var fft = RealFft.Instance;
        int vf = Vector<float>.Count, vd = Vector<double>.Count;
        for (int t = from; t < to; t++)
        {
            var source = samples.Slice(t * FrameShift, FrameLength);
            // To the 16-bit range, in float64, summed for the frame mean.
            var sums = Vector<double>.Zero;
            int n = 0;
            for (; n <= FrameLength - vf; n += vf)
            {
                Vector.Widen(new Vector<float>(source[n..]), out var lo, out var hi);
                lo *= 32768.0;
                hi *= 32768.0;
                lo.CopyTo(scaled, n);
                hi.CopyTo(scaled, n + vd);
                sums += lo + hi;
            }
            double sum = Vector.Sum(sums);
            for (; n < FrameLength; n++) sum += scaled[n] = source[n] * 32768.0;
            double mean = sum / FrameLength;
            // Remove DC, pre-emphasise (y[n] = d[n] - 0.97 d[n-1], y[0] = 0.03 d[0]), Povey window.
            double d0 = scaled[0] - mean;
            frame[0] = (d0 - Preemphasis * d0) * _window[0];
            var vmean = new Vector<double>(mean);
            n = 1;
            for (; n <= FrameLength - vd; n += vd)
            {
                var cur = new Vector<double>(scaled, n) - vmean;
                var prev = new Vector<double>(scaled, n - 1) - vmean;
                ((cur - prev * Preemphasis) * new Vector<double>(_window, n)).CopyTo(frame, n);
            }
            for (; n < FrameLength; n++) frame[n] = ((scaled[n] - mean) - Preemphasis * (scaled[n - 1] - mean)) * _window[n];
            fft.Power(frame, scratch, power);   // zero-padded to 512
            for (int b = 0; b < MelBins; b++)
            {
                var w = _melWeights.AsSpan(_melOffset[b], _melCount[b]);
                var p = power.AsSpan(_melFirst[b], w.Length);
                double energy = 0;
                for (int i = 0; i < w.Length; i++) energy += w[i] * p[i];
                energies[b] = energy;
            }
            var row = result.AsSpan(t * MelBins, MelBins);
            int j = 0;
            for (; j <= MelBins - 2 * vd; j += 2 * vd)   // vectorised log (within an ulp of Math.Log), floored at float epsilon
            {
                var lo = Vector.Log(Vector.Max(new Vector<double>(energies, j), floor));
                var hi = Vector.Log(Vector.Max(new Vector<double>(energies, j + vd), floor));
                Vector.Narrow(lo, hi).CopyTo(row[j..]);
            }
            for (; j < MelBins; j++) row[j] = (float)Math.Log(Math.Max(energies[j], LogFloor));
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
        if (fbank.Length < frames * MelBins) throw new ArgumentException($"{fbank.Length} values for {frames} frames", nameof(fbank));
        var x = new float[(frames + 1) / 2 * 2 * MelBins];
        // Row by row, each vector lane a bin: every bin still sums its frames in time order, as a loop per bin would.
        var sum = new double[MelBins];
        var sq = new double[MelBins];
        var mean = new double[MelBins];
        var inv = new double[MelBins];
        for (int t = 0; t < frames; t++) Rows(fbank.AsSpan(t * MelBins, MelBins), sum, null, null, null, default);
        for (int b = 0; b < MelBins; b++) mean[b] = sum[b] / frames;
        for (int t = 0; t < frames; t++) Rows(fbank.AsSpan(t * MelBins, MelBins), sq, mean, null, null, default);
        for (int b = 0; b < MelBins; b++) inv[b] = 1.0 / Math.Sqrt(sq[b] / (frames - 1) + 1e-7);
        for (int t = 0; t < frames; t++) Rows(fbank.AsSpan(t * MelBins, MelBins), null, mean, inv, x, t * MelBins);
        return x;   // row-major [T, 80] with T even is already [T/2, 160]
    }

    /// <summary>One row of 80 bins: with <paramref name="acc"/>, adds the row (or, with <paramref name="mean"/>,
    /// its squared deviations) into it; otherwise writes (row - mean) * inv into <paramref name="output"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Rows(ReadOnlySpan<float> row, double[]? acc, double[]? mean, double[]? inv, float[]? output, int at)
    {
        int vf = Vector<float>.Count, vd = Vector<double>.Count, b = 0;
        for (; b <= MelBins - vf; b += vf)
        {
            Vector.Widen(new Vector<float>(row[b..]), out var lo, out var hi);
            if (mean is not null) { lo -= new Vector<double>(mean, b); hi -= new Vector<double>(mean, b + vd); }
            if (acc is not null)
            {
                if (mean is not null) { lo *= lo; hi *= hi; }
                (new Vector<double>(acc, b) + lo).CopyTo(acc, b);
                (new Vector<double>(acc, b + vd) + hi).CopyTo(acc, b + vd);
            }
            else Vector.Narrow(lo * new Vector<double>(inv!, b), hi * new Vector<double>(inv!, b + vd)).CopyTo(output!, at + b);
        }
        for (; b < MelBins; b++)
        {
            double v = row[b];
            if (mean is not null) v -= mean[b];
            if (acc is not null) acc[b] += mean is not null ? v * v : v;
            else output![at + b] = (float)(v * inv![b]);
        }
    }
}
