using System.Diagnostics;
using System.Text.Json.Nodes;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>
/// <c>convert --device-sampling --sampling-op omm</c> on the CPU: the package it writes (its tokens are checked against the
/// host sampler on CUDA by <see cref="DeviceSamplingCudaTests"/>, its "omm" fixture). The head's standard nodes must be gone, replaced by
/// one <c>omm.OmmSamplingHead</c> node with the head's inputs and outputs under the same names, the manifest must keep
/// the standard conversion's sampling_head entry and name the library's domain, and a host without the library must be
/// refused with the option named. Needs python3 with the onnx package (skipped with the reason otherwise).
/// </summary>
public class SamplingOpPackageTests
{
    private string _folder = "", _standard = "", _op = "";

    [OneTimeSetUp]
    public void Convert()
    {
        _folder = Path.Combine(Path.GetTempPath(), $"omm-sampling-op-cpu-{Guid.NewGuid():N}");
        _standard = SamplingHeadPackages.Convert("tiny-llama", "fp32", _folder, "standard");
        _op = SamplingHeadPackages.Convert("tiny-llama", "fp32", _folder, "op", "--sampling-op", "omm");
    }

    [OneTimeTearDown]
    public void Clean()
    {
        if (Directory.Exists(_folder)) Directory.Delete(_folder, recursive: true);
    }

    private static string Graph(string package) => File.ReadAllText(Path.Combine(package, "decoder.onnx"), System.Text.Encoding.Latin1);

    private static JsonNode Decoder(string package) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(package, "multimodal.json")))!["decoder"]!;

    [Test]
    public void The_head_becomes_one_op_with_the_same_inputs_outputs_and_manifest()
    {
        string standard = Graph(_standard), op = Graph(_op);
        Assert.That(standard, Does.Contain("TopK").And.Not.Contain("OmmSamplingHead"));
        Assert.That(op, Does.Contain("OmmSamplingHead").And.Not.Contain("TopK").And.Not.Contain("CumSum"),
                    "the standard head's sort and cumulative sums are gone");
        foreach (string name in new[] { "sample_params", "sample_uniform", "sample_rows", "sample_seen", "sample_mask", "next_token_greedy" })
            Assert.That(op, Does.Contain(name), name);
        Assert.That(new FileInfo(Path.Combine(_op, "decoder.onnx")).Length, Is.LessThan(new FileInfo(Path.Combine(_standard, "decoder.onnx")).Length),
                    "the head's constants (the tie-breaking steps over the vocabulary) went with its nodes");
        JsonNode s = Decoder(_standard), o = Decoder(_op);
        Assert.That(o["sampling_head"]!.ToJsonString(), Is.EqualTo(s["sampling_head"]!.ToJsonString()));
        Assert.That(o["outputs"]!.ToJsonString(), Is.EqualTo(s["outputs"]!.ToJsonString()));
        Assert.That(o["custom_op_domains"]!.AsArray().Select(x => x!.GetValue<string>()), Is.EqualTo(new[] { "omm" }));
        Assert.That(s["custom_op_domains"], Is.Null);
    }

    [Test]
    public void A_sampling_op_package_is_refused_without_the_library_naming_the_option()
    {
        var e = Assert.Throws<ModelPackageException>(() => OrtDecodeEngine.Create(ModelPackage.Open(_op), ExecutionOptions.Cpu))!;
        Assert.That(e.Message, Does.Contain("CustomOpLibrary"));
        Assert.That(OrtDecodeEngine.LiveSequences, Is.Zero);
    }

    [TestCase(new[] { "--graph", "fused", "--precision", "fp32", "--sampling-op", "omm" }, "--sampling-op omm needs --device-sampling")]
    [TestCase(new[] { "--graph", "fused", "--precision", "fp32", "--device-sampling", "--sampling-op", "omm", "--check" }, "convert --check runs on onnxruntime's CPU, which has no omm ops")]
    [TestCase(new[] { "--graph", "reference", "--precision", "fp32", "--sampling-op", "omm" }, "--sampling-op need --graph fused")]
    public void Convert_refuses_a_sampling_op_it_cannot_write_or_check(string[] options, string named)
    {
        string output = Path.Combine(_folder, $"refused-{Guid.NewGuid():N}");
        var start = new ProcessStartInfo(SamplingHeadPackages.PythonWithOnnx(), ["-m", "omm_export", "convert", "--from", TestData.Model("tiny-llama"), "--out", output, .. options])
        {
            WorkingDirectory = Path.Combine(TestData.RepoRoot, "onnx-export"),
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        _ = process.StandardOutput.ReadToEndAsync();
        Assert.That(process.WaitForExit(120_000), Is.True);
        Assert.That(process.ExitCode, Is.EqualTo(1), "SystemExit with the message (2 would be argparse refusing the options)");
        Assert.That(error.Result, Does.Contain(named));
    }
}
