namespace OnnxMultimodal.Pipeline;

/// <summary>
/// Enforces <see cref="ResourceLimits"/> on what a model folder declares and on what a caller asks for,
/// before anything is allocated from those numbers. A model folder is trusted for its math, never for
/// its sizes, ids or paths.
/// </summary>
internal static class LimitChecks
{
    /// <summary>Fields of multimodal.json that must not be null (JSON <c>null</c> overrides the defaults).</summary>
    /// <exception cref="ModelPackageException">A field is null; the message names it.</exception>
    public static void NoNulls(ModelManifest m, string path)
    {
        static void Need(object? value, string path, string field)
        {
            if (value is null) throw new ModelPackageException(path, $"'{field}' is null");
        }
        Need(m.Family, path, "family");
        Need(m.Name, path, "name");
        Need(m.Precision, path, "precision");
        Need(m.Components, path, "components");
        Need(m.Tokens, path, "tokens");
        foreach (var (role, file) in m.Components) Need(file, path, $"components.{role}");
        Need(m.Tokens.Eos, path, "tokens.eos");
        if (m.ChatTemplate is { } chat) foreach (var (role, text) in chat) Need(text, path, $"chat_template.{role}");
        if (m.Decoder is { } d)
        {
            Need(d.KvCache, path, "decoder.kv_cache");
            Need(d.KvDtype, path, "decoder.kv_dtype");
            Need(d.Logits, path, "decoder.logits");
            Need(d.Inputs, path, "decoder.inputs");
            Need(d.Outputs, path, "decoder.outputs");
            foreach (var (role, name) in d.Inputs) Need(name, path, $"decoder.inputs.{role}");
            foreach (var (role, name) in d.Outputs) Need(name, path, $"decoder.outputs.{role}");
        }
        if (m.Image is { } img) Need(img.CodeToToken, path, "image.code_to_token");
        foreach (var (io, field) in new[] { (m.ImageEncoder, "image_encoder"), (m.ImageDecoder, "image_decoder") })
            if (io is not null) { Need(io.Input, path, $"{field}.input"); Need(io.Output, path, $"{field}.output"); }
        if (m.SpeechEncoder is { } s)
        {
            Need(s.Inputs, path, "speech_encoder.inputs");
            Need(s.Outputs, path, "speech_encoder.outputs");
            foreach (var (role, name) in s.Inputs) Need(name, path, $"speech_encoder.inputs.{role}");
            foreach (var (role, name) in s.Outputs) Need(name, path, $"speech_encoder.outputs.{role}");
        }
    }

    /// <summary>Sizes and token ids of multimodal.json against the limits and against each other.</summary>
    /// <exception cref="ModelPackageException">A size is out of bounds or an id outside the vocabulary; the message names the field.</exception>
    public static void Sizes(ModelManifest m, string path, ResourceLimits limits)
    {
        var d = m.Decoder!;
        Bound(d.ContextLength, 1, limits.MaxContextLength, path, "decoder.context_length", nameof(ResourceLimits.MaxContextLength));
        Bound(d.VocabSize, 1, limits.MaxVocabularySize, path, "decoder.vocab_size", nameof(ResourceLimits.MaxVocabularySize));
        // Shape fields of a decoder: far above any real model (Llama-70B: 80 layers, 64 heads, 8192 wide), far below an overflow.
        Bound(d.NumLayers, 1, 1024, path, "decoder.num_layers", null);
        Bound(d.NumHeads, 1, 1024, path, "decoder.num_heads", null);
        Bound(d.NumKvHeads, 1, d.NumHeads, path, "decoder.num_kv_heads", null);
        Bound(d.HeadDim, 1, 1024, path, "decoder.head_dim", null);
        Bound(d.HiddenSize, 0, 1 << 17, path, "decoder.hidden_size", null);
        Bound(d.PositionOffset, 0, limits.MaxContextLength, path, "decoder.position_offset", nameof(ResourceLimits.MaxContextLength));

        int vocab = d.VocabSize;
        void Id(int? id, string field)
        {
            if (id is int v && (uint)v >= (uint)vocab)
                throw new ModelPackageException(path, $"{field} is token id {v}, outside the decoder's vocabulary of {vocab}");
        }
        var t = m.Tokens;
        Id(t.Bos, "tokens.bos");
        Id(t.Pad, "tokens.pad");
        Id(t.DecoderStart, "tokens.decoder_start");
        for (int i = 0; i < t.Eos.Length; i++) Id(t.Eos[i], $"tokens.eos[{i}]");
        if (t.Languages is { } languages) foreach (var (code, id) in languages) Id(id, $"tokens.languages.{code}");

        if (m.Image is { } img && (m.Components.ContainsKey("image_encoder") || m.Components.ContainsKey("image_decoder")))
        {
            Bound(img.Size, 1, limits.MaxImageSize, path, "image.size", nameof(ResourceLimits.MaxImageSize));
            Bound(img.TokensPerImage, 1, d.ContextLength - 1, path, "image.tokens_per_image", null);
            if (img.Grid != 0 && (long)img.Grid * img.Grid != img.TokensPerImage)
                throw new ModelPackageException(path, $"image.grid {img.Grid} does not give image.tokens_per_image {img.TokensPerImage} ({img.Grid}x{img.Grid})");
            Bound(img.CodebookSize, 1, vocab, path, "image.codebook_size", null);
            if (img.CodeToToken.Length != img.CodebookSize)
                throw new ModelPackageException(path, $"image.code_to_token has {img.CodeToToken.Length} entries, codebook_size is {img.CodebookSize}");
            Id(img.BeginImage, "image.begin_image");
            Id(img.EndImage, "image.end_image");
            Id(img.Placeholder, "image.placeholder");
            var seen = new HashSet<int>();
            for (int c = 0; c < img.CodeToToken.Length; c++)
            {
                Id(img.CodeToToken[c], $"image.code_to_token[{c}]");
                if (!seen.Add(img.CodeToToken[c]))
                    throw new ModelPackageException(path, $"image.code_to_token[{c}] repeats token id {img.CodeToToken[c]}: each code needs its own token");
            }
        }
        if (m.SpeechEncoder is { } speech) Bound(speech.FeatureDim, 1, 4096, path, "speech_encoder.feature_dim", null);
    }

