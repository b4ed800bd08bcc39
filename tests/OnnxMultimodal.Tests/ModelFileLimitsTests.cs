using System.Diagnostics;
using System.Text.Json.Nodes;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

/// <summary>
/// Issue 13, findings 6, 7 and 9 for model folders: sizes, ids and paths in multimodal.json and the ONNX
/// header are checked against <see cref="ResourceLimits"/>, the graph and the folder before anything is
/// allocated or opened from them; every refusal is a <see cref="ModelPackageException"/> naming the file
/// and the field.
/// </summary>
public class ModelFileLimitsTests
{
    private static string WithManifest(string model, Action<JsonNode> edit)
    {
        string dir = TestData.CopyModel(model);
        string path = Path.Combine(dir, "multimodal.json");
        var json = JsonNode.Parse(File.ReadAllText(path))!;
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
        return dir;
    }

    private static ModelPackageException Refused(string dir, string field)
    {
        var e = Assert.ThrowsAsync<ModelPackageException>(() => MultimodalPipeline.LoadAsync(dir))!;
        Assert.That(e.Path, Does.EndWith("multimodal.json"));
        Assert.That(e.Message, Does.Contain(field));
        return e;
    }

    [TestCase(300_000_000)]
    [TestCase(int.MaxValue)]
    public void Context_length_from_the_file_is_bounded_before_allocation(int length)
    {
        // Before: 300M allocated 2.4 GB of attention-mask row at load; 2^31-1 overflowed.
        string dir = WithManifest("tiny-llama", j => j["decoder"]!["context_length"] = length);
        var e = Refused(dir, "decoder.context_length");
        Assert.That(e.Message, Does.Contain(nameof(ResourceLimits.MaxContextLength)));
    }

    [Test]
    public void Vocabulary_size_must_be_the_graphs()
    {
        // The sampler reads [vocab_size] logits: a larger declared vocabulary would read past the graph's.
        string dir = WithManifest("tiny-llama", j => j["decoder"]!["vocab_size"] = j["decoder"]!["vocab_size"]!.GetValue<int>() + 1000);
        var e = Assert.Throws<ModelPackageException>(() => OrtDecodeEngine.Create(ModelPackage.Open(dir), Runtime.ExecutionOptions.Cpu))!;
        Assert.That(e.Message, Does.Contain("vocab_size"));
    }

    [Test]
    public void Image_size_and_code_to_token_are_checked_against_limits_and_vocabulary()
    {
        Refused(WithManifest("tiny-chameleon", j => j["image"]!["size"] = 30000), "image.size");
        Refused(WithManifest("tiny-chameleon", j => j["image"]!["code_to_token"]![5] = 2_000_000_000), "image.code_to_token[5]");
        Refused(WithManifest("tiny-chameleon", j => j["image"]!["code_to_token"]![7] = -3), "image.code_to_token[7]");
        Refused(WithManifest("tiny-chameleon", j => j["image"]!["code_to_token"]![9] = j["image"]!["code_to_token"]![8]!.GetValue<int>()), "repeats");
        Refused(WithManifest("tiny-chameleon", j => j["image"]!["tokens_per_image"] = 1 << 30), "image.tokens_per_image");
        Refused(WithManifest("tiny-llama", j => j["tokens"]!["eos"] = new JsonArray(5, 1 << 30)), "tokens.eos[1]");
        // Raising the limit is the caller's choice, and is honoured.
        var opened = ModelPackage.Open(WithManifest("tiny-chameleon", j => j["image"]!["size"] = 8192),
                                       ResourceLimits.Default with { MaxImageSize = 8192 });
        Assert.That(opened.Manifest.Image!.Size, Is.EqualTo(8192));
    }

    [TestCase(0xFFFFFFFFUL)]
    [TestCase(0x7FFFFFFFUL)]
    public void Opset_domain_length_from_the_header_is_checked_against_the_bytes_left(ulong length)
    {
        // ir_version 10, then opset_import { domain: <length> bytes that are not there }.
        var inner = new List<byte> { 0x0A };
        for (ulong v = length; ; v >>= 7)
        {
            inner.Add((byte)(v < 0x80 ? v : (v & 0x7F) | 0x80));
            if (v < 0x80) break;
        }
        var bytes = new List<byte> { 0x08, 10, 0x42, (byte)inner.Count };
        bytes.AddRange(inner);
        string path = Path.Combine(Path.GetTempPath(), $"omm-header-{Guid.NewGuid():N}.onnx");
        File.WriteAllBytes(path, bytes.ToArray());
        var e = Assert.Throws<ModelPackageException>(() => OnnxHeader.Read(path))!;   // before: OverflowException / OutOfMemory
        Assert.That(e.Path, Is.EqualTo(path));
        Assert.That(e.Message, Does.Contain("opset_import"));
    }

