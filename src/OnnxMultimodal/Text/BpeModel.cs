using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;

namespace OnnxMultimodal.Text;

/// <summary>
/// Byte-pair encoding as Hugging Face tokenizers runs it: characters (or <c>&lt;0xAB&gt;</c> byte tokens under
/// <c>byte_fallback</c>, or the unknown token) are merged lowest merge rank first, leftmost first on ties;
/// <c>ignore_merges</c> takes a piece found whole in the vocabulary as one token (Llama-3).
/// Microsoft.ML.Tokenizers' BpeTokenizer has neither byte fallback nor ignore_merges, so this is our own.
/// </summary>
internal sealed class BpeModel : TokenModel
{
    private const int CacheCapacity = 100_000, CacheMaxPieceLength = 64;

    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly Dictionary<long, (int Rank, int Merged)> _merges;
    private readonly int[] _byteIds;
    private readonly int _unk;                  // -1: none
    private readonly bool _fuseUnk, _byteFallback, _ignoreMerges;
    private readonly ConcurrentDictionary<string, int[]> _cache = new();

    public override string?[] Pieces { get; }

    private BpeModel(Dictionary<string, int> vocab, Dictionary<long, (int, int)> merges, int unk, bool fuseUnk, bool byteFallback, bool ignoreMerges, string?[] pieces)
    {
        _vocab = vocab;
        _lookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _merges = merges;
        _byteIds = ByteTokenIds(vocab);
        (_unk, _fuseUnk, _byteFallback, _ignoreMerges) = (unk, fuseUnk, byteFallback, ignoreMerges);
        Pieces = pieces;
    }

    public static BpeModel Create(JsonElement m, TokenizerJsonReader r, int maxVocabulary)
    {
        if (m.TryGetProperty("dropout", out var dropout) && dropout.ValueKind != JsonValueKind.Null && r.Number(dropout, "model.dropout") != 0)
            throw r.Unsupported("model.dropout", dropout.GetRawText(), "BPE dropout is for training");
        foreach (string affix in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (r.OptionalString(m, affix, "model") is { Length: > 0 } a) throw r.Unsupported($"model.{affix}", a);

        var vocabJson = r.Required(m, "vocab", "model");
        if (vocabJson.ValueKind != JsonValueKind.Object) throw r.Error("model.vocab", "expected an object of token: id");
        var vocab = new Dictionary<string, int>();
        int size = 0;
        foreach (var p in vocabJson.EnumerateObject())
        {
            int id = r.Id(p.Value, $"model.vocab[\"{p.Name}\"]", maxVocabulary);
            vocab[p.Name] = id;
            size = Math.Max(size, id + 1);
        }
        var pieces = new string?[size];
        foreach (var (token, id) in vocab) pieces[id] = token;

        var merges = new Dictionary<long, (int, int)>();
        int rank = 0;
        foreach (var e in r.Array(m, "merges", "model").EnumerateArray())
        {
            string field = $"model.merges[{rank}]";
            string? left, right;
            if (e.ValueKind == JsonValueKind.Array && e.GetArrayLength() == 2 && e[0].ValueKind == JsonValueKind.String && e[1].ValueKind == JsonValueKind.String)
                (left, right) = (e[0].GetString(), e[1].GetString());
            else if (e.ValueKind == JsonValueKind.String && e.GetString()!.Split(' ') is [var a, var b])
                (left, right) = (a, b);
            else throw r.Error(field, $"expected \"left right\" or [left, right], found {e.GetRawText()}");
            if (!vocab.TryGetValue(left!, out int l)) throw r.Error(field, $"'{left}' is not in model.vocab");
            if (!vocab.TryGetValue(right!, out int rr)) throw r.Error(field, $"'{right}' is not in model.vocab");
            if (!vocab.TryGetValue(left + right, out int merged)) throw r.Error(field, $"'{left + right}' is not in model.vocab");
            merges[Key(l, rr)] = (rank, merged);      // a repeated pair keeps its last rank, as in Hugging Face
            rank++;
        }

        int unk = -1;
        if (r.OptionalString(m, "unk_token", "model") is { } unkToken && !vocab.TryGetValue(unkToken, out unk))
            throw r.Error("model.unk_token", $"'{unkToken}' is not in model.vocab");
        return new(vocab, merges, unk, r.Bool(m, "fuse_unk", "model", false), r.Bool(m, "byte_fallback", "model", false),
            r.Bool(m, "ignore_merges", "model", false), pieces);
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    public override void Tokenize(string piece, List<int> ids)
    {
        if (_ignoreMerges && _vocab.TryGetValue(piece, out int whole)) { ids.Add(whole); return; }
        if (_cache.TryGetValue(piece, out var cached)) { ids.AddRange(cached); return; }
        int start = ids.Count;
        Merge(piece, ids);
        if (piece.Length <= CacheMaxPieceLength && _cache.Count < CacheCapacity) _cache.TryAdd(piece, [.. ids.Skip(start)]);
    }

    private void Merge(string piece, List<int> output)
    {
        // Symbols as a doubly linked list over arrays: id, previous, next (-1: none), alive.
        var sym = new List<int>(piece.Length);
        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < piece.Length;)
        {
            int n = char.IsHighSurrogate(piece[i]) && i + 1 < piece.Length && char.IsLowSurrogate(piece[i + 1]) ? 2 : 1;
            var ch = piece.AsSpan(i, n);
            i += n;
            if (_lookup.TryGetValue(ch, out int id)) { sym.Add(id); continue; }
            if (_byteFallback)
            {
                int count = Encoding.UTF8.GetBytes(ch, utf8);
                bool all = true;
                for (int b = 0; b < count; b++) all &= _byteIds[utf8[b]] >= 0;
                if (all) { for (int b = 0; b < count; b++) sym.Add(_byteIds[utf8[b]]); continue; }
            }
            if (_unk < 0) continue;                                   // no unknown token: the character is dropped
            if (_fuseUnk && sym.Count > 0 && sym[^1] == _unk) continue;
            sym.Add(_unk);
        }

        int count0 = sym.Count;
        var prev = new int[count0];
        var next = new int[count0];
        var alive = new bool[count0];
        for (int i = 0; i < count0; i++) { prev[i] = i - 1; next[i] = i + 1 < count0 ? i + 1 : -1; alive[i] = true; }

        // Candidate merges keyed by (rank, position): lowest rank first, leftmost on ties.
        var queue = new PriorityQueue<(int Pos, int Merged), long>();
        void Offer(int pos)
        {
            int nx = next[pos];
            if (nx >= 0 && _merges.TryGetValue(Key(sym[pos], sym[nx]), out var m))
                queue.Enqueue((pos, m.Merged), ((long)m.Rank << 32) | (uint)pos);
        }
        for (int i = 0; i + 1 < count0; i++) Offer(i);

        while (queue.TryDequeue(out var top, out _))
        {
            int pos = top.Pos;
            if (!alive[pos] || next[pos] < 0) continue;
            int right = next[pos];
            if (!_merges.TryGetValue(Key(sym[pos], sym[right]), out var m) || m.Merged != top.Merged) continue;
            sym[pos] = m.Merged;
            alive[right] = false;
            next[pos] = next[right];
            if (next[pos] >= 0) prev[next[pos]] = pos;
            if (prev[pos] >= 0) Offer(prev[pos]);
            Offer(pos);
        }
        for (int i = 0; i < count0; i++) if (alive[i]) output.Add(sym[i]);
    }
}
