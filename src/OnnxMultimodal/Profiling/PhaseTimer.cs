using System.Diagnostics;

namespace OnnxMultimodal.Profiling;

/// <summary>Wall time per phase of one request (preprocess, encode, prefill, first token, decode, detokenize), in ms.</summary>
internal sealed class PhaseTimer
{
    private readonly Dictionary<string, double> _ms = new();

    public IReadOnlyDictionary<string, double> Milliseconds => _ms;

    /// <summary>Times the enclosed block and adds it to <paramref name="phase"/>.</summary>
    public Scope Measure(string phase) => new(this, phase);

    public void Add(string phase, double ms) => _ms[phase] = _ms.GetValueOrDefault(phase) + ms;

    public readonly struct Scope(PhaseTimer timer, string phase) : IDisposable
    {
        private readonly long _start = Stopwatch.GetTimestamp();

        public void Dispose() => timer.Add(phase, Stopwatch.GetElapsedTime(_start).TotalMilliseconds);
    }
}
