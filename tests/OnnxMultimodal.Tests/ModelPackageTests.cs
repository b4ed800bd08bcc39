using System.Text.Json.Nodes;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

public class ModelPackageTests
{
    [Test]
    public void The_tiny_model_opens()
    {
        var p = ModelPackage.Open(TestData.TinyLlama);
        Assert.That(p.Manifest.Family, Is.EqualTo("llama"));
        Assert.That(p.Decoder.NumLayers, Is.GreaterThan(0));
        Assert.That(OnnxHeader.Read(p.DecoderPath).IrVersion, Is.EqualTo(10));
    }

    [Test]
    public void Missing_folder_is_named()
    {
        string dir = Path.Combine(Path.GetTempPath(), "omm-does-not-exist-" + Guid.NewGuid());
        var e = Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!;
        Assert.That(e.Path, Is.EqualTo(dir));
        Assert.That(e.Message, Does.Contain("not found"));
    }

    [Test]
    public void Folder_without_manifest_is_named()
    {
        string dir = TestData.CopyModel("tiny-llama");
        File.Delete(Path.Combine(dir, "multimodal.json"));
        var e = Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!;
        Assert.That(e.Path, Does.EndWith("multimodal.json"));
    }

    [Test]
    public void Missing_decoder_is_named()
    {
        string dir = TestData.CopyModel("tiny-llama");
        File.Delete(Path.Combine(dir, "decoder.onnx"));
        var e = Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!;
        Assert.That(e.Path, Does.EndWith("decoder.onnx"));
        Assert.That(e.Message, Does.Contain("missing"));
    }

    [Test]
    public void Corrupt_onnx_bytes_are_refused_before_or_by_the_runtime()
    {
        string dir = TestData.CopyModel("tiny-llama");
        string path = Path.Combine(dir, "decoder.onnx");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes.AsSpan(0, bytes.Length / 3).ToArray());   // truncated
        Assert.That(Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!.Path, Is.EqualTo(path));

        var garbage = new byte[4096];
        new Random(5).NextBytes(garbage);
        File.WriteAllBytes(path, garbage);
        Assert.Throws<ModelPackageException>(() => OrtDecodeEngine.Create(ModelPackage.Open(dir), Runtime.ExecutionOptions.Cpu));

        File.WriteAllBytes(path, []);
        Assert.That(Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!.Message, Does.Contain("empty"));
    }

    [Test]
    public void Ir_version_too_new_is_refused_with_the_versions()
    {
        string dir = TestData.CopyModel("tiny-llama");
        string path = Path.Combine(dir, "decoder.onnx");
        var bytes = File.ReadAllBytes(path);
        Assert.That(bytes[0], Is.EqualTo(0x08), "field 1 (ir_version, varint) comes first");
        Assert.That(bytes[1], Is.EqualTo(10));
        bytes[1] = 14;   // what onnx 1.23 writes unless told otherwise
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!;
        Assert.That(e.Message, Does.Contain("IR version 14").And.Contain("13"));
    }

    [Test]
    public void Unknown_family_and_bad_manifest_are_named()
    {
        string dir = TestData.CopyModel("tiny-llama");
        string manifest = Path.Combine(dir, "multimodal.json");
        var json = JsonNode.Parse(File.ReadAllText(manifest))!;
        json["family"] = "gpt9";
        File.WriteAllText(manifest, json.ToJsonString());
        Assert.That(Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!.Message, Does.Contain("gpt9"));
        File.WriteAllText(manifest, "{");
        Assert.That(Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!.Message, Does.Contain("JSON"));
    }

    [Test]
    public void A_logits_mode_the_engine_cannot_honour_is_named()
    {
        string dir = TestData.CopyModel("tiny-llama");
        string manifest = Path.Combine(dir, "multimodal.json");
        var json = JsonNode.Parse(File.ReadAllText(manifest))!;
        json["decoder"]!["logits"] = "first";
        File.WriteAllText(manifest, json.ToJsonString());
        Assert.That(Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!.Message, Does.Contain("'first'"));
        json["decoder"]!["logits"] = "last";   // only the fused writer makes such graphs
        File.WriteAllText(manifest, json.ToJsonString());
        Assert.That(Assert.Throws<ModelPackageException>(() => ModelPackage.Open(dir))!.Message, Does.Contain("shared-cache"));
    }

    [Test]
    public void Io_names_that_do_not_match_the_manifest_are_named()
    {
        string dir = TestData.CopyModel("tiny-llama");
        string manifest = Path.Combine(dir, "multimodal.json");
        var json = JsonNode.Parse(File.ReadAllText(manifest))!;
        json["decoder"]!["inputs"]!["past_key"] = "past.%d.k";
        File.WriteAllText(manifest, json.ToJsonString());
        var e = Assert.Throws<ModelPackageException>(() => OrtDecodeEngine.Create(ModelPackage.Open(dir), Runtime.ExecutionOptions.Cpu))!;
        Assert.That(e.Message, Does.Contain("past.0.k"));
        Assert.That(e.Path, Does.EndWith("decoder.onnx"));
    }

    [Test]
    public void Genai_engine_without_its_config_says_so()
    {
        string dir = TestData.CopyModel("tiny-llama");
        File.Delete(Path.Combine(dir, "genai_config.json"));
        var e = Assert.Throws<ModelPackageException>(() => GenAiDecodeEngine.Create(ModelPackage.Open(dir)))!;
        Assert.That(e.Path, Does.EndWith("genai_config.json"));
    }
}
