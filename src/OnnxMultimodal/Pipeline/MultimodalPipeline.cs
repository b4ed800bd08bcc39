using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Runtime;
using OnnxMultimodal.Text;

namespace OnnxMultimodal.Pipeline;

/// <summary>Which decode loop runs the text decoder.</summary>
public enum EngineKind
{
    /// <summary>Ours: IOBinding, caller-owned loop, every execution provider.</summary>
    Ort,
    /// <summary>ORT GenAI's Generator (CPU here).</summary>
    GenAi,
}

/// <summary>How a model is loaded. Immutable.</summary>
public sealed record PipelineOptions
{
    public EngineKind Engine { get; init; } = EngineKind.Ort;
    public ExecutionOptions Execution { get; init; } = ExecutionOptions.Cpu;
}

/// <summary>
/// The public facade: load a model folder once, then stream generations from any number of threads.
/// Each request owns its own decode state; the sessions are shared.
/// </summary>
public sealed class MultimodalPipeline : IDisposable, IAsyncDisposable
{
    public ModelPackage Package { get; }
    public TextTokenizer Tokenizer { get; }
    public IDecodeEngine Engine { get; }

    private MultimodalPipeline(ModelPackage package, TextTokenizer tokenizer, IDecodeEngine engine)
    {
        Package = package;
        Tokenizer = tokenizer;
        Engine = engine;
    }

    /// <summary>Loads and validates a model folder and creates its sessions.</summary>
    /// <exception cref="ModelPackageException">The folder or a file in it is missing or wrong.</exception>
    /// <exception cref="ExecutionProviderException">No requested execution provider could be created.</exception>
    public static Task<MultimodalPipeline> LoadAsync(string path, PipelineOptions? options = null,
                                                     IProgress<float>? progress = null, CancellationToken cancellationToken = default)
    {
        options ??= new PipelineOptions();
        return Task.Run(() =>
        {
            progress?.Report(0f);
            var package = ModelPackage.Open(path);
            cancellationToken.ThrowIfCancellationRequested();
            var tokenizer = TextTokenizer.Load(package.TokenizerPath);
            if (tokenizer.VocabularySize > package.Decoder.VocabSize)
                throw new ModelPackageException(package.TokenizerPath, $"tokenizer has {tokenizer.VocabularySize} tokens but the decoder's vocabulary is {package.Decoder.VocabSize}");
            progress?.Report(0.2f);
            cancellationToken.ThrowIfCancellationRequested();
            IDecodeEngine engine = options.Engine switch
            {
                EngineKind.GenAi => GenAiDecodeEngine.Create(package),
                _ => OrtDecodeEngine.Create(package, options.Execution),
            };
            progress?.Report(1f);
            return new MultimodalPipeline(package, tokenizer, engine);
        }, cancellationToken);
    }

    /// <summary>The token ids a request's prompt becomes (begin-of-sequence first where the model wants it).</summary>
    /// <exception cref="InvalidInputException">A part this model cannot take.</exception>
    public IReadOnlyList<int> EncodePrompt(GenerationRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
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
                case ImagePart:
                    throw new InvalidInputException($"parts[{i}]", $"model family '{Package.Manifest.Family}' has no image encoder");
                case AudioPart:
                    throw new InvalidInputException($"parts[{i}]", $"model family '{Package.Manifest.Family}' has no speech encoder");
                default:
                    throw new InvalidInputException($"parts[{i}]", "unknown part type");
            }
        }
        return ids;
    }

    /// <summary>
    /// Streams the generation: one update per token (text delta), then one with the statistics.
    /// Decoding runs on a worker thread, so a UI thread that awaits this is never blocked.
    /// </summary>
    /// <exception cref="PromptTooLongException">The prompt does not fit the context.</exception>
    /// <exception cref="OperationCanceledException">The token was cancelled; the pipeline stays usable.</exception>
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var prompt = EncodePrompt(request);
        request.Sampling.Validate();
        if (prompt.Count >= Engine.ContextLength) throw new PromptTooLongException(prompt.Count, Engine.ContextLength);

        var channel = Channel.CreateUnbounded<GenerationUpdate>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var worker = Task.Run(() => Produce(prompt, request.Sampling, channel.Writer, stop.Token), stop.Token);
        try
        {
            await foreach (var update in channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                cancellationToken.ThrowIfCancellationRequested();   // tokens already decoded are not delivered after a cancel
                yield return update;
            }
        }
        finally
        {
            stop.Cancel();   // the consumer left early or was cancelled: end the worker and free its state
            try { await worker.ConfigureAwait(false); } catch (OperationCanceledException) { }
        }
        await worker.ConfigureAwait(false);   // surfaces the worker's error, if any
    }

    private void Produce(IReadOnlyList<int> prompt, SamplingOptions sampling, ChannelWriter<GenerationUpdate> writer, CancellationToken ct)
    {
        try
        {
            var clock = Stopwatch.StartNew();
            using var seq = Engine.Start(prompt, sampling, ct);
            var prefill = clock.Elapsed;
            var decoder = Tokenizer.CreateStreamingDecoder();
            var tokenMs = new List<double>();
            TimeSpan ttft = default, last = default;
            while (!seq.IsDone)
            {
                int token = seq.GenerateNextToken(ct);
                var now = clock.Elapsed;
                if (seq.Tokens.Count - seq.PromptLength == 1) ttft = now;
                else tokenMs.Add((now - last).TotalMilliseconds);
                last = now;
                writer.TryWrite(new GenerationUpdate { TextDelta = decoder.Append(token), TokenId = token });
            }
            string tail = decoder.Flush();
            writer.TryWrite(new GenerationUpdate
            {
                TextDelta = tail,
                Stats = new GenerationStats
                {
                    Engine = Engine.Name,
                    PromptTokens = seq.PromptLength,
                    GeneratedTokens = seq.Tokens.Count - seq.PromptLength,
                    Prefill = prefill,
                    TimeToFirstToken = ttft,
                    Total = clock.Elapsed,
                    TokenMilliseconds = tokenMs,
                    FinishReason = seq.FinishReason ?? FinishReason.MaxTokens,
                    Tokens = seq.Tokens.Skip(seq.PromptLength).ToArray(),
                },
            });
            writer.TryComplete();
        }
        catch (Exception e)
        {
            writer.TryComplete(e);
            throw;
        }
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

    public void Dispose() => Engine.Dispose();

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
