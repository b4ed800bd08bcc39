namespace OnnxMultimodal.Fuzz;

/// <summary>
/// A small seeded mutator (no coverage feedback): bit flips, random and "interesting" bytes and
/// integers (0, -1, 0x7F.., 0x80.., lengths), block insert, delete, duplicate, splice with another seed,
/// truncation. The same seed gives the same inputs, so a CI failure replays exactly.
/// </summary>
public sealed class Mutator(int seed, int maxLength = 1 << 16)
{
    private static readonly int[] Interesting = [0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, int.MaxValue, int.MinValue, 0x10000, 4096, 65535, 1 << 20];
    private readonly Random _rng = new(seed);

    /// <summary>A mutation of <paramref name="input"/> (1 to 8 edits); <paramref name="other"/> is spliced from.</summary>
    public byte[] Mutate(byte[] input, byte[] other)
    {
        var data = new List<byte>(input);
        int edits = 1 + _rng.Next(8);
        for (int e = 0; e < edits; e++)
        {
            if (data.Count == 0) { data.Add((byte)_rng.Next(256)); continue; }
            int at = _rng.Next(data.Count);
            switch (_rng.Next(9))
            {
                case 0: data[at] ^= (byte)(1 << _rng.Next(8)); break;
                case 1: data[at] = (byte)_rng.Next(256); break;
                case 2: data[at] = (byte)Interesting[_rng.Next(Interesting.Length)]; break;
                case 3:   // a 16- or 32-bit integer, either endianness
                {
                    int v = Interesting[_rng.Next(Interesting.Length)], width = _rng.Next(2) == 0 ? 2 : 4;
                    bool big = _rng.Next(2) == 0;
                    for (int k = 0; k < width && at + k < data.Count; k++)
                        data[at + k] = (byte)(v >> (8 * (big ? width - 1 - k : k)));
                    break;
                }
                case 4: data.InsertRange(at, Enumerable.Range(0, 1 + _rng.Next(16)).Select(_ => (byte)_rng.Next(256))); break;
                case 5: data.RemoveRange(at, Math.Min(data.Count - at, 1 + _rng.Next(32))); break;
                case 6:   // duplicate a block
                {
                    int len = Math.Min(data.Count - at, 1 + _rng.Next(64));
                    data.InsertRange(_rng.Next(data.Count), data.GetRange(at, len));
                    break;
                }
                case 7:   // splice a block of the other seed
                    if (other.Length > 0)
                    {
                        int from = _rng.Next(other.Length), len = Math.Min(other.Length - from, 1 + _rng.Next(64));
                        data.InsertRange(at, other.AsSpan(from, len).ToArray());
                    }
                    break;
                default: data.RemoveRange(at, data.Count - at); break;   // truncate
            }
        }
        if (data.Count > maxLength) data.RemoveRange(maxLength, data.Count - maxLength);
        return data.ToArray();
    }
}
