using System.Buffers;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Profiling;
using OnnxMultimodal.Runtime;
using OnnxMultimodal.Speech;
using OnnxMultimodal.Text;
using OnnxMultimodal.Vision;

namespace OnnxMultimodal.Pipeline;

/// <summary>Which decode loop runs the text decoder.</summary>
public enum EngineKind
{
    /// <summary>Ours: preallocated step I/O, caller-owned loop, batch rows (guidance), every execution provider.</summary>
    Ort,
    /// <summary>ORT GenAI's Generator (CPU here).</summary>
    GenAi,
}

/// <summary>How a model is loaded. Immutable.</summary>
public sealed record PipelineOptions
{
    /// <summary>Which decode loop runs the text decoder (default: ours).</summary>
    public EngineKind Engine { get; init; } = EngineKind.Ort;
    /// <summary>Execution providers and their settings for every graph of the model (default: CPU).</summary>
    public ExecutionOptions Execution { get; init; } = ExecutionOptions.Cpu;
    /// <summary>Limits for decoding input images: a view of the image bounds of <see cref="Limits"/> (setting it sets them there).</summary>
    public ImageLoaderOptions Images { get => new() { Limits = Limits }; init => Limits = ResourceLimits.WithImageBounds(Limits, value.Limits); }
    /// <summary>Limits for reading input audio: a view of the audio bounds of <see cref="Limits"/> (setting it sets them there).</summary>
    public AudioOptions Audio { get => new() { Limits = Limits }; init => Limits = ResourceLimits.WithAudioBounds(Limits, value.Limits); }
    /// <summary>Requests that run at once, each on its own long-lived decode thread; more wait for a free one.</summary>
    public int MaxConcurrentRequests { get; init; } = 4;
    /// <summary>Bounds on untrusted input and on sizes read from model files (see <see cref="ResourceLimits"/>).</summary>
    public ResourceLimits Limits { get; init; } = ResourceLimits.Default;
    /// <summary>Where the pipeline logs load, provider fallback, capture and request failures; null logs nothing.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }
}

/// <summary>
/// The public facade: load a model folder once, then stream generations from any number of threads.
/// Each request owns its own decode state; the sessions are shared.
/// </summary>
public sealed class MultimodalPipeline : IDisposable, IAsyncDisposable
{
    private readonly PipelineOptions _options;
    private readonly DecodeWorkers _workers;
    private readonly ILogger _log;
    /// <summary>Pixel buffers of image requests, reused across requests and threads: a fresh 3 MB array a request cost its
    /// page faults (about 4 ms of a 640x512 image's preparation on an H100 host). This pipeline's own pool, so one model's
    /// pixels never reach other code of the process.</summary>
    private readonly ArrayPool<float> _pixels = ArrayPool<float>.Create(maxArrayLength: 1 << 24, maxArraysPerBucket: 4);
    internal DecodeWorkers Workers => _workers;
    /// <summary>The options the pipeline was loaded with.</summary>
    internal PipelineOptions Options => _options;

    /// <summary>The loaded model: name, family, precision, context length, and the modalities it takes and gives.</summary>
    public ModelInfo Model => ModelInfo.From(Package);
    internal ModelPackage Package { get; }
    internal TextTokenizer Tokenizer { get; }
    internal IDecodeEngine Engine { get; }
    internal ImageTokenizer? ImageTokenizer { get; }
    internal ImageDetokenizer? ImageDetokenizer { get; }
    internal ImageVocabulary? ImageVocabulary { get; }
    internal SpeechEncoder? SpeechEncoder { get; }

    private MultimodalPipeline(PipelineOptions options, ModelPackage package, TextTokenizer tokenizer, IDecodeEngine engine,
                               ImageTokenizer? imageTokenizer, ImageDetokenizer? imageDetokenizer, ImageVocabulary? vocabulary,
                               SpeechEncoder? speechEncoder)
    {
        SpeechEncoder = speechEncoder;
        _options = options;
        _log = Logger(options);
        _workers = new DecodeWorkers(options.MaxConcurrentRequests);
        Package = package;
        Tokenizer = tokenizer;
        Engine = engine;
        ImageTokenizer = imageTokenizer;
        ImageDetokenizer = imageDetokenizer;
        ImageVocabulary = vocabulary;
    }

