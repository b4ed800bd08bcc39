using System.Text;

namespace OnnxMultimodal.Text;

/// <summary>Turns ids into text one at a time, holding back bytes of an unfinished UTF-8 character, for every
/// decoder chain the tokenizer supports (byte-level and byte-fallback tokens alike).</summary>
internal sealed class StreamingTextDecoder
{
    private readonly TextTokenizer _tokenizer;
    private readonly bool _skipSpecial;
    private readonly Decoder _utf8 = new UTF8Encoding(false, false).GetDecoder();
    private char[] _chars = new char[64];
    private bool _first = true;
    private int _toStrip;
    private readonly byte _stripByte;

    internal StreamingTextDecoder(TextTokenizer tokenizer, bool skipSpecial)
    {
        _tokenizer = tokenizer;
        _skipSpecial = skipSpecial;
        (_stripByte, _toStrip) = tokenizer.LeadingStrip;
    }

    /// <summary>Returns the text completed by <paramref name="id"/> (empty while a character is unfinished).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="id"/> is negative.</exception>
    public string Append(int id)
    {
        if (_skipSpecial && _tokenizer.IsSpecial(id)) return "";
        var bytes = _tokenizer.TokenBytes(id, _first);
        _first = false;
        while (_toStrip > 0 && bytes.Length > 0)
        {
            if (bytes[0] != _stripByte) { _toStrip = 0; break; }
            bytes = bytes[1..];
            _toStrip--;
        }
        if (bytes.Length > 0) _toStrip = 0;
        int need = _utf8.GetCharCount(bytes, flush: false);
        if (need > _chars.Length) _chars = new char[Math.Max(need, _chars.Length * 2)];
        int n = _utf8.GetChars(bytes, _chars, flush: false);
        return new string(_chars, 0, n);
    }

    /// <summary>Ends the stream: returns U+FFFD for any unfinished character.</summary>
    public string Flush()
    {
        int n = _utf8.GetChars(ReadOnlySpan<byte>.Empty, _chars, flush: true);
        return new string(_chars, 0, n);
    }
}
