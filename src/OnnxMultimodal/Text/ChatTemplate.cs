using System.Text.Json;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Text;

/// <summary>One message of a conversation as a chat template sees it.</summary>
/// <param name="Role">"system", "user", "assistant" (or "tool").</param>
/// <param name="Content">The message's text.</param>
public sealed record ChatTemplateMessage(string Role, string Content);

/// <summary>
/// A model's chat template: the Jinja text that turns a conversation into the prompt the model was trained
/// on. Real checkpoints carry it as <c>chat_template</c> in <c>tokenizer_config.json</c> (or in
/// <c>chat_template.jinja</c>); our tiny families have a built-in one. Rendered by a managed interpreter of
/// the Jinja subset templates use, under the bounds of <see cref="ResourceLimits"/>
/// (<see cref="ResourceLimits.MaxTemplateOutputChars"/>, <see cref="ResourceLimits.MaxTemplateSteps"/>).
/// </summary>
public sealed class ChatTemplate
{
    /// <summary>Built-in template of the tiny llama and chameleon exports, whose tokenizers carry
    /// <c>&lt;|user|&gt;</c>, <c>&lt;|assistant|&gt;</c> and <c>&lt;|end|&gt;</c>: each turn is role token, text,
    /// end token; system text opens the next user turn, followed by a blank line; the generation prompt is
    /// <c>&lt;|assistant|&gt;</c>. One user turn renders as the manifest's <c>chat_template.user</c> pattern.</summary>
    public const string RoleTokens =
        "{%- set ns = namespace(system='') -%}" +
        "{%- for message in messages -%}" +
        "{%- if message.role == 'system' -%}{%- set ns.system = ns.system ~ message.content ~ '\\n\\n' -%}" +
        "{%- elif message.role == 'user' -%}<|user|>{{ ns.system ~ message.content }}<|end|>{%- set ns.system = '' -%}" +
        "{%- elif message.role == 'assistant' -%}<|assistant|>{{ message.content }}<|end|>" +
        "{%- else -%}{{ raise_exception(\"role '\" ~ message.role ~ \"' is not supported by the built-in template\") }}" +
        "{%- endif -%}{%- endfor -%}" +
        "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}";

    /// <summary>Built-in template for a model with no template at all: the messages' texts, one per line.</summary>
    public const string Plain = "{%- for message in messages -%}{{ message.content }}{% if not loop.last %}\n{% endif %}{%- endfor -%}";

    private readonly List<Node> _parsed;
    private readonly ResourceLimits _limits;

    /// <summary>The template text.</summary>
    public string Text { get; }
    /// <summary>Where it came from: a file path, or "built-in:role-tokens" / "built-in:plain".</summary>
    public string Source { get; }
    /// <summary>The <c>bos_token</c> the template may write (empty when the tokenizer config names none).</summary>
    public string BosToken { get; }
    /// <summary>The <c>eos_token</c> the template may write.</summary>
    public string EosToken { get; }

    private ChatTemplate(string text, string source, string bos, string eos, ResourceLimits limits, List<Node> parsed)
    {
        Text = text;
        Source = source;
        BosToken = bos;
        EosToken = eos;
        _limits = limits;
        _parsed = parsed;
    }

    /// <summary>Parses a template.</summary>
    /// <exception cref="ChatTemplateException">The text is not a template this renderer understands; names <paramref name="source"/>.</exception>
    public static ChatTemplate Parse(string text, string source, string bosToken = "", string eosToken = "", ResourceLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        limits ??= ResourceLimits.Default;
        if (text.Length > limits.MaxTemplateOutputChars)
            throw new ChatTemplateException(source, $"template of {text.Length} characters exceeds ResourceLimits.MaxTemplateOutputChars ({limits.MaxTemplateOutputChars})");
        try
        {
            return new ChatTemplate(text, source, bosToken, eosToken, limits, ChatTemplateParser.Parse(text));
        }
        catch (TemplateSyntaxException e)
        {
            throw new ChatTemplateException(source, e.Message, e);
        }
    }