    /// <summary>Loads and validates a model folder and creates its sessions.</summary>
    /// <exception cref="ModelPackageException">The folder or a file in it is missing or wrong.</exception>
    /// <exception cref="ExecutionProviderException">No requested execution provider could be created.</exception>
    public static Task<MultimodalPipeline> LoadAsync(string path, PipelineOptions? options = null,
                                                     IProgress<float>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new PipelineOptions();
        if (options.MaxConcurrentRequests < 1)
            throw new InvalidInputException("options.MaxConcurrentRequests", $"is {options.MaxConcurrentRequests}: at least one request must be able to run");
        LimitChecks.Load(options);
        return Task.Run(() =>
        {
            var owned = new List<IDisposable>();
            var log = Logger(options);
            var clock = Stopwatch.StartNew();
            PipelineLog.Loading(log, path, options.Engine, string.Join(",", options.Execution.Providers));
            try
            {
                progress?.Report(0f);
                var package = ModelPackage.Open(path, options.Limits);
                var tokenizer = TextTokenizer.Load(package.TokenizerPath, options.Limits);
                if (tokenizer.VocabularySize > package.Decoder.VocabSize)
                    throw new ModelPackageException(package.TokenizerPath, $"tokenizer has {tokenizer.VocabularySize} tokens but the decoder's vocabulary is {package.Decoder.VocabSize}");
                progress?.Report(0.1f);
                cancellationToken.ThrowIfCancellationRequested();
                IDecodeEngine engine = options.Engine switch
                {
                    EngineKind.GenAi => GenAiDecodeEngine.Create(package),
                    _ => OrtDecodeEngine.Create(package, options.Execution),
                };
                owned.Add(engine);
                progress?.Report(0.6f);
                ImageTokenizer? imageTokenizer = null;
                ImageDetokenizer? imageDetokenizer = null;
                ImageVocabulary? vocabulary = null;
                if (package.Has("image_encoder") || package.Has("image_decoder"))
                {
                    vocabulary = ImageVocabulary.FromManifest(package);
                    if (package.Has("image_encoder")) owned.Add(imageTokenizer = ImageTokenizer.Create(package, options.Execution));
                    cancellationToken.ThrowIfCancellationRequested();
                    if (package.Has("image_decoder")) owned.Add(imageDetokenizer = ImageDetokenizer.Create(package, options.Execution));
                }
                SpeechEncoder? speechEncoder = null;
                if (package.Has("speech_encoder"))
                {
                    if (engine is not OrtDecodeEngine)
                        throw new ModelPackageException(package.ManifestPath, "speech->text decodes against encoder states, which only the 'ort' engine does");
                    owned.Add(speechEncoder = SpeechEncoder.Create(package, options.Execution));
                    var ort = (OrtDecodeEngine)engine;
                    if (!SpeechEncoder.Fits(speechEncoder.CrossType, ort.KvType))
                        throw new ModelPackageException(package.ManifestPath, SpeechEncoder.Mismatch(speechEncoder.CrossType, ort.KvType));
                    // A device cache of the encoder's element type takes the cross K/V where the encoder wrote them.
                    if (ort.Device is { } device && speechEncoder.CrossType == ort.KvType) speechEncoder.KeepCrossOn(device.Info);
                    if (options.Execution.EncoderCudaGraph && speechEncoder.CaptureGraphs(options.Execution) is { } why)
                        PipelineLog.EncoderGraphsUnavailable(log, why);
                }
                progress?.Report(1f);
                var pipeline = new MultimodalPipeline(options, package, tokenizer, engine, imageTokenizer, imageDetokenizer, vocabulary, speechEncoder);
                pipeline.LogLoaded(clock.Elapsed);
                return pipeline;
            }
            catch (Exception e)
            {
                if (e is not OperationCanceledException) PipelineLog.LoadFailed(log, e, path, e.Message);
                foreach (var d in owned) d.Dispose();
                throw;
            }
        }, cancellationToken);
    }

