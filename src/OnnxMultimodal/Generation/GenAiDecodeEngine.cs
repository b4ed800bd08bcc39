using Microsoft.ML.OnnxRuntimeGenAI;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Generation;

/// <summary>
/// Decoding by ORT GenAI's <see cref="Generator"/>: its KV cache, its search and sampling. Here it
/// runs on CPU (the CUDA build of GenAI is not available to this project); it is the yardstick our
/// own engine is measured against.
/// </summary>
internal sealed class GenAiDecodeEngine : IDecodeEngine
{
    private static readonly Lazy<OgaHandle> s_handle = new(() =>
    {
        var handle = new OgaHandle();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => handle.Dispose();
        return handle;
    });

    /// <summary>Why the GenAI native library does not load, or null when it does. Resolved as its P/Invoke
    /// calls resolve it (the managed assembly's load context and probing paths), once.</summary>
    private static readonly Lazy<string?> NativeProblem = new(() =>
    {
        try
        {
            return System.Runtime.InteropServices.NativeLibrary.TryLoad("onnxruntime-genai", typeof(Config).Assembly, null, out _)
                ? null : "not found on the probing paths";
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException or FileNotFoundException or FileLoadException)
        {
            return e.Message;
        }
    });

    private readonly Model _model;
    private readonly int[] _defaultStops;

    public string Name => "genai";
    public int ContextLength { get; }
    public int VocabularySize { get; }

    private GenAiDecodeEngine(Model model, ModelPackage package)
    {
        _model = model;
        ContextLength = package.Decoder.ContextLength;
        VocabularySize = package.Decoder.VocabSize;
        _defaultStops = package.Manifest.Tokens.Eos;
    }

    /// <exception cref="ModelPackageException">No genai_config.json, or ORT GenAI refuses the model.</exception>
    /// <exception cref="ExecutionProviderException">The ORT GenAI native library is missing.</exception>
    public static GenAiDecodeEngine Create(ModelPackage package)
    {
        string config = Path.Combine(package.Directory, "genai_config.json");
        if (!package.HasGenAiConfig)
            throw new ModelPackageException(config, "missing: the genai engine needs ORT GenAI's config (use --engine ort for this model)");
        // A GenAI object whose constructor failed for want of the native library still has a finalizer,
        // which calls into that library again on the finalizer thread and kills the process: so no GenAI
        // object is created until the library is known to load.
        if (NativeProblem.Value is { } problem)
            throw new ExecutionProviderException($"the ORT GenAI native library (onnxruntime-genai) does not load ({problem}); reference Microsoft.ML.OnnxRuntimeGenAI in the application");
        try
        {
            _ = s_handle.Value;
            using var cfg = new Config(package.Directory);
            cfg.ClearProviders();   // CPU
            return new GenAiDecodeEngine(new Model(cfg), package);
        }
        catch (OnnxRuntimeGenAIException e)
        {
            throw new ModelPackageException(config, $"ORT GenAI cannot load the model: {e.Message}", e);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException or TypeInitializationException)
        {
            throw new ExecutionProviderException("the ORT GenAI native library (onnxruntime-genai) was not found; reference Microsoft.ML.OnnxRuntimeGenAI in the application", e);
        }
    }

    /// <remarks>Without processors GenAI's own search chooses the tokens. With processors GenAI runs the
    /// model and keeps the cache, and our sampler chooses from the processed logits (token ids go back
    /// in with <c>AppendTokens</c>).</remarks>
    public IDecodeSequence Start(IReadOnlyList<int> promptIds, SamplingOptions sampling,
                                 IReadOnlyList<ILogitsProcessor>? processors = null, CancellationToken cancellationToken = default)
    {
        sampling.Validate();
        if (promptIds.Count == 0) throw new InvalidInputException("prompt", "is empty: at least one token is needed");
        if (promptIds.Count >= ContextLength) throw new PromptTooLongException(promptIds.Count, ContextLength);
        foreach (int id in promptIds)
            if ((uint)id >= (uint)VocabularySize)
                throw new InvalidInputException("prompt", $"token id {id} is outside the vocabulary of {VocabularySize}");
        cancellationToken.ThrowIfCancellationRequested();
        if (processors is { Count: > 0 })
        {
            var manual = new AppendedTokensSequence(this, promptIds, sampling, processors);
            try
            {
                manual.Prefill();
                return manual;
            }
            catch
            {
                manual.Dispose();
                throw;
            }
        }
        var seq = new Sequence(this, promptIds, sampling);
        try
        {
            seq.Prefill();
            return seq;
        }
        catch
        {
            seq.Dispose();
            throw;
        }
    }

    public void Dispose() => _model.Dispose();

    private static float[] LastLogits(Generator generator)
    {
        using var logits = generator.GetOutput("logits");
        var all = logits.GetData<float>();
        int v = (int)logits.Shape()[^1];
        return all[^v..].ToArray();
    }

