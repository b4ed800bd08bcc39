using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Generation;

/// <summary>
/// Our decode loop over the ONNX Runtime C# API. Every step runs through an <see cref="OrtIoBinding"/>:
/// inputs are OrtValues over pinned buffers owned by the sequence, next-token logits land directly in
/// a preallocated [vocab] buffer, and the present KV outputs stay where ONNX Runtime put them and are
/// bound as the next step's past (no copy of the cache, ever).
/// </summary>
public sealed class OrtDecodeEngine : IDecodeEngine
{
    private static int s_liveSequences;

    private readonly InferenceSession _session;
    private readonly DecoderManifest _decoder;
    private readonly int[] _defaultStops;
    private readonly long[] _ones;   // attention mask source: every position valid (batch 1, no padding)

    public string Name => "ort";
    public int ContextLength => _decoder.ContextLength;
    public int VocabularySize => _decoder.VocabSize;
    public ExecutionProviderKind Provider { get; }

    /// <summary>Sequences not yet disposed, across all engines (tests use it to prove nothing leaks).</summary>
    public static int LiveSequences => Volatile.Read(ref s_liveSequences);

    private OrtDecodeEngine(InferenceSession session, ExecutionProviderKind provider, DecoderManifest decoder, int[] stops)
    {
        _session = session;
        Provider = provider;
        _decoder = decoder;
        _defaultStops = stops;
        _ones = Enumerable.Repeat(1L, decoder.ContextLength).ToArray();
    }

