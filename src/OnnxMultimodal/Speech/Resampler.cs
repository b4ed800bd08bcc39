namespace OnnxMultimodal.Speech;

/// <summary>
/// Band-limited resampling by a polyphase windowed-sinc filter: rates reduced by their gcd, cutoff at
/// 0.99 of the lower Nyquist, Hann-squared window over 6 zero crossings. This is the method (and the
/// default parameters) of torchaudio.functional.resample, so both produce the same samples to float
/// rounding.
/// </summary>
internal static class Resampler
{
    private const int LowpassFilterWidth = 6;
    private const double Rolloff = 0.99;

    public static float[] Resample(ReadOnlySpan<float> input, int fromRate, int toRate)
    {
        if (fromRate <= 0 || toRate <= 0) throw new ArgumentOutOfRangeException(nameof(fromRate), "rates must be positive");
        if (fromRate == toRate) return input.ToArray();
        int g = Gcd(fromRate, toRate);
        int orig = fromRate / g, next = toRate / g;
        double baseFreq = Math.Min(orig, next) * Rolloff;
        int width = (int)Math.Ceiling(LowpassFilterWidth * orig / baseFreq);
        int taps = 2 * width + orig;
        var kernels = new float[next * taps];          // [phase, tap]
        double scale = baseFreq / orig;
        for (int p = 0; p < next; p++)
        {
            for (int k = 0; k < taps; k++)
            {
                double t = (-(double)p / next + (double)(k - width) / orig) * baseFreq;
                t = Math.Clamp(t, -LowpassFilterWidth, LowpassFilterWidth);
                double window = Math.Pow(Math.Cos(t * Math.PI / LowpassFilterWidth / 2), 2);
                t *= Math.PI;
                double sinc = t == 0 ? 1.0 : Math.Sin(t) / t;
                kernels[p * taps + k] = (float)(sinc * window * scale);
            }
        }
        int length = input.Length;
        int outLength = (int)Math.Ceiling((double)next * length / orig);
        var padded = new float[width + length + width + orig];   // zeros around the signal
        input.CopyTo(padded.AsSpan(width));
        var output = new float[outLength];
        for (int j = 0; j < outLength; j++)
        {
            int block = j / next, phase = j % next;
            output[j] = System.Numerics.Tensors.TensorPrimitives.Dot(
                kernels.AsSpan(phase * taps, taps), padded.AsSpan(block * orig, taps));
        }
        return output;
    }

    private static int Gcd(int a, int b)
    {
        while (b != 0) (a, b) = (b, a % b);
        return a;
    }
}
