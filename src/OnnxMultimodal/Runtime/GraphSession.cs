using Microsoft.ML.OnnxRuntime;

namespace OnnxMultimodal.Runtime;

/// <summary>
/// A whole-graph component (image tokenizer, image detokenizer, speech encoder): one session whose
/// I/O names were checked at load, run once per request with cancellation, errors naming the file.
/// </summary>
internal sealed class GraphSession : IDisposable
{
    private readonly InferenceSession _session;
    private readonly string _file;

    public IReadOnlyList<string> Inputs { get; }
    public IReadOnlyList<string> Outputs { get; }

    /// <exception cref="ModelPackageException">The graph does not load or lacks an expected name.</exception>
    /// <exception cref="ExecutionProviderException">No requested execution provider could be created.</exception>
    public GraphSession(string path, ExecutionOptions execution, IReadOnlyList<string> inputs, IReadOnlyList<string> outputs)
    {
        // Run once per request with shapes that vary: never under CUDA-graph capture (that is for decode steps).
        (_session, _) = SessionFactory.CreateChecked(path, execution with { CudaGraph = false }, inputs, outputs);
        _file = Path.GetFileName(path);
        Inputs = inputs;
        Outputs = outputs;
    }

    /// <summary>Runs the graph; the caller owns the returned outputs.</summary>
    /// <exception cref="InferenceException">ONNX Runtime failed.</exception>
    /// <exception cref="OperationCanceledException">Cancelled during the run.</exception>
    public IDisposableReadOnlyCollection<OrtValue> Run(IReadOnlyCollection<OrtValue> inputs, CancellationToken cancellationToken = default)
    {
        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(static o => ((RunOptions)o!).Terminate = true, runOptions);
        try
        {
            return _session.Run(runOptions, Inputs.ToArray(), inputs, Outputs.ToArray());
        }
        catch (OnnxRuntimeException e)
        {
            cancellationToken.ThrowIfCancellationRequested();
            throw new InferenceException(_file, e.Message, e);
        }
    }

    /// <summary>The symbolic name of each dimension of input <paramref name="name"/> ("" where the dimension is fixed).</summary>
    public IReadOnlyList<string> InputDimensionNames(string name) => _session.InputMetadata[name].SymbolicDimensions;

    /// <summary>The element type of input <paramref name="name"/>.</summary>
    public Microsoft.ML.OnnxRuntime.Tensors.TensorElementType InputType(string name) => _session.InputMetadata[name].ElementDataType;

    /// <summary>The element type of output <paramref name="name"/>.</summary>
    public Microsoft.ML.OnnxRuntime.Tensors.TensorElementType OutputType(string name) => _session.OutputMetadata[name].ElementDataType;

    /// <summary>Runs the graph with the outputs whose index is in <paramref name="onDevice"/> left where the
    /// graph computed them, in memory of <paramref name="device"/> (no copy to the host); the others on
    /// the host. The caller owns the returned outputs, in <see cref="Outputs"/> order.</summary>
    /// <exception cref="InferenceException">ONNX Runtime failed.</exception>
    /// <exception cref="OperationCanceledException">Cancelled during the run.</exception>
    public IDisposableReadOnlyCollection<OrtValue> Run(IReadOnlyList<OrtValue> inputs, OrtMemoryInfo device, Func<int, bool> onDevice,
                                                        CancellationToken cancellationToken = default)
    {
        using var runOptions = new RunOptions();
        using var registration = cancellationToken.Register(static o => ((RunOptions)o!).Terminate = true, runOptions);
        using var binding = _session.CreateIoBinding();
        try
        {
            for (int i = 0; i < Inputs.Count; i++) binding.BindInput(Inputs[i], inputs[i]);
            for (int i = 0; i < Outputs.Count; i++) binding.BindOutputToDevice(Outputs[i], onDevice(i) ? device : OrtMemoryInfo.DefaultInstance);
            _session.RunWithBinding(runOptions, binding);
            return binding.GetOutputValues();
        }
        catch (OnnxRuntimeException e)
        {
            cancellationToken.ThrowIfCancellationRequested();
            throw new InferenceException(_file, e.Message, e);
        }
    }

    public void Dispose() => _session.Dispose();
}
