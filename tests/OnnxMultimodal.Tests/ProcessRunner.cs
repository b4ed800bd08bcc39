using System.Diagnostics;

namespace OnnxMultimodal.Tests;

/// <summary>Runs a built app of the repository (the CLI, a sample) as a separate process, stdin closed and
/// stdout/stderr piped, as a user's script would.</summary>
internal static class ProcessRunner
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    /// <summary>The build configuration of this test run (Debug or Release), read from the test assembly's folder.</summary>
    private static string Configuration => new DirectoryInfo(Path.TrimEndingDirectorySeparator(AppContext.BaseDirectory)).Parent!.Name;

    /// <summary>The built dll of a project under the repository (e.g. "src/OnnxMultimodal.Cli", "omm").</summary>
    public static string Built(string project, string assembly) =>
        Path.Combine(TestData.RepoRoot, project, "bin", Configuration, "net10.0", assembly + ".dll");

    public static Result Omm(params string[] args) => Dotnet(Built("src/OnnxMultimodal.Cli", "omm"), args);

    public static Result Dotnet(string dll, string[] args, string? workingDirectory = null, IDictionary<string, string?>? env = null, int timeoutSeconds = 180)
    {
        Assert.That(File.Exists(dll), $"{dll} is not built (the test project builds it first)");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
                                                   WorkingDirectory = workingDirectory ?? TestData.RepoRoot };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env ?? new Dictionary<string, string?>()) psi.Environment[k] = v;
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(timeoutSeconds)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{Path.GetFileName(dll)} {string.Join(' ', args)} did not finish in {timeoutSeconds} s");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }
}
