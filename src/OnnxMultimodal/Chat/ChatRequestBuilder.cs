using System.Text;
using Microsoft.Extensions.AI;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Text;

namespace OnnxMultimodal.Chat;

/// <summary>
/// Turns a conversation and its <see cref="ChatOptions"/> into one <see cref="GenerationRequest"/>:
/// text models render the whole history through the chat template (images stay in place as markers that
/// become image parts); image output takes the last user message as the prompt; speech models take the
/// last user message's WAV. The mapping is documented in docs/chat.md.
/// </summary>
internal static class ChatRequestBuilder
{
    /// <summary>Stands for the n-th image inside rendered template text; private-use characters a template never writes.</summary>
    private const char Marker = '\uE000';

    public static GenerationRequest Build(MultimodalPipeline pipeline, ChatTemplate? template, IEnumerable<ChatMessage> messages, ChatOptions? options)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var list = messages.ToList();
        var manifest = pipeline.Package.Manifest;
        CheckUnsupported(options, manifest.Name);
        string output = Property(options, MultimodalChatClient.OutputKey) ?? "text";
        bool image = output switch
        {
            "image" => true,
            "text" => false,
            _ => throw new InvalidInputException($"options.AdditionalProperties[\"{MultimodalChatClient.OutputKey}\"]", $"'{output}' is not 'text' or 'image'"),
        };
        var sampling = Sampling(options, image ? manifest.Guidance ?? new GuidanceManifest() : null);