    [TestCase("components")]
    [TestCase("tokens")]
    [TestCase("family")]
    [TestCase("components.decoder")]
    [TestCase("tokens.eos")]
    [TestCase("decoder.inputs")]
    [TestCase("decoder.inputs.input_ids")]
    [TestCase("chat_template.user")]
    public void Null_fields_in_the_manifest_are_named(string field)
    {
        // Before: NullReferenceException / ArgumentNullException from deep inside loading.
        string dir = WithManifest("tiny-llama", j =>
        {
            var parts = field.Split('.');
            var node = j;
            foreach (var p in parts[..^1]) node = node[p] ??= new JsonObject();
            node[parts[^1]] = null;
        });
        Refused(dir, $"'{field}' is null");
    }

    [Test]
    public void Component_paths_may_not_leave_the_model_folder_unless_allowed()
    {
        string outside = Path.Combine(Path.GetTempPath(), $"omm-outside-{Guid.NewGuid():N}");
        Directory.CreateDirectory(outside);
        File.Copy(Path.Combine(TestData.TinyLlama, "decoder.onnx"), Path.Combine(outside, "decoder.onnx"));
        string dir = TestData.CopyModel("tiny-llama");
        string relative = Path.GetRelativePath(dir, Path.Combine(outside, "decoder.onnx"));   // ../../omm-outside-…/decoder.onnx
        string absolute = Path.Combine(outside, "decoder.onnx");
        foreach (var target in new[] { relative, absolute })
        {
            string manifest = Path.Combine(dir, "multimodal.json");
            var json = JsonNode.Parse(File.ReadAllText(manifest))!;
            json["components"]!["decoder"] = target;
            File.WriteAllText(manifest, json.ToJsonString());
            var e = Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!;
            Assert.That(e.Message, Does.Contain("outside the model folder").And.Contain(nameof(ResourceLimits.AllowPathsOutsideModel)));
            Assert.That(ModelPackage.Open(dir, ResourceLimits.Default with { AllowPathsOutsideModel = true }).DecoderPath, Does.EndWith("decoder.onnx"));
        }
        // A link inside the folder that leads out of it.
        string linked = TestData.CopyModel("tiny-llama");
        File.Delete(Path.Combine(linked, "decoder.onnx"));
        File.CreateSymbolicLink(Path.Combine(linked, "decoder.onnx"), absolute);
        Assert.That(Assert.Throws<ModelPackageException>(() => ModelPackage.Open(linked))!.Message, Does.Contain("outside the model folder"));
        // A link that stays inside, and a sibling package's graph (the exporter's --link-components), are fine.
        string inside = TestData.CopyModel("tiny-llama");
        File.Move(Path.Combine(inside, "decoder.onnx"), Path.Combine(inside, "real.onnx"));
        File.CreateSymbolicLink(Path.Combine(inside, "decoder.onnx"), "real.onnx");
        Assert.That(ModelPackage.Open(inside).Decoder.NumLayers, Is.GreaterThan(0));
        Assert.That(ModelPackage.Open(TestData.Model("tiny-chameleon-fused")).Has("image_encoder"), Is.True);
    }

    [Test]
    public void Symlink_loops_directories_and_fifos_are_refused_without_hanging()
    {
        string dir = TestData.CopyModel("tiny-llama");
        string decoder = Path.Combine(dir, "decoder.onnx");
        File.Delete(decoder);
        File.CreateSymbolicLink(decoder, Path.Combine(dir, "loop.onnx"));
        File.CreateSymbolicLink(Path.Combine(dir, "loop.onnx"), decoder);
        Assert.That(Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!.Message, Does.Contain("symbolic links"));

        File.Delete(decoder);
        Directory.CreateDirectory(decoder);
        Assert.That(Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!.Message, Does.Contain("is a directory"));

        string manifestLoop = TestData.CopyModel("tiny-llama");
        string manifest = Path.Combine(manifestLoop, "multimodal.json");
        File.Delete(manifest);
        File.CreateSymbolicLink(manifest, Path.Combine(manifestLoop, "m2.json"));
        File.CreateSymbolicLink(Path.Combine(manifestLoop, "m2.json"), manifest);
        Assert.That(Assert.Throws<ModelPackageException>(() => ModelPackage.Open(manifestLoop))!.Path, Is.EqualTo(manifest));

        Directory.Delete(decoder);
        MakeFifo(decoder);
        var open = Task.Run(() => ModelPackage.Open(dir));
        Assert.That(Task.WaitAny([open], TimeSpan.FromSeconds(20)), Is.Zero, "opening a FIFO blocks until a writer comes: it must be refused first");
        Assert.That(open.Exception?.InnerException, Is.InstanceOf<ModelPackageException>());
        Assert.That(open.Exception!.InnerException!.Message, Does.Contain("not a regular file"));
    }

    internal static void MakeFifo(string path)
    {
        if (OperatingSystem.IsWindows()) Assert.Ignore("no FIFOs on Windows");
        using var mkfifo = Process.Start("mkfifo", path);
        mkfifo.WaitForExit();
        Assert.That(mkfifo.ExitCode, Is.Zero);
    }
}