    /// <summary>The template of a model folder: <c>chat_template.jinja</c> or <c>tokenizer_config.json</c>'s
    /// <c>chat_template</c> (the "default" one where it lists several) beside the tokenizer; else
    /// <see cref="RoleTokens"/> for packages whose manifest carries a <c>chat_template</c> section; else null for
    /// speech→text (Seamless has no conversation) and <see cref="Plain"/> for the rest.</summary>
    /// <exception cref="ChatTemplateException">The file is too large, not JSON, or its template does not parse.</exception>
    internal static ChatTemplate? Load(ModelPackage package, ResourceLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(package);
        limits ??= ResourceLimits.Default;
        string dir = Path.GetDirectoryName(package.TokenizerPath) ?? package.Directory;
        string configPath = Path.Combine(dir, "tokenizer_config.json"), jinjaPath = Path.Combine(dir, "chat_template.jinja");
        string bos = "", eos = "";
        string? text = null, source = null;
        if (File.Exists(configPath))
        {
            try
            {
                using var doc = JsonDocument.Parse(ReadBounded(configPath, limits));
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object) throw new ChatTemplateException(configPath, "not a JSON object");
                bos = TokenText(root, "bos_token");
                eos = TokenText(root, "eos_token");
                if (root.TryGetProperty("chat_template", out var t))
                {
                    text = t.ValueKind switch
                    {
                        JsonValueKind.String => t.GetString(),
                        JsonValueKind.Array => t.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.Object && e.TryGetProperty("name", out var n) && n.ValueEquals("default"))
                                                .Select(e => e.TryGetProperty("template", out var tt) && tt.ValueKind == JsonValueKind.String ? tt.GetString() : null).FirstOrDefault()
                                               ?? throw new ChatTemplateException(configPath, "lists templates but none named 'default'"),
                        JsonValueKind.Null => null,
                        _ => throw new ChatTemplateException(configPath, $"chat_template is a JSON {t.ValueKind}, expected a string"),
                    };
                    source = configPath;
                }
            }
            catch (JsonException e)
            {
                throw new ChatTemplateException(configPath, $"not valid JSON ({e.Message})", e);
            }
        }
        if (File.Exists(jinjaPath))
        {
            text = System.Text.Encoding.UTF8.GetString(ReadBounded(jinjaPath, limits));
            source = jinjaPath;
        }
        if (text is not null) return Parse(text, source!, bos, eos, limits);
        if (package.Manifest.ChatTemplate?.ContainsKey("user") == true) return Parse(RoleTokens, "built-in:role-tokens", bos, eos, limits);
        if (package.Has("speech_encoder")) return null;
        return Parse(Plain, "built-in:plain", bos, eos, limits);
    }

    private static byte[] ReadBounded(string path, ResourceLimits limits)
    {
        long size = new FileInfo(path).Length;
        if (size > limits.MaxTemplateFileBytes)
            throw new ChatTemplateException(path, $"{size} bytes exceed ResourceLimits.MaxTemplateFileBytes ({limits.MaxTemplateFileBytes})");
        return File.ReadAllBytes(path);
    }

    /// <summary>A special token in tokenizer_config.json: a string, or an AddedToken object with "content".</summary>
    private static string TokenText(JsonElement root, string name) =>
        !root.TryGetProperty(name, out var v) ? ""
        : v.ValueKind == JsonValueKind.String ? v.GetString() ?? ""
        : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() ?? ""
        : "";

    /// <summary>Renders a conversation.</summary>
    /// <param name="messages">The conversation, oldest first.</param>
    /// <param name="addGenerationPrompt">End with the start of the assistant's turn (what a model then continues).</param>
    /// <param name="variables">Further variables the template may read (e.g. <c>tools</c>, <c>enable_thinking</c>, <c>date_string</c>).</param>
    /// <exception cref="ChatTemplateException">Rendering failed or passed a bound; the template's own
    /// <c>raise_exception</c> message is passed on.</exception>
    public string Render(IReadOnlyList<ChatTemplateMessage> messages, bool addGenerationPrompt = true,
                         IReadOnlyDictionary<string, object?>? variables = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var context = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (variables is not null) foreach (var (k, v) in variables) context[k] = v;
        context["messages"] = messages.Select(m => new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content }).ToList();
        context["add_generation_prompt"] = addGenerationPrompt;
        return Render(context);
    }

    /// <summary>Renders with every variable given: <c>messages</c> as a list of dictionaries (or a JSON element),
    /// <c>add_generation_prompt</c> and any others. <c>bos_token</c> and <c>eos_token</c> default to the tokenizer's.</summary>
    /// <param name="variables">Template variables: strings, numbers, booleans, lists, dictionaries or <see cref="JsonElement"/>s.</param>
    /// <param name="now">The clock <c>strftime_now</c> reads (default: now, UTC).</param>
    /// <exception cref="ChatTemplateException">Rendering failed or passed a bound.</exception>
    public string Render(IReadOnlyDictionary<string, object?> variables, DateTimeOffset? now = null)
    {
        ArgumentNullException.ThrowIfNull(variables);
        var context = new Dictionary<string, object?>(StringComparer.Ordinal) { ["bos_token"] = BosToken, ["eos_token"] = EosToken };
        foreach (var (k, v) in variables) context[k] = v;
        var interpreter = new ChatTemplateInterpreter(_limits.MaxTemplateOutputChars, _limits.MaxTemplateSteps, now ?? DateTimeOffset.UtcNow);
        try
        {
            return interpreter.Render(_parsed, context);
        }
        catch (TemplateRaisedException e)
        {
            throw new ChatTemplateException(Source, $"the template refused the conversation: {e.Message}", e);
        }
        catch (TemplateLimitException e)
        {
            throw new ChatTemplateException(Source, $"{e.Message} (ResourceLimits.MaxTemplateOutputChars / MaxTemplateSteps)", e);
        }
        catch (Exception e) when (e is TemplateSyntaxException or ArgumentException or InvalidCastException or OverflowException)
        {
            throw new ChatTemplateException(Source, e.Message, e);
        }
    }
}
