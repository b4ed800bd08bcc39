namespace OnnxMultimodal.Fuzz;

/// <summary>
/// A small seeded mutator (no coverage feedback): bit flips, random and "interesting" bytes and
/// integers (0, -1, 0x7F.., 0x80.., lengths), dictionary tokens (null, extremes, paths), block insert,
/// delete, duplicate, splice with another seed, truncation. The same seed gives the same inputs, so a CI failure replays exactly.
/// </summary>
/// <param name="structured">Whether dictionary tokens and JSON-aware edits are used (off: bytes only).</param>
public sealed class Mutator(int seed, int maxLength = 1 << 16, bool structured = true)
{
    private static readonly int[] Interesting = [0, 1, -1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, int.MaxValue, int.MinValue, 0x10000, 4096, 65535, 1 << 20];
    // Tokens that break parsers of text formats (JSON manifests and tokenizers, prompts): nulls, wrong
    // types, extreme numbers, escapes, paths. AFL++ gets the same list as tests/OnnxMultimodal.Fuzz/json.dict.
    private static readonly byte[][] Dictionary = new[]
    {
        "null", "true", "[]", "{}", "\"\"", "-1", "0", "2147483647", "-2147483648", "4294967295", "1e309", "-0", "NaN",
        "\"\\u0000\"", "\"../../etc/passwd\"", "\"/dev/zero\"", "\"%d\"", ",", ":", "\"", "\\", "\ud800",
    }.Select(System.Text.Encoding.UTF8.GetBytes).ToArray();
    private readonly Random _rng = new(seed);

    /// <summary>A mutation of <paramref name="input"/> (1 to 8 edits); <paramref name="other"/> is spliced from.</summary>
    public byte[] Mutate(byte[] input, byte[] other)
    {
        // JSON inputs (manifests, tokenizers): half the time change one value or drop one member, so the
        // result still parses and reaches the code that reads the fields.
        if (structured && input.Length > 0 && input[0] == (byte)'{' && _rng.Next(2) == 0 && MutateJson(input) is { } json) return json;
        var data = new List<byte>(input);
        int edits = 1 + _rng.Next(8);
        for (int e = 0; e < edits; e++)
        {
            if (data.Count == 0) { data.Add((byte)_rng.Next(256)); continue; }
            int at = _rng.Next(data.Count);
            switch (_rng.Next(structured ? 10 : 9))
            {
                case 9:   // a dictionary token, inserted or over a value (up to the next delimiter)
                {
                    var token = Dictionary[_rng.Next(Dictionary.Length)];
                    if (_rng.Next(2) == 0)
                    {
                        int end = at;
                        while (end < data.Count && end - at < 24 && data[end] is not ((byte)',' or (byte)'}' or (byte)']')) end++;
                        data.RemoveRange(at, end - at);
                    }
                    data.InsertRange(at, token);
                    break;
                }
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

    private static readonly string[] JsonValues =
        ["null", "-1", "0", "2147483647", "-2147483648", "2000000000", "1e308", "\"\"", "\"../../x\"", "\"/\"", "[]", "{}", "[null]", "true", "0.5"];

    private byte[]? MutateJson(byte[] input)
    {
        System.Text.Json.Nodes.JsonNode? root;
        try
        {
            root = System.Text.Json.Nodes.JsonNode.Parse(input);
        }
        catch (System.Text.Json.JsonException)
        {
            return null;
        }
        if (root is null) return null;
        var nodes = new List<System.Text.Json.Nodes.JsonNode>();
        void Walk(System.Text.Json.Nodes.JsonNode n)
        {
            nodes.Add(n);
            if (n is System.Text.Json.Nodes.JsonObject o) foreach (var p in o) { if (p.Value is not null) Walk(p.Value); }
            else if (n is System.Text.Json.Nodes.JsonArray a) foreach (var e in a) { if (e is not null) Walk(e); }
        }
        Walk(root);
        if (nodes.Count < 2) return null;
        var target = nodes[1 + _rng.Next(nodes.Count - 1)];
        var parent = target.Parent!;
        var value = _rng.Next(5) == 0 ? null : System.Text.Json.Nodes.JsonNode.Parse(JsonValues[_rng.Next(JsonValues.Length)]);
        switch (parent)
        {
            case System.Text.Json.Nodes.JsonObject o:
                string key = target.GetPropertyName();
                if (_rng.Next(4) == 0) o.Remove(key);
                else o[key] = value;
                break;
            case System.Text.Json.Nodes.JsonArray a:
                int i = target.GetElementIndex();
                if (_rng.Next(4) == 0) a.RemoveAt(i);
                else a[i] = value;
                break;
        }
        return System.Text.Encoding.UTF8.GetBytes(root.ToJsonString());
    }
}
