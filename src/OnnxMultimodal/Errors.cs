namespace OnnxMultimodal;

/// <summary>Root of every error the library raises on purpose. Catch this to handle them all.</summary>
public class OnnxMultimodalException : Exception
{
    /// <summary>Creates the exception with its message and, optionally, the error that caused it.</summary>
    public OnnxMultimodalException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>A model folder, or a file in it, is missing, malformed or does not match its manifest.</summary>
public sealed class ModelPackageException : OnnxMultimodalException
{
    /// <summary>The file or folder at fault.</summary>
    public string Path { get; }

    /// <summary>Creates the exception for <paramref name="path"/>; the message is "path: problem".</summary>
    public ModelPackageException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner) => Path = path;
}

/// <summary>An input of a request (prompt, image, audio, option) cannot be used.</summary>
public class InvalidInputException : OnnxMultimodalException
{
    /// <summary>Which input is at fault (for example "prompt", "image[0]", "sampling.TopP").</summary>
    public string Input { get; }

    /// <summary>Creates the exception for <paramref name="input"/>; the message is "input: problem".</summary>
    public InvalidInputException(string input, string problem, Exception? inner = null)
        : base($"{input}: {problem}", inner) => Input = input;
}

/// <summary>The prompt does not fit the model's context window.</summary>
public sealed class PromptTooLongException : InvalidInputException
{
    /// <summary>Tokens in the prompt as encoded.</summary>
    public int PromptTokens { get; }
    /// <summary>The model's context length in tokens.</summary>
    public int ContextLength { get; }

    /// <summary>Creates the exception for a prompt of <paramref name="promptTokens"/> tokens.</summary>
    public PromptTooLongException(int promptTokens, int contextLength)
        : base("prompt", $"{promptTokens} tokens do not fit the context of {contextLength} tokens (at least one must be left to generate)")
    {
        PromptTokens = promptTokens;
        ContextLength = contextLength;
    }
}

/// <summary>No requested execution provider could be created (missing library, no device).</summary>
public sealed class ExecutionProviderException : OnnxMultimodalException
{
    /// <summary>Creates the exception; the message names the providers tried and why each failed.</summary>
    public ExecutionProviderException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>ONNX Runtime (or ORT GenAI) failed while running a graph; names the graph.</summary>
public sealed class InferenceException : OnnxMultimodalException
{
    /// <summary>Creates the exception for <paramref name="graph"/>; the message is "graph: problem".</summary>
    public InferenceException(string graph, string problem, Exception? inner = null) : base($"{graph}: {problem}", inner) { }
}

/// <summary>A model's chat template cannot be parsed or rendered (syntax, a bound, or the template's own
/// <c>raise_exception</c>); names the file the template came from.</summary>
public sealed class ChatTemplateException : OnnxMultimodalException
{
    /// <summary>The file the template came from (tokenizer_config.json, chat_template.jinja) or "built-in".</summary>
    public string TemplateSource { get; }

    /// <summary>Creates the error for the template read from <paramref name="source"/>.</summary>
    public ChatTemplateException(string source, string problem, Exception? inner = null)
        : base($"{source}: chat_template: {problem}", inner) => TemplateSource = source;
}