    private static ILogger Logger(PipelineOptions options) =>
        options.LoggerFactory?.CreateLogger<MultimodalPipeline>() ?? (ILogger)NullLogger.Instance;

    private void LogLoaded(TimeSpan elapsed)
    {
        var requested = _options.Execution.Providers;
        string provider = Engine is OrtDecodeEngine o ? o.Provider.ToString() : "Cpu";
        PipelineLog.Loaded(_log, Package.Manifest.Name, Package.Manifest.Family, Package.Manifest.Precision, elapsed.TotalMilliseconds,
                           Engine.Name, provider, string.Join(",", Package.Manifest.Components.Keys));
        if (requested.Count > 0 && requested[0].ToString() != provider)
            PipelineLog.ProviderFallback(_log, string.Join(",", requested), provider);
        if (_options.Execution.CudaGraph)
            PipelineLog.Capture(_log, provider == "Cuda" && Package.Decoder.SharedCache ? "on" : "off",
                                provider == "Cuda" ? (Package.Decoder.SharedCache ? "fused graph on CUDA: captured once per pooled cache on first use" : "reference graphs are not captured")
                                                   : "capture needs the CUDA provider");
    }

    /// <summary>The token ids a request's prompt becomes: begin-of-sequence first where the model wants
    /// it, text parts tokenized, image parts as begin-image, the image's tokens, end-image.</summary>
    /// <exception cref="InvalidInputException">A part this model cannot take, or an unreadable image.</exception>
    /// <exception cref="ObjectDisposedException">The pipeline is disposed.</exception>
    public IReadOnlyList<int> EncodePrompt(GenerationRequest request)
    {
        using var open = _workers.Enter();
        return EncodePrompt(request, new PhaseTimer());
    }

