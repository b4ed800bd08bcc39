using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace OnnxMultimodal.Speech;

/// <summary>
/// A precomputed plan for the power spectrum of a real 512-point frame: the frame's even and odd samples
/// become the real and imaginary parts of a 256-point complex signal, whose radix-2 FFT (bit-reversed
/// load, two trivial stages fused, the other six vectorised with <see cref="Vector{T}"/> over split real
/// and imaginary arrays and per-stage twiddle tables) is split back into the 257 bins of the real
/// transform. float64 throughout: the filter banks' log floor sits far below a frame's loudest bin, where
/// float32 rounding shows (see <see cref="Fbank"/>).
/// </summary>
internal sealed class RealFft
{
    public const int Size = 512;          // real points
    public const int Bins = Size / 2 + 1; // 257 power bins, DC to Nyquist
    private const int M = Size / 2;       // complex points
    private const int Log2M = 8;

    private readonly int[] _reverse = new int[M];
    // Twiddles of the stage whose butterflies span h (h = 4 ... 128) at [h, 2h): e^{-2 pi i k / 2h}, k < h.
    private readonly double[] _twRe = new double[M], _twIm = new double[M];
    // The split step's twiddles e^{-2 pi i k / 512}, k <= 256.
    private readonly double[] _splitRe = new double[M + 1], _splitIm = new double[M + 1];

    public static RealFft Instance { get; } = new();

    private RealFft()
    {
        for (int i = 0; i < M; i++)
        {
            int r = 0;
            for (int k = 0; k < Log2M; k++) r |= ((i >> k) & 1) << (Log2M - 1 - k);
            _reverse[i] = r;
        }
        for (int h = 4; h < M; h <<= 1)
            for (int k = 0; k < h; k++)
            {
                _twRe[h + k] = Math.Cos(Math.PI * k / h);
                _twIm[h + k] = -Math.Sin(Math.PI * k / h);
            }
        for (int k = 0; k <= M; k++)
        {
            _splitRe[k] = Math.Cos(2 * Math.PI * k / Size);
            _splitIm[k] = -Math.Sin(2 * Math.PI * k / Size);
        }
    }

    /// <summary>Scratch for one thread: the complex signal's real and imaginary parts.</summary>
    public sealed class Scratch
    {
        internal readonly double[] Re = new double[M], Im = new double[M];
    }

    /// <summary>|X[k]|^2 for k = 0 ... 256 of the real frame <paramref name="frame"/> (at most 512 samples,
    /// zero-padded to 512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Power(ReadOnlySpan<double> frame, Scratch scratch, Span<double> power)
    {
        if (frame.Length > Size || frame.Length % 2 != 0) throw new ArgumentException($"{frame.Length} samples: an even count up to {Size}", nameof(frame));
        if (power.Length < Bins) throw new ArgumentException($"room for {Bins} bins", nameof(power));
        var re = scratch.Re;
        var im = scratch.Im;
        int pairs = frame.Length / 2;
        for (int n = 0; n < pairs; n++)   // z[n] = x[2n] + i x[2n+1], stored bit-reversed
        {
            int r = _reverse[n];
            re[r] = frame[2 * n];
            im[r] = frame[2 * n + 1];
        }
        for (int n = pairs; n < M; n++) { int r = _reverse[n]; re[r] = 0; im[r] = 0; }
        FirstTwoStages(re, im);
        int vc = Vector<double>.Count;
        ref double r0 = ref MemoryMarshal.GetArrayDataReference(re), i0 = ref MemoryMarshal.GetArrayDataReference(im);
        ref double wr0 = ref MemoryMarshal.GetArrayDataReference(_twRe), wi0 = ref MemoryMarshal.GetArrayDataReference(_twIm);
        for (int h = 4; h < M; h <<= 1)
        {
            if (h < vc) { ScalarStage(re, im, h); continue; }
            for (int start = 0; start < M; start += 2 * h)
                for (int k = 0; k < h; k += vc)   // a, b, h + k < 256 = the arrays' length: unchecked loads
                {
                    nuint a = (nuint)(start + k), b = a + (nuint)h, w = (nuint)(h + k);
                    var wr = Vector.LoadUnsafe(ref wr0, w);
                    var wi = Vector.LoadUnsafe(ref wi0, w);
                    var ra = Vector.LoadUnsafe(ref r0, a);
                    var ia = Vector.LoadUnsafe(ref i0, a);
                    var rb = Vector.LoadUnsafe(ref r0, b);
                    var ib = Vector.LoadUnsafe(ref i0, b);
                    var tr = rb * wr - ib * wi;
                    var ti = rb * wi + ib * wr;
                    (ra - tr).StoreUnsafe(ref r0, b);
                    (ia - ti).StoreUnsafe(ref i0, b);
                    (ra + tr).StoreUnsafe(ref r0, a);
                    (ia + ti).StoreUnsafe(ref i0, a);
                }
        }
        // Split: Z[k] and conj(Z[M - k]) give the even part E and odd part O; X[k] = E + e^{-2 pi i k / 512} O.
        for (int k = 0; k <= M; k++)
        {
            int p = k & (M - 1), q = (M - k) & (M - 1);
            double a = re[p], b = im[p], c = re[q], d = im[q];
            double er = 0.5 * (a + c), ei = 0.5 * (b - d);
            double odr = 0.5 * (b + d), odi = -0.5 * (a - c);
            double wr = _splitRe[k], wi = _splitIm[k];
            double xr = er + wr * odr - wi * odi, xi = ei + wr * odi + wi * odr;
            power[k] = xr * xr + xi * xi;
        }
    }

    /// <summary>The butterflies of span 1 and 2 (twiddles 1 and -i) as one radix-4 pass over groups of four.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FirstTwoStages(double[] re, double[] im)
    {
        for (int s = 0; s < M; s += 4)
        {
            double r0 = re[s] + re[s + 1], i0 = im[s] + im[s + 1];
            double r1 = re[s] - re[s + 1], i1 = im[s] - im[s + 1];
            double r2 = re[s + 2] + re[s + 3], i2 = im[s + 2] + im[s + 3];
            double r3 = re[s + 2] - re[s + 3], i3 = im[s + 2] - im[s + 3];
            re[s] = r0 + r2; im[s] = i0 + i2;
            re[s + 2] = r0 - r2; im[s + 2] = i0 - i2;
            // (r3 + i i3) * (-i) = i3 - i r3
            re[s + 1] = r1 + i3; im[s + 1] = i1 - r3;
            re[s + 3] = r1 - i3; im[s + 3] = i1 + r3;
        }
    }

    private void ScalarStage(double[] re, double[] im, int h)
    {
        for (int start = 0; start < M; start += 2 * h)
            for (int k = 0; k < h; k++)
            {
                int a = start + k, b = a + h;
                double wr = _twRe[h + k], wi = _twIm[h + k];
                double tr = re[b] * wr - im[b] * wi, ti = re[b] * wi + im[b] * wr;
                re[b] = re[a] - tr; im[b] = im[a] - ti;
                re[a] += tr; im[a] += ti;
            }
    }
}
