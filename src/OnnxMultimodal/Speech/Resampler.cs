namespace OnnxMultimodal.Speech;

/// <summary>
/// Band-limited resampling by a polyphase windowed-sinc filter: cutoff at 0.99 of the lower Nyquist,
/// Hann-squared window over 6 zero crossings. This is the filter of torchaudio.functional.resample
/// (method "sinc_interp_hann", its defaults), so both give the same samples to float rounding.
/// <para>
/// torchaudio reduces the rates by their gcd and builds a [new, orig + 2·width] kernel: for co-prime
/// rates that is ~orig·new taps (44,101 → 16,000 Hz: 706M floats), nearly all of them zero. Here each
/// phase keeps only the taps inside the window, ⌈12·from / (0.99·min(from, to))⌉ + 2 of them, so the
/// table is at most <c>to × taps</c> floats whatever the gcd (<see cref="TableBytes"/>): 2.2 MB for
/// 44,101 → 16,000 Hz, 9 MB for 192 kHz → 16 kHz.
/// </para>
/// </summary>
internal static class Resampler
{
    private const int LowpassFilterWidth = 6;
    private const double Rolloff = 0.99;

    /// <summary>Highest rate either side accepted here; <see cref="Pipeline.ResourceLimits.MaxAudioSampleRate"/>
    /// is the (lower) bound applied to input files.</summary>
    public const int MaxRate = 1_000_000;

    /// <summary>Resamples <paramref name="input"/> from <paramref name="fromRate"/> to <paramref name="toRate"/> Hz:
    /// ⌈length · to / from⌉ samples.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A rate is not in 1..<see cref="MaxRate"/>.</exception>
    public static float[] Resample(ReadOnlySpan<float> input, int fromRate, int toRate)
    {
        if (fromRate <= 0 || toRate <= 0 || fromRate > MaxRate || toRate > MaxRate)
            throw new ArgumentOutOfRangeException(nameof(fromRate), $"rates must be within 1..{MaxRate:N0} Hz (got {fromRate} -> {toRate})");
        if (fromRate == toRate) return input.ToArray();
        int g = Gcd(fromRate, toRate);
        int orig = fromRate / g, next = toRate / g;   // the output repeats its phases every `next` samples, advancing `orig` inputs
        var (table, first, taps) = Table(fromRate, toRate, orig, next);
        long outLong = ((long)next * input.Length + orig - 1) / orig;
        if (outLong > Array.MaxLength) throw new ArgumentOutOfRangeException(nameof(input), $"{outLong:N0} output samples");
        int outLength = (int)outLong;
        // Zeros around the signal: taps reach at most `pad` samples before the first and after the last input.
        int pad = taps + 1;
        var padded = new float[pad + input.Length + pad];
        input.CopyTo(padded.AsSpan(pad));
        var output = new float[outLength];
        for (int j = 0; j < outLength; j++)
        {
            long block = j / next;
            int phase = (int)(j % next);
            long start = block * orig + first[phase] + pad;   // first input sample under this phase's taps
            output[j] = System.Numerics.Tensors.TensorPrimitives.Dot(table.AsSpan(phase * taps, taps), padded.AsSpan((int)start, taps));
        }
        return output;
    }

    /// <summary>Bytes of the filter table for a conversion (what <see cref="Resample"/> allocates besides the signal).</summary>
    public static long TableBytes(int fromRate, int toRate)
    {
        int g = Gcd(fromRate, toRate);
        return 4L * (toRate / g) * Taps(fromRate, toRate);
    }

    private static int Taps(int fromRate, int toRate) =>
        (int)Math.Ceiling(2.0 * LowpassFilterWidth * fromRate / (Math.Min(fromRate, toRate) * Rolloff)) + 2;

    /// <summary>
    /// [next, taps] weights and each phase's first input offset relative to <c>block · orig</c>.
    /// Output j (block b = j / next, phase p = j % next) sits at input position c = j · from / to; input
    /// sample n weighs sinc(π t) · cos²(π t / 12) · min/from with t = (n / from − j / to) · min · 0.99,
    /// zero for |t| ≥ 6. The integers n − b·orig and p · orig / next keep t free of the gcd.
    /// </summary>
    private static (float[] Table, int[] First, int Taps) Table(int fromRate, int toRate, int orig, int next)
    {
        int taps = Taps(fromRate, toRate);
        double baseFreq = Math.Min(orig, next) * Rolloff;   // in the reduced rates, as torchaudio
        double halfWidth = LowpassFilterWidth * orig / baseFreq;   // input samples either side of the centre
        double scale = baseFreq / orig;
        var table = new float[(long)next * taps];   // [phase, tap]
        var first = new int[next];
        for (int p = 0; p < next; p++)
        {
            // Centre of phase p relative to block·orig: p·orig/next input samples.
            double centre = (double)p * orig / next;
            first[p] = (int)Math.Floor(centre - halfWidth);
            for (int k = 0; k < taps; k++)
            {
                long n = first[p] + k;   // relative input index
                // t = (n/orig − p/next) · baseFreq, from exact integers: (n·next − p·orig) / (orig·next).
                double t = (double)(n * next - (long)p * orig) / ((double)orig * next) * baseFreq;
                t = Math.Clamp(t, -LowpassFilterWidth, LowpassFilterWidth);
                double window = Math.Pow(Math.Cos(t * Math.PI / LowpassFilterWidth / 2), 2);
                t *= Math.PI;
                double sinc = t == 0 ? 1.0 : Math.Sin(t) / t;
                table[(long)p * taps + k] = (float)(sinc * window * scale);
            }
        }
        return (table, first, taps);
    }

    private static int Gcd(int a, int b)
    {
        while (b != 0) (a, b) = (b, a % b);
        return a;
    }
}
