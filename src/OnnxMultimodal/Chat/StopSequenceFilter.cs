using System.Text;

namespace OnnxMultimodal.Chat;

/// <summary>
/// Applies text stop sequences to a stream of text deltas: text that might be the start of a stop sequence is
/// held back until it is known not to be; at the first complete stop sequence the text before it is released
/// and the stream ends (the stop sequence itself is not returned, as OpenAI-style APIs do).
/// </summary>
internal sealed class StopSequenceFilter(IEnumerable<string>? stops)
{
    private readonly string[] _stops = stops?.Where(s => !string.IsNullOrEmpty(s)).ToArray() ?? [];
    private readonly StringBuilder _pending = new();

    public bool Active => _stops.Length > 0;

    /// <summary>Adds a delta; returns the text that can be released and whether a stop sequence was reached.</summary>
    public (string Emit, bool Stopped) Append(string delta)
    {
        if (_stops.Length == 0) return (delta, false);
        _pending.Append(delta);
        string text = _pending.ToString();
        int first = -1;
        foreach (var s in _stops)
        {
            int at = text.IndexOf(s, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first)) first = at;
        }
        if (first >= 0)
        {
            _pending.Clear();
            return (text[..first], true);
        }
        int hold = 0;
        foreach (var s in _stops)
            for (int k = Math.Min(s.Length - 1, text.Length); k > hold; k--)
                if (text.AsSpan(text.Length - k).SequenceEqual(s.AsSpan(0, k))) { hold = k; break; }
        _pending.Clear().Append(text, text.Length - hold, hold);
        return (text[..^hold], false);
    }

    /// <summary>The text still held back (the stream ended without a stop sequence).</summary>
    public string Flush()
    {
        string rest = _pending.ToString();
        _pending.Clear();
        return rest;
    }
}
