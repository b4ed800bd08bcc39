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

    public void Dispose() => _session.Dispose();
}
