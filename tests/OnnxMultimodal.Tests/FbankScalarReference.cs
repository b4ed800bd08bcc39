namespace OnnxMultimodal.Tests;

/// <summary>
/// The filter banks written the slow, obvious way: one frame at a time, scalar float64, a plain DFT (no FFT) and dense loops over each mel triangle. Kept as
/// the oracle the fast <see cref="OnnxMultimodal.Speech.Fbank"/> is compared with on long inputs
/// (the torchaudio references cover a few seconds only).
/// </summary>
internal static class FbankScalarReference
{
    public static float[] Compute(ReadOnlySpan<float> samples)
    {
        const int len = 400, shift = 160, nfft = 512, bins = 80;
        int frames = samples.Length < len ? 0 : 1 + (samples.Length - len) / shift;
        var window = new double[len];
        for (int n = 0; n < len; n++) window[n] = Math.Pow(0.5 - 0.5 * Math.Cos(2 * Math.PI * n / (len - 1)), 0.85);
        static double Mel(double f) => 1127.0 * Math.Log(1.0 + f / 700.0);
        double low = Mel(20.0), high = Mel(8000.0), delta = (high - low) / (bins + 1);
        var cos = new double[nfft];
        var sin = new double[nfft];
        for (int j = 0; j < nfft; j++) { cos[j] = Math.Cos(2 * Math.PI * j / nfft); sin[j] = Math.Sin(2 * Math.PI * j / nfft); }
        var result = new float[frames * bins];
        var frame = new double[len];
        var re = new double[nfft];
        var im = new double[nfft];
        for (int t = 0; t < frames; t++)
        {
            double sum = 0;
            for (int n = 0; n < len; n++) sum += frame[n] = samples[t * shift + n] * 32768.0;
            double mean = sum / len;
            for (int n = 0; n < len; n++) frame[n] -= mean;
            for (int n = len - 1; n > 0; n--) frame[n] -= 0.97 * frame[n - 1];
            frame[0] -= 0.97 * frame[0];
            Array.Clear(re);
            Array.Clear(im);
            for (int n = 0; n < len; n++) re[n] = frame[n] * window[n];
            for (int k = 0; k <= nfft / 2; k++)   // a plain DFT: slow, obviously right
            {
                double sr = 0, si = 0;
                for (int n = 0; n < len; n++)
                {
                    int j = k * n % nfft;
                    sr += re[n] * cos[j];
                    si -= re[n] * sin[j];
                }
                im[k] = sr * sr + si * si;
            }
            for (int b = 0; b < bins; b++)
            {
                double left = low + b * delta, centre = low + (b + 1) * delta, right = low + (b + 2) * delta, energy = 0;
                for (int i = 0; i < nfft / 2; i++)   // the Nyquist bin gets no weight, as in torchaudio
                {
                    double m = Mel(16000.0 / nfft * i);
                    energy += Math.Max(0.0, Math.Min((m - left) / (centre - left), (right - m) / (right - centre))) * im[i];
                }
                result[t * bins + b] = (float)Math.Log(Math.Max(energy, 1.1920929e-07));
            }
        }
        return result;
    }
}
