using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace OnnxMultimodal.Tests;

/// <summary>The C# shown to users compiles, verbatim: every ```csharp block of README.md, and the first one of
/// docs/package-README.md (the one tools/pack-smoke.sh also runs), each as a console program with the SDK's
/// implicit usings, against the library and everything this test references.</summary>
public class ReadmeSnippetTests
{
    private static readonly string[] ImplicitUsings =
        ["System", "System.Collections.Generic", "System.IO", "System.Linq", "System.Net.Http", "System.Threading", "System.Threading.Tasks"];

    internal static IReadOnlyList<string> CSharpBlocks(string markdownFile) =>
        Regex.Matches(File.ReadAllText(markdownFile).ReplaceLineEndings("\n"), @"^```csharp\n(.*?)^```", RegexOptions.Multiline | RegexOptions.Singleline)
             .Select(m => m.Groups[1].Value).ToList();

    private static IEnumerable<TestCaseData> Snippets()
    {
        var readme = CSharpBlocks(Path.Combine(TestData.RepoRoot, "README.md"));
        for (int i = 0; i < readme.Count; i++) yield return new TestCaseData(readme[i]).SetName($"README.md block {i + 1} compiles");
        yield return new TestCaseData(CSharpBlocks(Path.Combine(TestData.RepoRoot, "docs", "package-README.md"))[0]).SetName("package README block 1 compiles");
    }

    [Test]
    public void ReadmeHasASnippet() => Assert.That(CSharpBlocks(Path.Combine(TestData.RepoRoot, "README.md")), Is.Not.Empty);

    [TestCaseSource(nameof(Snippets))]
    public void SnippetCompiles(string code)
    {
        var trees = new[]
        {
            CSharpSyntaxTree.ParseText(string.Concat(ImplicitUsings.Select(u => $"global using global::{u};\n"))),
            CSharpSyntaxTree.ParseText(code, new CSharpParseOptions(LanguageVersion.Latest)),
        };
        string tpa = (string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!;
        var references = tpa.Split(Path.PathSeparator)
            .Concat(Directory.EnumerateFiles(AppContext.BaseDirectory, "*.dll"))
            .GroupBy(Path.GetFileName).Select(g => g.First())
            .Where(IsManagedAssembly)
            .Select(p => MetadataReference.CreateFromFile(p));
        var compilation = CSharpCompilation.Create("Snippet", trees, references,
            new CSharpCompilationOptions(OutputKind.ConsoleApplication, nullableContextOptions: NullableContextOptions.Enable));
        using var pe = new MemoryStream();
        var result = compilation.Emit(pe);
        var errors = result.Diagnostics.Where(d => d.Severity == DiagnosticSeverity.Error).Select(d => d.ToString()).ToList();
        Assert.That(errors, Is.Empty, "the snippet as users read it must compile:\n" + code);
    }

    private static bool IsManagedAssembly(string path)
    {
        try { System.Reflection.AssemblyName.GetAssemblyName(path); return true; }
        catch (BadImageFormatException) { return false; }
    }
}
