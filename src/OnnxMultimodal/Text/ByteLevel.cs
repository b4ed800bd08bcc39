using System.Text;

namespace OnnxMultimodal.Text;

/// <summary>GPT-2's reversible byte &lt;-&gt; printable-character table used by byte-level BPE.</summary>
internal static class ByteLevel
{
    private static readonly char[] ByteToChar = new char[256];
    public static readonly IReadOnlyDictionary<char, byte> UnicodeToByte = Build();

    private static Dictionary<char, byte> Build()
    {
        var map = new Dictionary<char, byte>();
        int extra = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            char c = (char)(printable ? b : 256 + extra++);
            map[c] = (byte)b;
            ByteToChar[b] = c;
        }
        return map;
    }

    /// <summary>The UTF-8 bytes of <paramref name="text"/>, each as its table character.</summary>
    public static string ToChars(string text)
    {
        int n = Encoding.UTF8.GetByteCount(text);
        Span<byte> bytes = n <= 1024 ? stackalloc byte[n] : new byte[n];
        Encoding.UTF8.GetBytes(text, bytes);
        return string.Create(n, bytes.ToArray(), static (span, b) => { for (int i = 0; i < b.Length; i++) span[i] = ByteToChar[b[i]]; });
    }

    /// <summary>The bytes a byte-level token stands for; a token with a character outside the table keeps its
    /// UTF-8 text (added tokens are written as plain text).</summary>
    public static byte[] ToBytes(string token)
    {
        var result = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!UnicodeToByte.TryGetValue(token[i], out result[i]))
                return Encoding.UTF8.GetBytes(token);
        }
        return result;
    }
}
