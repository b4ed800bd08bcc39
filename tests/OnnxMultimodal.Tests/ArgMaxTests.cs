using System.Numerics.Tensors;
using OnnxMultimodal.Generation;

namespace OnnxMultimodal.Tests;

/// <summary>Our greedy argmax (compiled optimised at its first call) must give TensorPrimitives.IndexOfMax's index on every input.</summary>
public class ArgMaxTests
{
    private static readonly float[] Specials = [0f, -0f, 1f, -1f, float.PositiveInfinity, float.NegativeInfinity, float.NaN, float.MaxValue, float.MinValue, 1e-40f];

    [Test]
    public void Matches_TensorPrimitives_on_random_rows_with_ties_zeros_infinities_and_NaN()
    {
        var rng = new Random(5);
        foreach (int n in Enumerable.Range(0, 70).Concat([127, 128, 129, 255, 1000, 32000, 65536]))
        {
            for (int trial = 0; trial < 12; trial++)
            {
                var x = new float[n];
                for (int i = 0; i < n; i++) x[i] = trial % 3 == 0 ? rng.Next(-3, 4) : (float)(rng.NextDouble() * 20 - 10);   // small integers: many ties
                int specials = trial % 4;   // 0-3 special values at random places (NaN, +-0, +-inf, ...)
                for (int s = 0; s < specials && n > 0; s++) x[rng.Next(n)] = Specials[rng.Next(Specials.Length)];
                if (trial == 11 && n > 0) Array.Fill(x, 0f);   // all +0, then a -0 before the first +0 below
                if (trial == 11 && n > 1) x[0] = -0f;
                Assert.That(ArgMax.IndexOfMax(x), Is.EqualTo(TensorPrimitives.IndexOfMax<float>(x)), $"n {n}, trial {trial}");
                // the same row starting one element in: the vector loop meets unaligned data and other tails
                if (n > 1)
                    Assert.That(ArgMax.IndexOfMax(x.AsSpan(1)), Is.EqualTo(TensorPrimitives.IndexOfMax<float>(x.AsSpan(1))), $"n {n} - 1, trial {trial}");
            }
        }
    }

    [Test]
    public void Picks_the_first_of_equal_maxima_and_the_first_NaN()
    {
        Assert.That(ArgMax.IndexOfMax([1f, 5f, 2f, 5f]), Is.EqualTo(1));
        Assert.That(ArgMax.IndexOfMax([1f, float.NaN, 9f, float.NaN]), Is.EqualTo(1));
        Assert.That(ArgMax.IndexOfMax([-0f, 0f, -1f]), Is.EqualTo(1), "+0 is above -0");
        Assert.That(ArgMax.IndexOfMax([]), Is.EqualTo(-1));
        var wide = new float[65536];
        wide[40000] = 3f;
        wide[50000] = 3f;
        Assert.That(ArgMax.IndexOfMax(wide), Is.EqualTo(40000));
    }
}
