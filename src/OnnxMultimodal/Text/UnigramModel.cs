using System.Text;
using System.Text.Json;

namespace OnnxMultimodal.Text;

/// <summary>
/// SentencePiece's unigram model as Hugging Face tokenizers runs it: the Viterbi path of highest total piece score
/// (ties: the first candidate found, scanning start positions left to right and pieces shortest first); a character no
/// piece covers is an unknown of score <c>min - 10</c>, runs of unknowns fuse, and under <c>byte_fallback</c> an
/// unknown run becomes its <c>&lt;0xAB&gt;</c> byte tokens. Microsoft.ML.Tokenizers has a unigram model only behind a
/// SentencePiece .model protobuf, not a tokenizer.json, so this is our own.
/// </summary>
internal sealed class UnigramModel : TokenModel
{
    private const double UnknownPenalty = 10;

    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly double[] _scores;
    private readonly int _maxPieceChars, _unk;
    private readonly double _unkScore;
    private readonly bool _byteFallback;
    private readonly int[] _byteIds;

    public override string?[] Pieces { get; }

    private UnigramModel(string?[] pieces, double[] scores, Dictionary<string, int> ids, int unk, bool byteFallback)
    {
        Pieces = pieces;
        _scores = scores;
        _lookup = ids.GetAlternateLookup<ReadOnlySpan<char>>();
        _maxPieceChars = ids.Keys.Select(k => k.Length).DefaultIfEmpty(1).Max();
        _unkScore = scores.DefaultIfEmpty(0).Min() - UnknownPenalty;
        (_unk, _byteFallback) = (unk, byteFallback);
        _byteIds = ByteTokenIds(ids);
    }

    public static UnigramModel Create(JsonElement m, TokenizerJsonReader r, int maxVocabulary)
    {
        var vocab = r.Array(m, "vocab", "model");
        int n = vocab.GetArrayLength();
        if (n == 0) throw r.Error("model.vocab", "empty");
        if (n > maxVocabulary) throw r.Error("model.vocab", $"{n} pieces exceed the vocabulary limit of {maxVocabulary} (ResourceLimits.MaxVocabularySize)");
        var pieces = new string?[n];
        var scores = new double[n];
        var ids = new Dictionary<string, int>(n);
        int i = 0;
        foreach (var e in vocab.EnumerateArray())
        {
            string field = $"model.vocab[{i}]";
            if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() != 2 || e[0].ValueKind != JsonValueKind.String)
                throw r.Error(field, $"expected [piece, score], found {e.ValueKind}");
            pieces[i] = e[0].GetString()!;
            scores[i] = r.Number(e[1], field);
            if (pieces[i]!.Length == 0) throw r.Error(field, "empty piece");
            ids.TryAdd(pieces[i]!, i);
            i++;
        }
        int unk = -1;
        if (m.TryGetProperty("unk_id", out var u) && u.ValueKind != JsonValueKind.Null) unk = r.Id(u, "model.unk_id", n);
        else throw r.Unsupported("model", "Unigram", "no unk_id: Hugging Face refuses text with uncovered characters");
        return new(pieces, scores, ids, unk, r.Bool(m, "byte_fallback", "model", false));
    }

    public override void Tokenize(string piece, List<int> ids)
    {
        int n = piece.Length;
        if (n == 0) return;
        // best[end] = (score, start, id) of the best path ending at char position end.
        var bestScore = new double[n + 1];
        var bestStart = new int[n + 1];
        var bestId = new int[n + 1];
        Array.Fill(bestStart, -1);
        for (int start = 0; start < n; start++)
        {
            if (start > 0 && bestStart[start] < 0) continue;        // inside a surrogate pair: not reachable
            double here = bestScore[start];
            int charLen = char.IsHighSurrogate(piece[start]) && start + 1 < n && char.IsLowSurrogate(piece[start + 1]) ? 2 : 1;
            bool single = false;
            int maxLen = Math.Min(_maxPieceChars, n - start);
            for (int len = 1; len <= maxLen; len++)
            {
                if (!_lookup.TryGetValue(piece.AsSpan(start, len), out int id)) continue;
                int end = start + len;
                double candidate = here + _scores[id];
                if (bestStart[end] < 0 || candidate > bestScore[end]) (bestScore[end], bestStart[end], bestId[end]) = (candidate, start, id);
                if (len == charLen) single = true;
            }
            if (!single)
            {
                int end = start + charLen;
                double candidate = here + _unkScore;
                if (bestStart[end] < 0 || candidate > bestScore[end]) (bestScore[end], bestStart[end], bestId[end]) = (candidate, start, _unk);
            }
        }

        // Walk back; runs of unknowns fuse into one span.
        var spans = new List<(int Start, int End, int Id)>();
        for (int end = n; end > 0;)
        {
            int start = bestStart[end], id = bestId[end];
            if (id == _unk && spans.Count > 0 && spans[^1].Id == _unk)
                spans[^1] = (start, spans[^1].End, _unk);
            else spans.Add((start, end, id));
            end = start;
        }
        spans.Reverse();
        foreach (var (start, end, id) in spans) Emit(piece.AsSpan(start, end - start), id, ids);
    }

    private void Emit(ReadOnlySpan<char> text, int id, List<int> ids)
    {
        if (id != _unk) { ids.Add(id); return; }
        if (_lookup.TryGetValue(text, out int whole)) { ids.Add(whole); return; }
        if (_byteFallback)
        {
            var bytes = Encoding.UTF8.GetBytes(text.ToArray());
            if (bytes.All(b => _byteIds[b] >= 0)) { foreach (byte b in bytes) ids.Add(_byteIds[b]); return; }
        }
        ids.Add(_unk);
    }
}
