using OnnxMultimodal.Fuzz;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The fuzz targets of tests/OnnxMultimodal.Fuzz, briefly, in CI: every committed corpus input (seeds and
/// crash reproducers) once, then seeded mutations for a bounded count and time. Only library errors
/// (<see cref="OnnxMultimodalException"/>) may leave a target, and the process's working set stays
/// bounded. A failure names the seed and writes the input to the test's output folder; replay it with
/// `omm-fuzz TARGET --repro FILE`. Longer, coverage-guided runs: tools/fuzz.sh.
/// </summary>
[Category("Fuzz")]
public class FuzzTests
{
    private static string Corpus(string target) => Path.Combine(TestData.RepoRoot, "tests", "OnnxMultimodal.Fuzz", "corpus", target);

    // Executions per target: about 2-4 s each on a 2-core CI machine (the file-based targets write a file per input).
    private static readonly Dictionary<string, int> Budget = new()
    {
        ["image"] = 400, ["wave"] = 2000, ["onnx-header"] = 400, ["manifest"] = 150, ["tokenizer"] = 300, ["options"] = 20000,
    };

    private static IEnumerable<string> Targets() => FuzzTargets.All.Keys;

    // Targets whose structure-aware mutations (JSON values set to null, negative or huge) still crash
    // code owned by other work (issue 13 findings 6 and 7: ModelPackage.Open, TextTokenizer.Load); their
    // reproducers are in corpus/TARGET/open (Open_findings_are_fixed). Until those fixes land these
    // targets run byte-level mutations only; afterwards empty this set.
    private static readonly HashSet<string> OpenStructuredFindings = ["manifest", "tokenizer"];

    [TestCaseSource(nameof(Targets))]
    public void Only_library_errors_escape_and_memory_stays_bounded(string target)
    {
        var corpus = FuzzLoop.ReadCorpus(Corpus(target));
        Assert.That(corpus, Is.Not.Empty, "a committed corpus");
        const int seed = 20261127;
        long before = Environment.WorkingSet;
        var stats = FuzzLoop.Run(target, corpus, seed, corpus.Count + Budget[target], TimeSpan.FromSeconds(8), maxCrashes: 5,
                                 structured: !OpenStructuredFindings.Contains(target));
        TestContext.Out.WriteLine(stats);
        foreach (var crash in stats.Crashes)
        {
            string file = Path.Combine(TestContext.CurrentContext.WorkDirectory, $"fuzz-{target}-{Convert.ToHexString(System.Security.Cryptography.SHA1.HashData(crash.Input))[..12]}");
            File.WriteAllBytes(file, crash.Input);
            TestContext.Out.WriteLine($"{crash.Key}: {file}\n{crash.Error}");
        }
        Assert.That(stats.Crashes.Select(c => c.Key).Distinct(), Is.Empty, $"non-library exceptions (seed {seed}; inputs written beside the test output)");
        Assert.That(stats.Executions, Is.GreaterThanOrEqualTo(corpus.Count), "every corpus input ran");
        // The largest thing a target may legitimately hold is one image within ImageLoader's decode budget (656 MiB).
        Assert.That(stats.PeakWorkingSet - before, Is.LessThan(1L << 30), "working set growth during the run");
    }

    [Test]
    public void The_mutator_is_deterministic_and_mutates()
    {
        var seedInput = File.ReadAllBytes(Path.Combine(Corpus("wave"), "pcm16-16k.wav"));
        var a = new Mutator(5);
        var b = new Mutator(5);
        int changed = 0;
        for (int i = 0; i < 50; i++)
        {
            var x = a.Mutate(seedInput, seedInput);
            Assert.That(b.Mutate(seedInput, seedInput), Is.EqualTo(x), "same seed, same inputs");
            if (!x.AsSpan().SequenceEqual(seedInput)) changed++;
        }
        Assert.That(changed, Is.GreaterThan(45));
    }

    [Test]
    public void A_finding_is_recorded_and_library_errors_are_not()
    {
        // The loop must be able to fail: a target that throws a non-library exception on some mutations.
        var seedInput = new byte[] { 1, 2, 3, 4, 5, 6, 7, 8 };
        var stats = FuzzLoop.Run("probe", input => input.Length < 8 ? throw new IndexOutOfRangeException("short") : true,
                                 [seedInput], 3, 200, TimeSpan.FromSeconds(5));
        Assert.That(stats.Crashes, Is.Not.Empty, "shortened inputs are findings");
        Assert.That(stats.Crashes.All(c => c.Input.Length < 8 && c.Error is IndexOutOfRangeException));
        Assert.That(stats.Refused + stats.Crashes.Count, Is.EqualTo(stats.Executions));
        Assert.Throws<KeyNotFoundException>(() => FuzzTargets.Run("no-such-target", []));
    }

    /// <summary>Reproducers of findings in code other engineers own, not fixed here: corpus/TARGET/open/*.
    /// Move a file up into corpus/TARGET once its fix lands, so the CI pass above replays it.</summary>
    [Test, Explicit("open findings owned elsewhere")]
    public void Open_findings_are_fixed()
    {
        var root = Path.Combine(TestData.RepoRoot, "tests", "OnnxMultimodal.Fuzz", "corpus");
        var failures = new List<string>();
        foreach (var target in FuzzTargets.All.Keys)
        {
            string open = Path.Combine(root, target, "open");
            if (!Directory.Exists(open)) continue;
            foreach (var file in Directory.EnumerateFiles(open))
                try { FuzzTargets.Run(target, File.ReadAllBytes(file)); }
                catch (Exception e) { failures.Add($"{target}/{Path.GetFileName(file)}: {e.GetType().Name}: {e.Message}"); }
        }
        Assert.That(failures, Is.Empty);
    }
}