    private IReadOnlyList<int> EncodePrompt(GenerationRequest request, PhaseTimer phases)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (SpeechEncoder is not null) return SpeechDecoderPrompt(request);
        var ids = new List<int>();
        if (Package.Manifest.Tokens is { AddBos: true, Bos: int bos }) ids.Add(bos);
        for (int i = 0; i < request.Parts.Count; i++)
        {
            switch (request.Parts[i])
            {
                case TextPart t:
                    string text = request.UseChatTemplate && Package.Manifest.ChatTemplate?.GetValueOrDefault("user") is { } tpl
                        ? tpl.Replace("{0}", t.Value) : t.Value;
                    ids.AddRange(Tokenizer.Encode(text));
                    break;
                case ImagePart image:
                    ids.AddRange(ImageTokens(image, $"parts[{i}]", phases));
                    break;
                case AudioPart:
                    throw new InvalidInputException($"parts[{i}]", $"model family '{Package.Manifest.Family}' has no speech encoder");
                default:
                    throw new InvalidInputException($"parts[{i}]", "unknown part type");
            }
        }
        return ids;
    }

    /// <summary>Encoder-decoder prompt: decoder start token, then the target-language token.</summary>
    private List<int> SpeechDecoderPrompt(GenerationRequest request)
    {
        var tokens = Package.Manifest.Tokens;
        var languages = tokens.Languages ?? [];
        string lang = request.TargetLanguage ?? languages.Keys.FirstOrDefault() ?? "";
        if (!languages.TryGetValue(lang, out int langId))
            throw new InvalidInputException("TargetLanguage", $"'{lang}' is not one of this model's languages ({string.Join(", ", languages.Keys)})");
        return [tokens.DecoderStart ?? tokens.Eos.FirstOrDefault(), langId];
    }

    /// <summary>Reads the request's single audio part and runs the speech encoder on it.</summary>
    private EncoderStates EncodeAudio(GenerationRequest request, PhaseTimer phases, CancellationToken ct)
    {
        var audio = request.Parts.OfType<AudioPart>().ToList();
        if (audio.Count != 1 || request.Parts.Count != 1)
            throw new InvalidInputException("parts", $"model family '{Package.Manifest.Family}' transcribes exactly one audio part (got {request.Parts.Count} parts, {audio.Count} audio)");
        var part = audio[0];
        float[] features;
        using (phases.Measure("preprocess"))
        {
            if (part.Path is { } file) InputFiles.RequireForRequest(file, "parts[0]");
            var wave = part.Path is { } path
                ? WaveReader.Read(path, Fbank.SampleRate, new AudioOptions { Limits = _options.Limits }, "parts[0]")
                : WaveReader.Read(new MemoryStream(part.Wav ?? []), Fbank.SampleRate, new AudioOptions { Limits = _options.Limits }, "parts[0]");
            features = Fbank.NormaliseAndStack(Fbank.Default.Compute(wave.Samples, _options.Execution.FbankThreads), Fbank.FrameCount(wave.Samples.Length));
        }
        ct.ThrowIfCancellationRequested();
        using (phases.Measure("encode")) return SpeechEncoder!.Encode(features, cancellationToken: ct);
    }

    private List<int> ImageTokens(ImagePart part, string input, PhaseTimer phases)
    {
        if (ImageTokenizer is null || ImageVocabulary is null)
            throw new InvalidInputException(input, $"model family '{Package.Manifest.Family}' has no image encoder");
        var options = new ImageLoaderOptions { Size = ImageTokenizer.ImageSize, Limits = _options.Limits };
        if (part.Path is { } file) InputFiles.RequireForRequest(file, input);
        int length = 3 * options.Size * options.Size;
        var pixels = _pixels.Rent(length);
        long[] codes;
        try
        {
            using (phases.Measure("preprocess"))
                _ = part.Path is { } path
                    ? ImageLoader.LoadPixels(path, options, input, pixels)
                    : ImageLoader.LoadPixels(new MemoryStream(part.Encoded ?? []), options, input, pixels);
            using (phases.Measure("encode")) codes = ImageTokenizer.Encode(pixels.AsMemory(0, length));
        }
        finally
        {
            _pixels.Return(pixels);
        }
        var tokens = new List<int>(ImageTokenizer.TokensPerImage + 2) { ImageVocabulary.BeginImage };
        foreach (long code in codes) tokens.Add(ImageVocabulary.TokenOf((int)code));
        tokens.Add(ImageVocabulary.EndImage);
        return tokens;
    }

    /// <summary>
    /// Streams the generation: one update per token (text delta), then one with the statistics (and,
    /// for image output, the image). Decoding runs on a worker thread, so an awaiting UI thread is
    /// never blocked.
    /// </summary>
    /// <exception cref="PromptTooLongException">The prompt does not fit the context.</exception>
    /// <exception cref="InvalidInputException">A part or option this model cannot take.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled; the pipeline stays usable.</exception>
    /// <exception cref="ObjectDisposedException">The pipeline was disposed before or while the request ran.</exception>
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        ObjectDisposedException.ThrowIf(_workers.IsDisposed, this);
        request.Sampling.Validate();
        LimitChecks.Request(request, _options.Limits);
        var channel = Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _workers.Stopping);
        Action<GenerationRequest, ChannelWriter<GenerationUpdate>, CancellationToken> produce =
            request.Output == OutputModality.Image ? ProduceImage : ProduceText;
        var telemetry = RequestTelemetry.Start(this, request, _log);   // span, request counter, queue-wait clock
        var worker = Dispatch();
        async Task Dispatch()
        {
            try
            {
                await _workers.RunAsync(() =>
                {
                    telemetry.Dequeued();
                    try
                    {
                        produce(request, channel.Writer, stop.Token);
                        channel.Writer.TryComplete();
                    }
                    catch (Exception e)
                    {
                        telemetry.Failed(e);
                        channel.Writer.TryComplete(Disposed(e));
                    }
                }, stop.Token).ConfigureAwait(false);
            }
            catch (Exception e)   // cancelled (or disposed) while waiting for a decode thread
            {
                telemetry.Failed(e);
                channel.Writer.TryComplete(Disposed(e));
            }
        }
        // A request cancelled by the pipeline's disposal (not by its caller) ends with ObjectDisposedException.
        Exception Disposed(Exception e) => e is OperationCanceledException && _workers.Stopping.IsCancellationRequested && !cancellationToken.IsCancellationRequested
            ? new ObjectDisposedException(nameof(MultimodalPipeline), "the pipeline was disposed while the request ran")
            : e;
        try
        {
            await foreach (var update in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                cancellationToken.ThrowIfCancellationRequested();   // tokens already decoded are not delivered after a cancel
                if (update.Stats is { } stats) telemetry.Completed(stats);
                yield return update;
            }
        }
        finally
        {
            stop.Cancel();   // the consumer left early or was cancelled: end the worker and free its state
            await worker.ConfigureAwait(false);
            telemetry.End();
        }
    }

    private void ProduceText(GenerationRequest request, ChannelWriter<GenerationUpdate> writer, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var phases = new PhaseTimer();
        var prompt = EncodePrompt(request, phases);
        if (prompt.Count >= Engine.ContextLength) throw new PromptTooLongException(prompt.Count, Engine.ContextLength);
        // Like transformers' Chameleon, text output never picks image tokens.
        IReadOnlyList<ILogitsProcessor>? processors = ImageVocabulary is { } v ? [new SuppressTokensProcessor(v.ImageTokenIds)] : null;
        using var encoder = SpeechEncoder is null ? null : EncodeAudio(request, phases, ct);
        var prefillStart = clock.Elapsed;
        using var seq = encoder is null
            ? Engine.Start(prompt, request.Sampling, processors, ct)
            : ((OrtDecodeEngine)Engine).StartWithEncoder(encoder, prompt, request.Sampling, processors, ct);
        var prefill = clock.Elapsed;
        phases.Add("prefill", (prefill - prefillStart).TotalMilliseconds);
        var decoder = Tokenizer.CreateStreamingDecoder();
        var tokenMs = new List<double>();
        TimeSpan ttft = default, last = default;
        while (!seq.IsDone)
        {
            int token = seq.GenerateNextToken(ct);
            var now = clock.Elapsed;
            if (seq.Tokens.Count - seq.PromptLength == 1)
            {
                ttft = now;   // the prefill's logits to the first token: TTFT = the phases before it + this one
                phases.Add("first token", (now - prefill).TotalMilliseconds);
            }
            else tokenMs.Add((now - last).TotalMilliseconds);
            last = now;
            writer.TryWrite(new GenerationUpdate { TextDelta = decoder.Append(token), TokenId = token });
        }
        phases.Add("decode", (clock.Elapsed - (ttft == default ? prefill : ttft)).TotalMilliseconds);
        writer.TryWrite(new GenerationUpdate
        {
            TextDelta = decoder.Flush(),
            Stats = new GenerationStats
            {
                Engine = Engine.Name, PromptTokens = seq.PromptLength, GeneratedTokens = seq.Tokens.Count - seq.PromptLength,
                Prefill = prefill, TimeToFirstToken = ttft, Total = clock.Elapsed, TokenMilliseconds = tokenMs, Phases = phases.Milliseconds,
                FinishReason = seq.FinishReason ?? FinishReason.MaxTokens, Tokens = seq.Tokens.Skip(seq.PromptLength).ToArray(),
            },
        });
    }

    private void ProduceImage(GenerationRequest request, ChannelWriter<GenerationUpdate> writer, CancellationToken ct)
    {
        if (ImageDetokenizer is null || ImageVocabulary is null || Package.Manifest.Image is not { } image)
            throw new InvalidInputException("output", $"model family '{Package.Manifest.Family}' has no image decoder");
        if (Engine is not OrtDecodeEngine ort)
            throw new InvalidInputException("engine", "image output runs guided batch decoding, which only the 'ort' engine does");
        var clock = Stopwatch.StartNew();
        var phases = new PhaseTimer();
        var conditional = EncodePrompt(request, phases).Append(ImageVocabulary.BeginImage).ToArray();
        var unconditional = new List<int>();
        if (Package.Manifest.Tokens is { AddBos: true, Bos: int bos }) unconditional.Add(bos);
        unconditional.Add(ImageVocabulary.BeginImage);
        float scale = request.GuidanceScale ?? Package.Manifest.Guidance?.Scale ?? 3f;
        var tokenMs = new List<double>();
        TimeSpan ttft = default, last = default;
        int n = 0;
        var tokens = ClassifierFreeGuidance.Generate(ort, conditional, unconditional, image.TokensPerImage, scale, request.Sampling,
            new ImageSpanConstraint(Engine.VocabularySize, ImageVocabulary.ImageTokenIds), token =>
            {
                var now = clock.Elapsed;
                if (++n == 1) ttft = now;
                else tokenMs.Add((now - last).TotalMilliseconds);
                last = now;
                writer.TryWrite(new GenerationUpdate { TokenId = token });
            }, ct);
        phases.Add("decode", clock.Elapsed.TotalMilliseconds - phases.Milliseconds.Values.Sum());   // guided prefill + decode
        var codes = tokens.Select(ImageVocabulary.CodeOf).ToArray();
        float[] pixels;
        byte[] png;
        using (phases.Measure("detokenize"))
        {
            pixels = ImageDetokenizer.Decode(codes);
            png = ImageDetokenizer.ToPng(pixels, image.Size);
        }
        writer.TryWrite(new GenerationUpdate
        {
            Image = new GeneratedImage(png, image.Size, image.Size, codes, pixels),
            Stats = new GenerationStats
            {
                Engine = Engine.Name, PromptTokens = conditional.Length, GeneratedTokens = tokens.Length, TimeToFirstToken = ttft,
                Total = clock.Elapsed, TokenMilliseconds = tokenMs, FinishReason = FinishReason.MaxTokens, Tokens = tokens,
                Phases = phases.Milliseconds,
            },
        });
    }

    /// <summary>Runs a request to the end and returns the generated text and statistics.</summary>
    public async Task<(string Text, GenerationStats Stats)> GenerateTextAsync(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        var text = new System.Text.StringBuilder();
        GenerationStats? stats = null;
        await foreach (var u in GenerateAsync(request, cancellationToken).ConfigureAwait(false))
        {
            text.Append(u.TextDelta);
            stats = u.Stats ?? stats;
        }
        return (text.ToString(), stats!);
    }

    /// <summary>Runs an image request to the end and returns the image and statistics.</summary>
    public async Task<(GeneratedImage Image, GenerationStats Stats)> GenerateImageAsync(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        GeneratedImage? image = null;
        GenerationStats? stats = null;
        await foreach (var u in GenerateAsync(request with { Output = OutputModality.Image }, cancellationToken).ConfigureAwait(false))
        {
            image = u.Image ?? image;
            stats = u.Stats ?? stats;
        }
        return (image!, stats!);
    }

    /// <summary>Cancels the requests in flight and waits for them (they end with <see cref="ObjectDisposedException"/>,
    /// as do queued and later ones), then frees the sessions and native buffers.</summary>
    public void Dispose()
    {
        _workers.Dispose();   // nothing runs on the sessions after this returns
        Engine.Dispose();
        ImageTokenizer?.Dispose();
        ImageDetokenizer?.Dispose();
        SpeechEncoder?.Dispose();
    }

    /// <summary>Same as <see cref="Dispose"/>.</summary>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
