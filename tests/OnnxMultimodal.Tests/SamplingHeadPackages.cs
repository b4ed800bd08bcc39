using System.Diagnostics;

namespace OnnxMultimodal.Tests;

/// <summary>
/// Packages with the sampling head that are not committed (the size budget holds one, tiny-llama-fused-sample):
/// converted on demand from a committed reference package with <c>python3 -m omm_export convert --graph fused
/// --device-sampling</c> into a temporary folder. Needs a python3 with the onnx package (tried: python3, then
/// /usr/bin/python3); the calling test is skipped, with the reason, without one.
/// </summary>
internal static class SamplingHeadPackages
{
    /// <summary>The first of python3, /usr/bin/python3 that imports onnx (the calling test is skipped without one).</summary>
    public static string PythonWithOnnx()
    {
        foreach (string python in new[] { "python3", "/usr/bin/python3" })
        {
            try
            {
                using var process = Process.Start(new ProcessStartInfo(python, ["-c", "import onnx"]) { RedirectStandardError = true, RedirectStandardOutput = true })!;
                process.StandardError.ReadToEnd();
                if (process.WaitForExit(60_000) && process.ExitCode == 0) return python;
            }
            catch (System.ComponentModel.Win32Exception)
            {
            }
        }
        Assert.Ignore("no python3 with the onnx package here");
        return "";
    }

    /// <summary>models/<paramref name="source"/> (or the folder <paramref name="source"/>, given as a rooted path) converted at <paramref name="precision"/> into <paramref name="folder"/>/<paramref name="name"/>
    /// (<paramref name="extra"/>: more convert options, e.g. <c>--sampling-op omm</c>).</summary>
    public static string Convert(string source, string precision, string folder, string name, params string[] extra)
    {
        string output = Path.Combine(folder, name);
        string from = Path.IsPathRooted(source) ? source : TestData.Model(source);
        var failures = new List<string>();
        foreach (string python in new[] { "python3", "/usr/bin/python3" })
        {
            string? failure = Exporter(python, ["convert", "--from", from, "--out", output, "--graph", "fused", "--precision", precision,
                                                "--device-sampling", .. extra], 120);
            if (failure is null) return output;
            failures.Add(failure);
        }
        Assert.Ignore($"cannot convert {source} with --device-sampling here ({string.Join("; ", failures)})");
        return output;
    }

    /// <summary>Runs <c><paramref name="python"/> -m omm_export <paramref name="args"/></c> in onnx-export/: null when it
    /// succeeds, else why not (the last line of its errors, a timeout, or no such interpreter).</summary>
    public static string? Exporter(string python, string[] args, int timeoutSeconds)
    {
        var start = new ProcessStartInfo(python, ["-m", "omm_export", .. args])
        {
            WorkingDirectory = Path.Combine(TestData.RepoRoot, "onnx-export"),
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        try
        {
            using var process = Process.Start(start)!;
            var error = process.StandardError.ReadToEndAsync();
            var stdout = process.StandardOutput.ReadToEndAsync();   // both drained, so neither pipe fills
            if (!process.WaitForExit(timeoutSeconds * 1000))
            {
                process.Kill();
                return $"{python}: over {timeoutSeconds} s";
            }
            return process.ExitCode == 0 ? null : $"{python}: {error.Result.Trim().Split('\n').LastOrDefault()}";
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return $"{python}: {e.Message}";
        }
    }
}