    /// <summary>The decoder graph's static dimensions against what multimodal.json declares: the sampler reads
    /// [vocab] logits and the cache is laid out as [batch, kv_heads, length, head_dim] from the manifest.</summary>
    /// <exception cref="ModelPackageException">A dimension disagrees; the message names both.</exception>
    public static void DecoderGraph(string path, DecoderManifest d, IReadOnlyDictionary<string, Microsoft.ML.OnnxRuntime.NodeMetadata> inputs,
                                    IReadOnlyDictionary<string, Microsoft.ML.OnnxRuntime.NodeMetadata> outputs)
    {
        void Same(long graph, long manifest, string what)
        {
            if (graph > 0 && graph != manifest)
                throw new ModelPackageException(path, $"the graph's {what} is {graph} but multimodal.json declares {manifest}");
        }
        if (outputs.TryGetValue(d.OutputName("logits"), out var logits) && logits.Dimensions.Length == 3)
            Same(logits.Dimensions[2], d.VocabSize, "logits vocabulary (decoder.vocab_size)");
        if (inputs.TryGetValue(d.PastKey(0), out var past) && past.Dimensions.Length == 4)   // [batch, kv_heads, length, head_dim]
        {
            Same(past.Dimensions[1], d.NumKvHeads, "cache heads (decoder.num_kv_heads)");
            Same(past.Dimensions[3], d.HeadDim, "cache head size (decoder.head_dim)");
            if (d.SharedCache && past.Dimensions[2] > 0 && d.ContextLength > past.Dimensions[2])
                throw new ModelPackageException(path, $"decoder.context_length {d.ContextLength} is longer than the graph's cache of {past.Dimensions[2]} positions");
        }
    }

    /// <summary>Options a caller passes at load time.</summary>
    /// <exception cref="InvalidInputException">An option is out of bounds.</exception>
    public static void Load(PipelineOptions options)
    {
        var limits = options.Limits ?? throw new InvalidInputException("options.Limits", "is null");
        int threads = options.Execution.IntraOpThreads;
        if (threads < 0 || threads > limits.MaxThreads)
            throw new InvalidInputException("threads", $"{threads} is outside 0..{limits.MaxThreads} (0 = ONNX Runtime's choice; ResourceLimits.MaxThreads)");
    }

    /// <summary>A request's options against the limits (the engines check the rest against the model).</summary>
    /// <exception cref="InvalidInputException">An option is out of bounds; the message names it.</exception>
    public static void Request(GenerationRequest request, ResourceLimits limits)
    {
        if (request.Parts is null) throw new InvalidInputException("parts", "is null");
        for (int i = 0; i < request.Parts.Count; i++)
            if (request.Parts[i] is null) throw new InvalidInputException($"parts[{i}]", "is null");
        int max = request.Sampling.MaxNewTokens;
        if (max > limits.MaxNewTokens)
            throw new InvalidInputException("sampling.MaxNewTokens", $"{max} is over the limit of {limits.MaxNewTokens} (ResourceLimits.MaxNewTokens)");
        if (request.GuidanceScale is float g && !float.IsFinite(g))
            throw new InvalidInputException("GuidanceScale", $"must be a finite number (got {g}); 1 turns guidance off, the model's default is used when it is not set");
    }

    private static void Bound(long value, long min, long max, string path, string field, string? limit)
    {
        if (value >= min && value <= max) return;
        string why = limit is null ? "" : $" (ResourceLimits.{limit})";
        throw new ModelPackageException(path, $"{field} is {value}, outside {min}..{max}{why}");
    }
}