    /// <summary>GenAI runs the model and owns the cache; our sampler and processors choose each token.</summary>
    private sealed class AppendedTokensSequence : DecodeSequenceBase
    {
        private readonly GeneratorParams _params;
        private readonly Generator _generator;
        private readonly int[] _one = new int[1];
        private float[] _prefill = [];
        private float[] _logits = [];

        public AppendedTokensSequence(GenAiDecodeEngine engine, IReadOnlyList<int> prompt, SamplingOptions s, IReadOnlyList<ILogitsProcessor> processors)
            : base(prompt, s, engine._defaultStops, engine.ContextLength, processors)
        {
            _params = new GeneratorParams(engine._model);
            try
            {
                _params.SetSearchOption("max_length", (int)Math.Min(engine.ContextLength, (long)prompt.Count + s.MaxNewTokens));
                _generator = new Generator(engine._model, _params);
            }
            catch
            {
                _params.Dispose();
                throw;
            }
        }

        public void Prefill()
        {
            try
            {
                _generator.AppendTokens(Tokens.ToArray());
                _logits = LastLogits(_generator);
                _prefill = _logits.ToArray();
            }
            catch (OnnxRuntimeGenAIException e)
            {
                throw new InferenceException("decoder.onnx (ORT GenAI)", e.Message, e);
            }
        }

        public override ReadOnlySpan<float> PrefillLogits => _prefill;
        protected override Span<float> NextLogits => _logits;

        protected override void RunStep(int token, CancellationToken cancellationToken)
        {
            _one[0] = token;
            try
            {
                _generator.AppendTokens(_one);
                _logits = LastLogits(_generator);
            }
            catch (OnnxRuntimeGenAIException e)
            {
                throw new InferenceException("decoder.onnx (ORT GenAI)", e.Message, e);
            }
        }

        protected override void ReleaseNative()
        {
            _generator.Dispose();
            _params.Dispose();
        }
    }

    private sealed class Sequence : IDecodeSequence
    {
        private readonly GeneratorParams _params;
        private readonly Generator _generator;
        private readonly StopConditions _stops;
        private readonly List<int> _tokens;
        private float[] _prefillLogits = [];

        public Sequence(GenAiDecodeEngine engine, IReadOnlyList<int> prompt, SamplingOptions s)
        {
            _tokens = new List<int>(prompt);
            PromptLength = prompt.Count;
            _stops = new StopConditions(s, engine._defaultStops, engine.ContextLength, prompt.Count);
            _params = new GeneratorParams(engine._model);
            try
            {
                _params.SetSearchOption("max_length", _stops.MaxLength);
                if (s.IgnoreStopTokens) _params.SetSearchOption("min_length", _stops.MaxLength);
                _params.SetSearchOption("do_sample", !s.IsGreedy);
                if (!s.IsGreedy)
                {
                    _params.SetSearchOption("temperature", s.Temperature);
                    _params.SetSearchOption("top_k", s.TopK > 0 ? s.TopK : engine.VocabularySize);
                    _params.SetSearchOption("top_p", s.TopP);
                    _params.SetSearchOption("random_seed", (double)((s.Seed ?? (ulong)Random.Shared.NextInt64()) & int.MaxValue));
                }
                _params.SetSearchOption("repetition_penalty", s.RepetitionPenalty);
                _generator = new Generator(engine._model, _params);
            }
            catch
            {
                _params.Dispose();
                throw;
            }
        }

        public IReadOnlyList<int> Tokens => _tokens;
        public int PromptLength { get; }
        public ReadOnlySpan<float> PrefillLogits => _prefillLogits;
        public bool IsDone => FinishReason is not null;
        public FinishReason? FinishReason { get; private set; }

        public void Prefill()
        {
            try
            {
                _generator.AppendTokens(_tokens.ToArray());
                _prefillLogits = LastLogits(_generator);
            }
            catch (OnnxRuntimeGenAIException e)
            {
                throw new InferenceException("decoder.onnx (ORT GenAI)", e.Message, e);
            }
        }

        public int GenerateNextToken(CancellationToken cancellationToken = default)
        {
            if (IsDone) throw new InvalidOperationException($"the sequence is done ({FinishReason})");
            if (cancellationToken.IsCancellationRequested)
            {
                FinishReason = Generation.FinishReason.Cancelled;
                cancellationToken.ThrowIfCancellationRequested();
            }
            try
            {
                _generator.GenerateNextToken();
                int token = _generator.GetSequence(0)[^1];
                _tokens.Add(token);
                FinishReason = _stops.Check(token, _tokens.Count)
                               ?? (_generator.IsDone() ? Generation.FinishReason.StopToken : null);
                return token;
            }
            catch (OnnxRuntimeGenAIException e)
            {
                throw new InferenceException("decoder.onnx (ORT GenAI)", e.Message, e);
            }
        }

        public void Dispose()
        {
            _generator.Dispose();
            _params.Dispose();
        }
    }
}
