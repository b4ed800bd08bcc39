namespace OnnxMultimodal.Cli;

/// <summary>The trained models embedded next to the CLI (models/*), used when no <c>--model</c> is given:
/// code continues Python, shapes captions/answers/draws the shapes world, speech transcribes its phrases.</summary>
internal static class DefaultModels
{
    /// <summary>Folder name of the code model (Llama), for <c>run</c> and <c>chat</c>.</summary>
    public const string Code = "code";
    /// <summary>Folder name of the shapes-world model (Chameleon), for <c>caption</c>, <c>ask</c> and <c>imagine</c>.</summary>
    public const string Shapes = "shapes";
    /// <summary>Folder name of the spoken-phrases model (Seamless), for <c>transcribe</c>.</summary>
    public const string Speech = "speech";

    /// <summary>The embedded folder of one of the names above.</summary>
    public static string PathOf(string name) => Path.Combine(AppContext.BaseDirectory, "models", name);
}
