using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace OnnxMultimodal.Generation;

/// <summary>
/// The index of the largest logit, with TensorPrimitives.IndexOfMax's answer (the first NaN if there is one; +0 above
/// -0; the lowest index among equals), compiled fully optimised at its first call. A decode loop whose tokens come from
/// the graph calls this once a request (the first token, from the prompt's logits), so under tiered compilation
/// TensorPrimitives' version stayed in unoptimised code and its on-stack replacement compiled in the middle of a later
/// request's time to first token (~20 ms on the GPU machine; docs/benchmarks.md).
/// </summary>
internal static class ArgMax
{
    /// <summary>-1 for an empty span.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int IndexOfMax(ReadOnlySpan<float> x)
    {
        if (x.IsEmpty) return -1;
        int n = x.Length, i = 0;
        // Pass 1: the largest value, vectorised; NaN compares false, so a NaN anywhere is found by its own check.
        float max = float.NegativeInfinity;
        bool nan = false;
        if (Vector.IsHardwareAccelerated && n >= 2 * Vector<float>.Count)
        {
            var vs = MemoryMarshal.Cast<float, Vector<float>>(x);
            var vmax = new Vector<float>(float.NegativeInfinity);
            var vnan = Vector<int>.Zero;
            foreach (var v in vs)
            {
                vmax = Vector.Max(vmax, v);
                vnan |= ~Vector.Equals(v, v);
            }
            nan = vnan != Vector<int>.Zero;
            for (int k = 0; k < Vector<float>.Count; k++) max = MathF.Max(max, vmax[k]);
            i = vs.Length * Vector<float>.Count;
        }
        for (; i < n; i++)
        {
            float v = x[i];
            if (float.IsNaN(v)) nan = true;
            else if (v > max) max = v;
        }
        if (nan)
        {
            for (int k = 0; k < n; k++) if (float.IsNaN(x[k])) return k;
        }
        // Pass 2: the first index holding it (+0 before -0 when the largest is a zero).
        if (max == 0f)
        {
            int negativeZero = -1;
            for (int k = 0; k < n; k++)
            {
                if (x[k] != 0f) continue;
                if (!float.IsNegative(x[k])) return k;
                if (negativeZero < 0) negativeZero = k;
            }
            return negativeZero;
        }
        return x.IndexOf(max);
    }
}
