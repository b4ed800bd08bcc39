using static OnnxMultimodal.Tests.ProcessRunner;

namespace OnnxMultimodal.Tests;

/// <summary>The samples find their model explicitly (argument, OMM_MODELS, or models/ next to the app), fail with
/// one clean line when there is none, and write nothing into the folder they are started from.</summary>
[Category("Cli")]
public class SampleTests
{
    [Test]
    public void WithoutAModelASampleSaysWhereItLookedInOneLine()
    {
        string cwd = Directory.CreateTempSubdirectory("omm-sample-").FullName;
        try
        {
            var r = Dotnet(Built("samples/Caption", "Caption"), [], cwd, new Dictionary<string, string?> { ["OMM_MODELS"] = null });
            Assert.That(r.ExitCode, Is.EqualTo(2), r.Stderr);
            Assert.That(r.Stderr.TrimEnd().Split('\n'), Has.Length.EqualTo(1));
            Assert.That(r.Stderr, Does.StartWith("error: no model at").And.Contain("OMM_MODELS").And.Not.Contain("Exception"));
        }
        finally { Directory.Delete(cwd, true); }
    }

    [Test]
    public void WithOmmModelsTheSamplesRunFromAnyFolderAndWriteNothingThere()
    {
        string cwd = Directory.CreateTempSubdirectory("omm-sample-").FullName;
        var env = new Dictionary<string, string?> { ["OMM_MODELS"] = Path.Combine(TestData.RepoRoot, "models") };
        try
        {
            var caption = Dotnet(Built("samples/Caption", "Caption"), [], cwd, env);
            Assert.That(caption.ExitCode, Is.Zero, caption.Stderr);
            Assert.That(caption.Stdout, Does.Contain("A photo of ->"));

            var imagine = Dotnet(Built("samples/Imagine", "Imagine"), [], cwd, env);
            Assert.That(imagine.ExitCode, Is.Zero, imagine.Stderr);
            Assert.That(Directory.EnumerateFileSystemEntries(cwd), Is.Empty, "the sample writes its image next to itself, not into the current folder");
            string written = Path.Combine(Path.GetDirectoryName(Built("samples/Imagine", "Imagine"))!, "imagine.png");
            Assert.That(File.ReadAllBytes(written).Take(4), Is.EqualTo(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }));
        }
        finally { Directory.Delete(cwd, true); }
    }
}
