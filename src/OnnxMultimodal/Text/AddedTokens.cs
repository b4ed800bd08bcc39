using System.Text.Json;

namespace OnnxMultimodal.Text;

/// <summary>One entry of tokenizer.json's <c>added_tokens</c>.</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord, bool LStrip, bool RStrip, bool Normalized)
{
    public static AddedToken Read(JsonElement e, TokenizerJsonReader r, string field, int maxVocabulary)
    {
        var id = r.Id(r.Required(e, "id", field), $"{field}.id", maxVocabulary);
        string content = r.String(e, "content", field);
        if (content.Length == 0) throw r.Error($"{field}.content", "empty");
        bool special = r.Bool(e, "special", field, false);
        return new(id, content, special, r.Bool(e, "single_word", field, false), r.Bool(e, "lstrip", field, false),
            r.Bool(e, "rstrip", field, false), r.Bool(e, "normalized", field, !special));
    }
}

/// <summary>
/// Finds added tokens in text the way Hugging Face tokenizers does: leftmost-longest match (a trie walk per start
/// position), <c>single_word</c> tokens only between non-word characters, <c>lstrip</c>/<c>rstrip</c> swallowing the
/// whitespace beside them.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private sealed class Node
    {
        public Dictionary<char, Node>? Children;
        public AddedToken? Token;
    }

    private readonly Node _root = new();
    public bool IsEmpty { get; }

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        foreach (var t in tokens)
        {
            var node = _root;
            foreach (char c in t.Content)
            {
                node.Children ??= [];
                if (!node.Children.TryGetValue(c, out var child)) node.Children[c] = child = new Node();
                node = child;
            }
            node.Token ??= t;
            IsEmpty = false;
        }
        IsEmpty = _root.Children is null;
    }

    /// <summary>Splits <paramref name="text"/> into text runs (Id -1) and added tokens, in order; text runs are
    /// never empty. <paramref name="offset"/> is the position of <paramref name="text"/> in the caller's input.</summary>
    public void Split(string text, int offset, List<(string Text, int Id, int Offset)> output)
    {
        if (IsEmpty) { if (text.Length > 0) output.Add((text, -1, offset)); return; }
        int textStart = 0;
        for (int i = 0; i < text.Length;)
        {
            var (token, end) = LongestAt(text, i);
            if (token is null || (token.SingleWord && !IsWordBoundary(text, i, end))) { i++; continue; }
            int start = i;
            if (token.LStrip) while (start > textStart && char.IsWhiteSpace(text[start - 1])) start--;
            if (token.RStrip) while (end < text.Length && char.IsWhiteSpace(text[end])) end++;
            if (start > textStart) output.Add((text[textStart..start], -1, offset + textStart));
            output.Add((token.Content, token.Id, offset + start));
            textStart = i = end;
        }
        if (textStart < text.Length) output.Add((text[textStart..], -1, offset + textStart));
    }

    private (AddedToken? Token, int End) LongestAt(string text, int start)
    {
        AddedToken? best = null;
        int bestEnd = start;
        var node = _root;
        for (int i = start; i < text.Length; i++)
        {
            if (node.Children is null || !node.Children.TryGetValue(text[i], out node)) break;
            if (node.Token is not null) (best, bestEnd) = (node.Token, i + 1);
        }
        return (best, bestEnd);
    }

    private static bool IsWord(char c) => char.IsLetterOrDigit(c) || c == '_';

    private static bool IsWordBoundary(string text, int start, int end) =>
        (start == 0 || !IsWord(text[start - 1]) || !IsWord(text[start])) && (end == text.Length || !IsWord(text[end]) || !IsWord(text[end - 1]));
}
