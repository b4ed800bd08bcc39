using System.CommandLine;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Text;

namespace OnnxMultimodal.Cli;

/// <summary><c>omm tokenize</c>: the ids of a text (or the text of ids) under a tokenizer.json, and an encode benchmark.</summary>
internal static class TokenizeCommand
{
    public static Command Create()
    {
        var text = new Argument<string?>("text") { Description = "Text to encode", Arity = ArgumentArity.ZeroOrOne };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "A tokenizer.json (default: the --model package's)" };
        var addSpecial = new Option<bool>("--add-special") { Description = "Add the tokenizer's BOS/EOS (its post-processor or tokenizer_config.json)" };
        var plainSpecial = new Option<bool>("--no-parse-special") { Description = "Treat special-token text such as <|im_start|> as plain text" };
        var decode = new Option<string?>("--decode") { Description = "Print the text of a JSON array of ids, e.g. \"[1, 15043]\"" };
        var bench = new Option<string?>("--bench") { Description = "Encode this UTF-8 file in 16 KiB chunks and print the throughput" };
        var cmd = new Command("tokenize", "Print the token ids of a text as a JSON array, or the text of ids (--decode)")
            { text, tokenizer, addSpecial, plainSpecial, decode, bench, CliCommon.Model };
        cmd.SetAction((r, ct) => CliCommon.Guard(() =>
        {
            string path = r.GetValue(tokenizer) ?? ModelPackage.Open(CliCommon.ModelPath(r)).TokenizerPath;
            var load = Stopwatch.StartNew();
            var tok = TextTokenizer.Load(path);
            load.Stop();
            if (r.GetValue(bench) is { } file) return Task.FromResult(Bench(tok, file, load.Elapsed, r.GetValue(plainSpecial)));
            if (r.GetValue(decode) is { } json)
            {
                Console.WriteLine(tok.Decode(ParseIds(json, tok.VocabularySize)));
                return Task.FromResult(0);
            }
            string input = r.GetValue(text) ?? throw new InvalidInputException("text", "give a text to encode, --decode \"[ids]\" or --bench FILE");
            var ids = tok.Encode(input, addSpecialTokens: r.GetValue(addSpecial), parseSpecialTokens: !r.GetValue(plainSpecial));
            Console.WriteLine($"[{string.Join(",", ids)}]");
            return Task.FromResult(0);
        }));
        return cmd;
    }

    private static int[] ParseIds(string json, int vocabularySize)
    {
        int[]? ids;
        try { ids = JsonSerializer.Deserialize<int[]>(json); }
        catch (JsonException e) { throw new InvalidInputException("--decode", $"not a JSON array of integers ({e.Message})"); }
        if (ids is null) throw new InvalidInputException("--decode", "not a JSON array of integers");
        foreach (int id in ids)
            if (id < 0) throw new InvalidInputException("--decode", $"id {id} is negative (the tokenizer has {vocabularySize} ids)");
        return ids;
    }

    private static int Bench(TextTokenizer tok, string file, TimeSpan load, bool plainSpecial)
    {
        if (!File.Exists(file)) throw new InvalidInputException("--bench", $"{file}: file not found");
        string all = File.ReadAllText(file, Encoding.UTF8);
        var chunks = Chunks(all, 16 << 10);
        long bytes = Encoding.UTF8.GetByteCount(all);
        foreach (var c in chunks.Take(8)) tok.Encode(c, parseSpecialTokens: !plainSpecial);     // warm-up (JIT, regex)
        var times = new List<double>();
        long tokens = 0;
        for (int round = 0; round < 3; round++)
        {
            var sw = Stopwatch.StartNew();
            tokens = 0;
            foreach (var c in chunks) tokens += tok.Encode(c, parseSpecialTokens: !plainSpecial).Count;
            times.Add(sw.Elapsed.TotalSeconds);
        }
        double best = times.Min();
        Console.WriteLine($"load {load.TotalSeconds:F2} s; {bytes / 1e6:F2} MB in {chunks.Count} chunks -> {tokens} tokens; " +
                          $"best of 3: {best:F3} s, {bytes / 1e6 / best:F2} MB/s, {tokens / best / 1e6:F2} M tokens/s (one thread)");
        return 0;
    }

    /// <summary>Splits at line ends near <paramref name="size"/> characters (the same rule as tools/tokenizer_refs/bench.mjs).</summary>
    internal static List<string> Chunks(string text, int size)
    {
        var chunks = new List<string>();
        for (int start = 0; start < text.Length;)
        {
            int end = Math.Min(text.Length, start + size);
            if (end < text.Length) { int nl = text.IndexOf('\n', end); end = nl < 0 ? text.Length : nl + 1; }
            chunks.Add(text[start..end]);
            start = end;
        }
        return chunks;
    }
}
