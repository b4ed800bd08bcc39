using System.Text;

namespace OnnxMultimodal.Text;

/// <summary>Kinds of token inside a template tag.</summary>
internal enum TokenKind { Name, String, Integer, Float, Operator, End }

/// <summary>One token inside a <c>{{ }}</c> or <c>{% %}</c> tag, with its line for error messages.</summary>
internal readonly record struct TemplateToken(TokenKind Kind, string Text, int Line);

/// <summary>A piece of template source: literal text, an output tag or a statement tag.</summary>
internal abstract record Segment(int Line);
internal sealed record TextSegment(string Text, int Line) : Segment(Line);
internal sealed record OutputSegment(List<TemplateToken> Tokens, int Line) : Segment(Line);
internal sealed record StatementSegment(List<TemplateToken> Tokens, int Line) : Segment(Line);

/// <summary>
/// Splits a Jinja template into text and tags, applying the whitespace rules Hugging Face renders chat
/// templates with: <c>trim_blocks</c> (the newline after a block or comment tag is dropped),
/// <c>lstrip_blocks</c> (spaces and tabs before a block tag on its own line are dropped) and the
/// <c>-</c> markers (all whitespace on that side is dropped).
/// </summary>
internal static class ChatTemplateLexer
{
    private static readonly string[] Operators =
        ["==", "!=", "<=", ">=", "//", "**", "+", "-", "*", "/", "%", "~", "<", ">", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", "="];

    public static List<Segment> Split(string source)
    {
        var segments = new List<Segment>();
        var text = new StringBuilder();
        int line = 1, i = 0, textLine = 1;
        bool trimNextNewline = false, stripNextWhitespace = false;
        while (i < source.Length)
        {
            int open = source.IndexOf('{', i);
            while (open >= 0 && open + 1 < source.Length && source[open + 1] is not ('{' or '%' or '#'))
                open = source.IndexOf('{', open + 1);
            if (open < 0 || open + 1 >= source.Length) open = source.Length;
            int start = i;
            if (stripNextWhitespace) while (start < open && char.IsWhiteSpace(source[start])) start++;
            else if (trimNextNewline && start < open && source[start] == '\n') start++;
            else if (trimNextNewline && start + 1 < open && source[start] == '\r' && source[start + 1] == '\n') start += 2;
            int chunkStart = text.Length;
            bool chunkAtLineStart = start == 0 || source[start - 1] == '\n';
            text.Append(source, start, open - start);
            line += Count(source, i, open);
            i = open;
            if (i >= source.Length) break;

            char kind = source[i + 1];
            int tagLine = line;
            i += 2;
            bool stripBefore = i < source.Length && source[i] == '-';
            bool keepIndent = i < source.Length && source[i] == '+';
            if (stripBefore || keepIndent) i++;
            if (stripBefore) TrimEnd(text);
            else if (kind != '{' && !keepIndent) LstripBlock(text, chunkStart, chunkAtLineStart);

            if (kind == '#')
            {
                int close = source.IndexOf("#}", i, StringComparison.Ordinal);
                if (close < 0) throw new TemplateSyntaxException("unclosed comment", tagLine);
                bool stripAfterComment = close > i && source[close - 1] == '-';
                line += Count(source, i, close + 2);
                i = close + 2;
                stripNextWhitespace = stripAfterComment;
                trimNextNewline = true;
                continue;
            }
            Flush(segments, text, textLine);
            var tokens = new List<TemplateToken>();
            bool stripAfter = LexTag(source, ref i, ref line, kind == '{' ? "}}" : "%}", tokens);
            textLine = line;
            if (kind == '%' && tokens.Count > 0 && tokens[0] is { Kind: TokenKind.Name, Text: "raw" })
            {
                int end = FindEndRaw(source, i, out int after, out bool stripInside, out bool stripAfterRaw);
                string raw = source[i..end];
                if (stripAfter) raw = raw.TrimStart();
                if (stripInside) raw = raw.TrimEnd();
                segments.Add(new TextSegment(raw, line));
                line += Count(source, i, after);
                i = after;
                textLine = line;
                stripNextWhitespace = stripAfterRaw;
                trimNextNewline = true;
                continue;
            }
            segments.Add(kind == '{' ? new OutputSegment(tokens, tagLine) : new StatementSegment(tokens, tagLine));
            stripNextWhitespace = stripAfter;
            trimNextNewline = kind == '%';
        }
        Flush(segments, text, textLine);
        return segments;
    }

    private static int FindEndRaw(string source, int from, out int after, out bool stripInside, out bool stripAfter)
    {
        int at = from;
        while (true)
        {
            int open = source.IndexOf("{%", at, StringComparison.Ordinal);
            if (open < 0) throw new TemplateSyntaxException("{% raw %} without {% endraw %}", 0);
            int j = open + 2;
            stripInside = j < source.Length && source[j] == '-';
            if (stripInside) j++;
            while (j < source.Length && char.IsWhiteSpace(source[j])) j++;
            if (string.CompareOrdinal(source, j, "endraw", 0, 6) == 0)
            {
                j += 6;
                while (j < source.Length && char.IsWhiteSpace(source[j])) j++;
                stripAfter = j < source.Length && source[j] == '-';
                if (stripAfter) j++;
                if (string.CompareOrdinal(source, j, "%}", 0, 2) == 0)
                {
                    after = j + 2;
                    return open;
                }
            }
            at = open + 2;
        }
    }

    private static void Flush(List<Segment> segments, StringBuilder text, int line)
    {
        if (text.Length > 0) segments.Add(new TextSegment(text.ToString(), line));
        text.Clear();
    }

    private static int Count(string s, int from, int to)
    {
        int n = 0;
        for (int k = from; k < to && k < s.Length; k++) if (s[k] == '\n') n++;
        return n;
    }

    private static void TrimEnd(StringBuilder text)
    {
        int n = text.Length;
        while (n > 0 && char.IsWhiteSpace(text[n - 1])) n--;
        text.Length = n;
    }

    /// <summary>lstrip_blocks: drop spaces and tabs between the start of the line and the tag (only where the
    /// text since the previous tag reaches back to a line start).</summary>
    private static void LstripBlock(StringBuilder text, int chunkStart, bool chunkAtLineStart)
    {
        int n = text.Length;
        while (n > chunkStart && text[n - 1] is ' ' or '\t') n--;
        if ((n > chunkStart && text[n - 1] == '\n') || (n == chunkStart && chunkAtLineStart)) text.Length = n;
    }

    /// <summary>Reads tokens up to the closing delimiter; returns whether it carried a <c>-</c>.</summary>
    private static bool LexTag(string s, ref int i, ref int line, string close, List<TemplateToken> tokens)
    {
        int depth = 0;   // braces opened inside an output tag (dict literals)
        while (true)
        {
            while (i < s.Length && char.IsWhiteSpace(s[i])) { if (s[i] == '\n') line++; i++; }
            if (i >= s.Length) throw new TemplateSyntaxException($"tag not closed with '{close}'", line);
            if (depth == 0)
            {
                if (s[i] == '-' && string.CompareOrdinal(s, i + 1, close, 0, 2) == 0) { i += 3; return true; }
                if (s[i] == '+' && string.CompareOrdinal(s, i + 1, close, 0, 2) == 0) { i += 3; return false; }
                if (string.CompareOrdinal(s, i, close, 0, 2) == 0) { i += 2; return false; }
            }
            char c = s[i];
            if (c is '\'' or '"')
            {
                tokens.Add(new TemplateToken(TokenKind.String, ReadString(s, ref i, ref line), line));
            }
            else if (char.IsDigit(c))
            {
                int start = i;
                while (i < s.Length && (char.IsDigit(s[i]) || s[i] == '_')) i++;
                bool isFloat = i + 1 < s.Length && s[i] == '.' && char.IsDigit(s[i + 1]);
                if (isFloat) { i++; while (i < s.Length && char.IsDigit(s[i])) i++; }
                if (i < s.Length && s[i] is 'e' or 'E') { isFloat = true; i++; if (i < s.Length && s[i] is '+' or '-') i++; while (i < s.Length && char.IsDigit(s[i])) i++; }
                tokens.Add(new TemplateToken(isFloat ? TokenKind.Float : TokenKind.Integer, s[start..i].Replace("_", ""), line));
            }
            else if (char.IsLetter(c) || c == '_')
            {
                int start = i;
                while (i < s.Length && (char.IsLetterOrDigit(s[i]) || s[i] == '_')) i++;
                tokens.Add(new TemplateToken(TokenKind.Name, s[start..i], line));
            }
            else
            {
                string? op = null;
                foreach (var o in Operators)
                    if (string.CompareOrdinal(s, i, o, 0, o.Length) == 0) { op = o; break; }
                if (op is null) throw new TemplateSyntaxException($"unexpected character '{c}'", line);
                if (op == "{") depth++;
                else if (op == "}") depth--;
                tokens.Add(new TemplateToken(TokenKind.Operator, op, line));
                i += op.Length;
            }
        }
    }

    private static string ReadString(string s, ref int i, ref int line)
    {
        char quote = s[i++];
        var sb = new StringBuilder();
        while (true)
        {
            if (i >= s.Length) throw new TemplateSyntaxException("unterminated string literal", line);
            char c = s[i++];
            if (c == quote) return sb.ToString();
            if (c == '\n') line++;
            if (c != '\\' || i >= s.Length) { sb.Append(c); continue; }
            char e = s[i++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case '0': sb.Append('\0'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'u' when i + 4 <= s.Length && int.TryParse(s.AsSpan(i, 4), System.Globalization.NumberStyles.HexNumber, null, out int u):
                    sb.Append((char)u); i += 4; break;
                case 'x' when i + 2 <= s.Length && int.TryParse(s.AsSpan(i, 2), System.Globalization.NumberStyles.HexNumber, null, out int x):
                    sb.Append((char)x); i += 2; break;
                default: sb.Append('\\').Append(e); break;   // Python keeps unknown escapes as written
            }
        }
    }
}

/// <summary>A template cannot be parsed or rendered; the loader wraps it with the file it came from.</summary>
internal sealed class TemplateSyntaxException(string problem, int line) : Exception(line > 0 ? $"{problem} (template line {line})" : problem)
{
    public int Line { get; } = line;
}
