using System.Text.Json;
using System.Text.Json.Serialization;

namespace OnnxMultimodal.Tests.ShapesWorld;

/// <summary>The committed inputs of the trained-model tests (Fixtures/shapes-world, written by
/// onnx-export/train/make_test_inputs.py): index.json (hand-placed scenes, held-out-voice WAVs) and
/// heldout/heldout.json (200 one-object scenes from seeds training never drew, 50 imagine prompts).</summary>
internal static class ShapesFixtures
{
    public static string Directory => Path.Combine(TestData.RepoRoot, "tests", "OnnxMultimodal.Tests", "Fixtures", "shapes-world");
    public static string HeldOutDirectory => Path.Combine(Directory, "heldout");

    public static FixtureIndex Index { get; } = Read<FixtureIndex>(Path.Combine(Directory, "index.json"));
    public static HeldOutIndex HeldOut { get; } = Read<HeldOutIndex>(Path.Combine(HeldOutDirectory, "heldout.json"));

    private static T Read<T>(string path) => JsonSerializer.Deserialize<T>(File.ReadAllText(path))
                                             ?? throw new InvalidDataException($"{path} is empty");
}

internal sealed record FixtureIndex(
    [property: JsonPropertyName("images")] List<SceneFixture> Images,
    [property: JsonPropertyName("speech")] List<SpeechFixture> Speech);

internal sealed record SceneFixture(
    [property: JsonPropertyName("file")] string File,
    [property: JsonPropertyName("caption")] string Caption,
    [property: JsonPropertyName("objects")] List<SceneObject> Objects,
    [property: JsonPropertyName("background")] string Background,
    [property: JsonPropertyName("questions")] List<List<string>> Questions,
    [property: JsonPropertyName("judge")] PythonJudgement Judge);

internal sealed record SceneObject(
    [property: JsonPropertyName("shape")] string Shape,
    [property: JsonPropertyName("colour")] string Colour,
    [property: JsonPropertyName("size")] string Size);

/// <summary>What shapes_world.judge (Python) read from a fixture, rounded to 3 decimals.</summary>
internal sealed record PythonJudgement(
    [property: JsonPropertyName("background")] string Background,
    [property: JsonPropertyName("colour")] string Colour,
    [property: JsonPropertyName("shape")] string Shape,
    [property: JsonPropertyName("fill")] double Fill,
    [property: JsonPropertyName("bottom")] double Bottom,
    [property: JsonPropertyName("pixels")] int Pixels);

internal sealed record SpeechFixture(
    [property: JsonPropertyName("file")] string File,
    [property: JsonPropertyName("text")] string Text,
    [property: JsonPropertyName("text_es")] string TextEs,
    [property: JsonPropertyName("voice")] string Voice,
    [property: JsonPropertyName("speed")] int Speed);

internal sealed record HeldOutIndex(
    [property: JsonPropertyName("seed")] int Seed,
    [property: JsonPropertyName("images")] List<HeldOutImage> Images,
    [property: JsonPropertyName("prompts")] List<ImaginePrompt> Prompts);

internal sealed record HeldOutImage(
    [property: JsonPropertyName("file")] string File,
    [property: JsonPropertyName("caption")] string Caption,
    [property: JsonPropertyName("shape")] string Shape,
    [property: JsonPropertyName("colour")] string Colour,
    [property: JsonPropertyName("size")] string Size,
    [property: JsonPropertyName("background")] string Background)
{
    public string Path => System.IO.Path.Combine(ShapesFixtures.HeldOutDirectory, File);
}

internal sealed record ImaginePrompt(
    [property: JsonPropertyName("prompt")] string Prompt,
    [property: JsonPropertyName("shape")] string Shape,
    [property: JsonPropertyName("colour")] string Colour);