    /// <exception cref="ModelPackageException">The graph does not load or its I/O names do not match the manifest.</exception>
    /// <exception cref="ExecutionProviderException">No requested execution provider could be created.</exception>
    public static OrtDecodeEngine Create(ModelPackage package, ExecutionOptions execution)
    {
        var d = package.Decoder;
        if (d.KvCache != "concat")
            throw new ModelPackageException(package.DecoderPath, $"kv_cache '{d.KvCache}' needs the device-resident engine, which this build does not include");
        var (session, provider) = SessionFactory.Create(package.DecoderPath, execution);
        try
        {
            var inputs = new List<string> { d.InputName("input_ids"), d.InputName("attention_mask"), d.InputName("position_ids") };
            var outputs = new List<string> { d.OutputName("logits") };
            for (int i = 0; i < d.NumLayers; i++)
            {
                inputs.Add(d.PastKey(i)); inputs.Add(d.PastValue(i));
                outputs.Add(d.PresentKey(i)); outputs.Add(d.PresentValue(i));
            }
            ModelPackage.CheckNames(package.DecoderPath, session.InputMetadata.Keys, inputs, "inputs");
            ModelPackage.CheckNames(package.DecoderPath, session.OutputMetadata.Keys, outputs, "outputs");
            return new OrtDecodeEngine(session, provider, d, package.Manifest.Tokens.Eos);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    public IDecodeSequence Start(IReadOnlyList<int> promptIds, SamplingOptions sampling, CancellationToken cancellationToken = default)
        => Start(promptIds, sampling, null, cancellationToken);

    /// <summary>Starts a sequence with extra logits processors (constraints, guidance).</summary>
    public IDecodeSequence Start(IReadOnlyList<int> promptIds, SamplingOptions sampling, IReadOnlyList<ILogitsProcessor>? processors,
                                 CancellationToken cancellationToken = default)
    {
        foreach (int id in promptIds)
            if ((uint)id >= (uint)_decoder.VocabSize)
                throw new InvalidInputException("prompt", $"token id {id} is outside the vocabulary of {_decoder.VocabSize}");
        var seq = new Sequence(this, promptIds, sampling, processors);
        try
        {
            seq.Prefill(cancellationToken);
            return seq;
        }
        catch
        {
            seq.Dispose();
            throw;
        }
    }

    public void Dispose() => _session.Dispose();

    private sealed class Sequence : DecodeSequenceBase
    {
        private readonly OrtDecodeEngine _e;
        private readonly DecoderManifest _d;
        private readonly OrtIoBinding _binding;
        private readonly RunOptions _runOptions = new();
        private readonly OrtValue[] _past;                 // [2 * layers]: key, value per layer; [1, kvH, len, hd]
        private readonly long[] _stepIds = new long[1];    // decode-step input_ids [1,1]
        private readonly long[] _stepPos = new long[1];    // decode-step position_ids [1,1]
        private readonly OrtValue _stepIdsValue, _stepPosValue;
        private readonly float[] _stepLogits;              // [vocab]
        private readonly OrtValue _stepLogitsValue;        // [1,1,vocab] over _stepLogits
        private float[] _prefillLogits = [];               // [S, vocab]
        private bool _prefilled;

        public Sequence(OrtDecodeEngine engine, IReadOnlyList<int> prompt, SamplingOptions sampling, IReadOnlyList<ILogitsProcessor>? processors)
            : base(prompt, sampling, engine._defaultStops, engine.ContextLength, processors)
        {
            _e = engine;
            _d = engine._decoder;
            Interlocked.Increment(ref s_liveSequences);
            _binding = engine._session.CreateIoBinding();
            _past = new OrtValue[2 * _d.NumLayers];
            _stepIdsValue = OrtValue.CreateTensorValueFromMemory(_stepIds, [1, 1]);
            _stepPosValue = OrtValue.CreateTensorValueFromMemory(_stepPos, [1, 1]);
            _stepLogits = new float[_d.VocabSize];
            _stepLogitsValue = OrtValue.CreateTensorValueFromMemory(_stepLogits, [1, 1, _d.VocabSize]);
        }

        /// <summary>All prompt positions' logits, [S * vocab] (for checks against the reference).</summary>
        public ReadOnlySpan<float> AllPrefillLogits => _prefillLogits;

        public override ReadOnlySpan<float> PrefillLogits =>
            _prefillLogits.AsSpan((PromptLength - 1) * _d.VocabSize, _d.VocabSize);

        protected override Span<float> NextLogits => _prefilled ? _stepLogits : _prefillLogits.AsSpan((PromptLength - 1) * _d.VocabSize, _d.VocabSize);

        public void Prefill(CancellationToken ct)
        {
            int s = PromptLength;
            var ids = new long[s];
            var pos = new long[s];
            for (int i = 0; i < s; i++) { ids[i] = Tokens[i]; pos[i] = i; }
            _prefillLogits = new float[s * _d.VocabSize];
            for (int i = 0; i < _past.Length; i++)
                _past[i] = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, TensorElementType.Float, [1, _d.NumKvHeads, 0, _d.HeadDim]);
            using var idsValue = OrtValue.CreateTensorValueFromMemory(ids, [1, s]);
            using var posValue = OrtValue.CreateTensorValueFromMemory(pos, [1, s]);
            using var logitsValue = OrtValue.CreateTensorValueFromMemory(_prefillLogits, [1, s, _d.VocabSize]);
            Run(idsValue, posValue, total: s, logitsValue, ct);
        }

        protected override void RunStep(int token, int position, CancellationToken ct)
        {
            _stepIds[0] = token;     // [1,1]
            _stepPos[0] = position;  // [1,1]
            Run(_stepIdsValue, _stepPosValue, total: position + 1, _stepLogitsValue, ct);
            _prefilled = true;
        }

        private void Run(OrtValue ids, OrtValue positions, int total, OrtValue logits, CancellationToken ct)
        {
            // attention_mask [1, total]: a view of the engine's shared row of ones.
            using var mask = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _e._ones.AsMemory(0, total), [1, total]);
            _binding.ClearBoundInputs();
            _binding.ClearBoundOutputs();
            _binding.BindInput(_d.InputName("input_ids"), ids);
            _binding.BindInput(_d.InputName("attention_mask"), mask);
            _binding.BindInput(_d.InputName("position_ids"), positions);
            for (int l = 0; l < _d.NumLayers; l++)
            {
                _binding.BindInput(_d.PastKey(l), _past[2 * l]);
                _binding.BindInput(_d.PastValue(l), _past[2 * l + 1]);
            }
            _binding.BindOutput(_d.OutputName("logits"), logits);
            for (int l = 0; l < _d.NumLayers; l++)
            {
                _binding.BindOutputToDevice(_d.PresentKey(l), OrtMemoryInfo.DefaultInstance);
                _binding.BindOutputToDevice(_d.PresentValue(l), OrtMemoryInfo.DefaultInstance);
            }
            using (ct.Register(static o => ((RunOptions)o!).Terminate = true, _runOptions))
            {
                try
                {
                    _e._session.RunWithBinding(_runOptions, _binding);
                }
                catch (OnnxRuntimeException e)
                {
                    _runOptions.Terminate = false;
                    ct.ThrowIfCancellationRequested();
                    throw new InferenceException("decoder.onnx", e.Message, e);
                }
            }
            ct.ThrowIfCancellationRequested();
            // Outputs come back in binding order: logits, then present key/value per layer.
            var outs = _binding.GetOutputValues();
            outs[0].Dispose();
            for (int i = 0; i < _past.Length; i++)
            {
                _past[i].Dispose();
                _past[i] = outs[i + 1];
            }
        }

        protected override void ReleaseNative()
        {
            foreach (var v in _past) v?.Dispose();
            _stepIdsValue.Dispose();
            _stepPosValue.Dispose();
            _stepLogitsValue.Dispose();
            _binding.Dispose();
            _runOptions.Dispose();
            Interlocked.Decrement(ref s_liveSequences);
        }
    }

    /// <summary>Test hook: all prompt positions' logits of a started sequence ([S * vocab]).</summary>
    internal static ReadOnlySpan<float> AllPrefillLogits(IDecodeSequence sequence) => ((Sequence)sequence).AllPrefillLogits;
}
