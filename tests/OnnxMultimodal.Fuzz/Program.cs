using System.Security.Cryptography;
using OnnxMultimodal.Fuzz;

// omm-fuzz TARGET                         AFL++ (SharpFuzz out-of-process; instrument OnnxMultimodal.dll first)
// omm-fuzz TARGET --libfuzzer             libfuzzer-dotnet
// omm-fuzz TARGET --mutate SECONDS [--seed N] [--corpus DIR] [--crashes DIR]   built-in seeded mutator
// omm-fuzz TARGET --repro FILE...         run files once, print what escapes
// omm-fuzz --seed-corpus DIR              (re)write the committed seed inputs
if (args.Length >= 2 && args[0] == "--seed-corpus")
{
    SeedCorpus.Write(args[1]);
    return 0;
}
if (args.Length == 0 || !FuzzTargets.All.ContainsKey(args[0]))
{
    Console.Error.WriteLine($"usage: omm-fuzz TARGET [--libfuzzer | --mutate SECONDS [--seed N] [--corpus DIR] [--crashes DIR] | --repro FILE...]; targets: {string.Join(", ", FuzzTargets.All.Keys)}");
    return 2;
}
string target = args[0];
string? Option(string name) => Array.IndexOf(args, name) is int i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;

if (args.Contains("--libfuzzer"))
{
    SharpFuzz.Fuzzer.LibFuzzer.Run(span => FuzzTargets.Run(target, span.ToArray()));
    return 0;
}
if (Option("--repro") is not null)
{
    int bad = 0;
    foreach (var file in args.SkipWhile(a => a != "--repro").Skip(1))
    {
        try
        {
            Console.WriteLine($"{file}: {(FuzzTargets.Run(target, File.ReadAllBytes(file)) ? "refused (library error)" : "accepted")}");
        }
        catch (Exception e)
        {
            bad++;
            Console.WriteLine($"{file}: CRASH {e}");
        }
    }
    return bad == 0 ? 0 : 1;
}
if (Option("--mutate") is { } seconds)
{
    string corpusDir = Option("--corpus") ?? Path.Combine(AppContext.BaseDirectory, "corpus", target);
    string crashDir = Option("--crashes") ?? Path.Combine("fuzz-crashes", target);
    int seed = int.Parse(Option("--seed") ?? "1");
    var stats = FuzzLoop.Run(target, FuzzLoop.ReadCorpus(corpusDir), seed, long.MaxValue, TimeSpan.FromSeconds(double.Parse(seconds)), 1000, crash =>
    {
        Directory.CreateDirectory(crashDir);
        string name = Path.Combine(crashDir, "crash-" + Convert.ToHexString(SHA1.HashData(crash.Input))[..16].ToLowerInvariant());
        File.WriteAllBytes(name, crash.Input);
        Console.WriteLine($"CRASH {crash.Key} -> {name}");
    });
    Console.WriteLine(stats);
    return stats.Crashes.Count == 0 ? 0 : 1;
}
// AFL++: SharpFuzz forks nothing; the instrumented library reports coverage through shared memory.
SharpFuzz.Fuzzer.OutOfProcess.Run(stream =>
{
    using var ms = new MemoryStream();
    stream.CopyTo(ms);
    FuzzTargets.Run(target, ms.ToArray());
});
return 0;