        if (pipeline.SpeechEncoder is not null)
        {
            if (image) throw new InvalidInputException("options.output", $"model family '{manifest.Family}' does not generate images");
            var (m, _) = LastUser(list);
            var audio = Contents(list[m], m).Where(c => c.Kind == "audio").ToList();
            if (audio.Count != 1)
                throw new InvalidInputException($"messages[{m}]", $"a speech model transcribes exactly one audio/wav DataContent in the last user message (found {audio.Count})");
            return new GenerationRequest([Part.Audio(audio[0].Data!)])
            {
                Sampling = sampling,
                TargetLanguage = Property(options, MultimodalChatClient.TargetLanguageKey),
            };
        }
        if (image)
        {
            var (m, _) = LastUser(list);
            var parts = Contents(list[m], m).Select(c => c.Kind switch
            {
                "text" => Part.Text(c.Text!),
                "image" => Part.Image(c.Data!),
                _ => throw new InvalidInputException($"messages[{m}]", "an image request takes text and images"),
            }).ToList();
            if (parts.Count == 0) throw new InvalidInputException($"messages[{m}]", "the last user message is empty");
            float? guidance = Property(options, MultimodalChatClient.GuidanceScaleKey) is { } g
                ? float.TryParse(g, System.Globalization.CultureInfo.InvariantCulture, out float gs) ? gs : throw new InvalidInputException("options.guidance_scale", $"'{g}' is not a number")
                : null;
            return new GenerationRequest(parts) { Sampling = sampling, Output = OutputModality.Image, GuidanceScale = guidance };
        }
        if (template is null) throw new InvalidInputException("messages", $"model '{manifest.Name}' has no chat template");
        return new GenerationRequest(RenderParts(pipeline, template, list, options)) { Sampling = sampling };
    }

    /// <summary>Renders the conversation and splits it at the image markers into text and image parts.</summary>
    private static List<Part> RenderParts(MultimodalPipeline pipeline, ChatTemplate template, List<ChatMessage> messages, ChatOptions? options)
    {
        var images = new List<byte[]>();
        var rendered = new List<ChatTemplateMessage>();
        if (options?.Instructions is { Length: > 0 } instructions) rendered.Add(new("system", instructions));
        for (int m = 0; m < messages.Count; m++)
        {
            var text = new StringBuilder();
            foreach (var c in Contents(messages[m], m))
            {
                if (c.Kind == "text") text.Append(c.Text!.Replace(Marker, ' '));
                else if (c.Kind == "image")
                {
                    if (pipeline.ImageTokenizer is null)
                        throw new InvalidInputException(c.Input, $"model family '{pipeline.Package.Manifest.Family}' has no image encoder");
                    text.Append(Marker).Append(images.Count).Append(Marker);
                    images.Add(c.Data!);
                }
                else throw new InvalidInputException(c.Input, $"model family '{pipeline.Package.Manifest.Family}' has no speech encoder");
            }
            rendered.Add(new(messages[m].Role.Value, text.ToString()));
        }
        string prompt = template.Render(rendered, addGenerationPrompt: true);
        // The pipeline adds begin-of-sequence itself where the model wants it: drop the template's copy.
        if (pipeline.Package.Manifest.Tokens.AddBos && template.BosToken.Length > 0 && prompt.StartsWith(template.BosToken, StringComparison.Ordinal))
            prompt = prompt[template.BosToken.Length..];
        var parts = new List<Part>();
        var pieces = prompt.Split(Marker);
        for (int i = 0; i < pieces.Length; i++)
        {
            if (i % 2 == 0) { if (pieces[i].Length > 0) parts.Add(Part.Text(pieces[i])); continue; }
            if (!int.TryParse(pieces[i], out int n) || n < 0 || n >= images.Count)
                throw new ChatTemplateException(template.Source, "the template altered an image's place in a message");
            parts.Add(Part.Image(images[n]));
        }
        if (parts.Count == 0) throw new InvalidInputException("messages", "the conversation renders to an empty prompt");
        return parts;
    }

    private readonly record struct Content(string Kind, string? Text, byte[]? Data, string Input);

    private static IEnumerable<Content> Contents(ChatMessage message, int m)
    {
        for (int j = 0; j < message.Contents.Count; j++)
        {
            string input = $"messages[{m}].Contents[{j}]";
            switch (message.Contents[j])
            {
                case TextContent t: yield return new("text", t.Text ?? "", null, input); break;
                case DataContent d when d.HasTopLevelMediaType("image"): yield return new("image", null, d.Data.ToArray(), input); break;
                case DataContent d when d.HasTopLevelMediaType("audio"):
                    if (d.MediaType is not ("audio/wav" or "audio/x-wav" or "audio/wave" or "audio/vnd.wave"))
                        throw new InvalidInputException(input, $"audio as '{d.MediaType}' is not supported: send audio/wav");
                    yield return new("audio", null, d.Data.ToArray(), input);
                    break;
                case TextReasoningContent or UsageContent: break;   // a previous response's reasoning and usage are not prompt
                case DataContent d: throw new InvalidInputException(input, $"media type '{d.MediaType}' is not supported (image/* or audio/wav)");
                case UriContent u: throw new InvalidInputException(input, $"remote content ({u.Uri}) is not fetched: send the bytes as DataContent");
                case var other: throw new InvalidInputException(input, $"{other.GetType().Name} is not supported (text, image/* and audio/wav only)");
            }
        }
    }

    private static (int Index, ChatMessage Message) LastUser(List<ChatMessage> messages)
    {
        for (int i = messages.Count - 1; i >= 0; i--)
            if (messages[i].Role == ChatRole.User) return (i, messages[i]);
        throw new InvalidInputException("messages", "no user message");
    }

    private static string? Property(ChatOptions? options, string key) =>
        options?.AdditionalProperties?.TryGetValue(key, out var v) == true ? Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) : null;

    /// <summary>ChatOptions → SamplingOptions (docs/chat.md). Image output defaults to the model's guidance sampling.</summary>
    private static SamplingOptions Sampling(ChatOptions? o, GuidanceManifest? image)
    {
        float penalty = 1f;
        if (o?.FrequencyPenalty is float f)
        {
            if (!(f > -1f)) throw new InvalidInputException("options.FrequencyPenalty", $"{f} maps to repetition penalty {1 + f}, which must be > 0 (FrequencyPenalty > -1)");
            penalty = 1f + f;
        }
        var s = new SamplingOptions
        {
            Temperature = o?.Temperature ?? image?.Temperature ?? 0f,
            TopP = o?.TopP ?? image?.TopP ?? 1f,
            TopK = o?.TopK ?? 0,
            RepetitionPenalty = penalty,
            Seed = o?.Seed is long seed ? unchecked((ulong)seed) : null,
            MaxNewTokens = o?.MaxOutputTokens ?? SamplingOptions.Greedy.MaxNewTokens,
        };
        try
        {
            s.Validate();
        }
        catch (InvalidInputException e)
        {
            throw new InvalidInputException(e.Input.Replace("sampling.", "options.").Replace("MaxNewTokens", "MaxOutputTokens"), e.Message[(e.Input.Length + 2)..], e);
        }
        return s;
    }

    /// <summary>Options this client cannot honour are refused rather than silently dropped.</summary>
    private static void CheckUnsupported(ChatOptions? o, string model)
    {
        if (o is null) return;
        if (o.Tools is { Count: > 0 }) throw new InvalidInputException("options.Tools", "tool calling is not supported");
        if (o.PresencePenalty is float p && p != 0) throw new InvalidInputException("options.PresencePenalty", "not supported (FrequencyPenalty maps to the repetition penalty)");
        if (o.ResponseFormat is ChatResponseFormatJson) throw new InvalidInputException("options.ResponseFormat", "JSON output is not supported (no constrained decoding)");
        if (o.ModelId is { } id && id != model) throw new InvalidInputException("options.ModelId", $"'{id}' is not this client's model '{model}'");
        if (o.ContinuationToken is not null) throw new InvalidInputException("options.ContinuationToken", "background responses are not supported");
    }
}
