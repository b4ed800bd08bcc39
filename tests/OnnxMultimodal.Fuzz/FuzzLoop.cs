using System.Diagnostics;

namespace OnnxMultimodal.Fuzz;

/// <summary>One finding: the input and what escaped.</summary>
public sealed record FuzzCrash(byte[] Input, Exception Error)
{
    /// <summary>Exception type and the first frame of ours (or the first frame): findings with the same key are one bug.</summary>
    public string Key
    {
        get
        {
            var frames = new StackTrace(Error, false).GetFrames();
            var frame = frames.FirstOrDefault(f => f.GetMethod()?.DeclaringType?.Namespace?.StartsWith("OnnxMultimodal") == true) ?? frames.FirstOrDefault();
            var m = frame?.GetMethod();
            return $"{Error.GetType().Name} at {m?.DeclaringType?.Name}.{m?.Name}";
        }
    }
}

/// <summary>What a run did.</summary>
public sealed record FuzzStats(string Target, long Executions, long Refused, TimeSpan Elapsed, long PeakWorkingSet, IReadOnlyList<FuzzCrash> Crashes)
{
    public override string ToString() =>
        $"{Target}: {Executions:N0} execs in {Elapsed.TotalSeconds:F1} s ({Executions / Math.Max(Elapsed.TotalSeconds, 1e-3):N0}/s), " +
        $"{Refused:N0} refused with a library error, {Crashes.Count} crashes ({Crashes.Select(c => c.Key).Distinct().Count()} distinct), " +
        $"peak working set {PeakWorkingSet / 1e6:N0} MB";
}

/// <summary>
/// The built-in fuzz loop: every corpus input once, then seeded mutations of them until the execution
/// count or the time runs out. Coverage-guided runs use AFL++ or libFuzzer instead (tools/fuzz.sh).
/// </summary>
public static class FuzzLoop
{
    /// <summary>The inputs of a corpus folder (every file, sorted by name, so the order is stable).</summary>
    public static List<byte[]> ReadCorpus(string directory) =>
        System.IO.Directory.EnumerateFiles(directory).Order(StringComparer.Ordinal).Select(File.ReadAllBytes).ToList();

    public static FuzzStats Run(string target, IReadOnlyList<byte[]> corpus, int seed, long maxExecutions, TimeSpan maxTime,
                                int maxCrashes = 20, Action<FuzzCrash>? onCrash = null, bool structured = true) =>
        Run(target, input => FuzzTargets.Run(target, input), corpus, seed, maxExecutions, maxTime, maxCrashes, onCrash, structured);

    /// <summary>The loop over any target: <paramref name="run"/> returns true for a refusal and throws for a finding.</summary>
    public static FuzzStats Run(string target, Func<byte[], bool> run, IReadOnlyList<byte[]> corpus, int seed, long maxExecutions,
                                TimeSpan maxTime, int maxCrashes = 20, Action<FuzzCrash>? onCrash = null, bool structured = true)
    {
        if (corpus.Count == 0) throw new ArgumentException("empty corpus", nameof(corpus));
        var clock = Stopwatch.StartNew();
        var mutator = new Mutator(seed, structured: structured);
        var pick = new Random(seed ^ 0x5EED);
        var crashes = new List<FuzzCrash>();
        long executions = 0, refused = 0, peak = Environment.WorkingSet;
        void One(byte[] input)
        {
            try
            {
                if (run(input)) refused++;
            }
            catch (Exception e)
            {
                var crash = new FuzzCrash(input, e);
                crashes.Add(crash);
                onCrash?.Invoke(crash);
            }
            executions++;
            if ((executions & 15) == 0) peak = Math.Max(peak, Environment.WorkingSet);
        }
        foreach (var input in corpus) One(input);
        while (executions < maxExecutions && clock.Elapsed < maxTime && crashes.Count < maxCrashes)
            One(mutator.Mutate(corpus[pick.Next(corpus.Count)], corpus[pick.Next(corpus.Count)]));
        peak = Math.Max(peak, Environment.WorkingSet);
        return new FuzzStats(target, executions, refused, clock.Elapsed, peak, crashes);
    }
}
