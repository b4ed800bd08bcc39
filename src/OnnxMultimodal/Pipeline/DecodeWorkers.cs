namespace OnnxMultimodal.Pipeline;

/// <summary>
/// The threads that run requests, and the gate that keeps the pipeline's native state alive while
/// anything uses it. ONNX Runtime's CUDA provider keeps per-thread state (cuBLAS and cuDNN handles,
/// workspaces), so a request that lands on a fresh thread-pool thread pays for building it inside its
/// prefill: on an H200 that made a 194-token 7B prefill 3-4x slower than on a warm thread. Here each
/// request takes the lowest-numbered idle worker, so one request at a time always runs on worker 0, and
/// N concurrent requests warm N workers once. Workers start on first use.
/// <para>
/// Dispose order: refuse new work, cancel <see cref="Stopping"/> (in-flight runs terminate at the next
/// token or inside <c>Session.Run</c>), fault every queued job with <see cref="ObjectDisposedException"/>,
/// wait until every running job and every <see cref="Enter"/> lease has ended, then end the threads. Only
/// after that may the owner free sessions and native buffers.
/// </para>
/// </summary>
internal sealed class DecodeWorkers : IDisposable
{
    private readonly Worker?[] _workers;
    private readonly bool[] _busy;
    private readonly SemaphoreSlim _free;
    private readonly CancellationTokenSource _stopping = new();
    private readonly object _lock = new();
    private int _active;                       // running jobs + leases; guarded by _lock
    private bool _disposed;

    public DecodeWorkers(int count)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "at least one worker");
        _workers = new Worker?[count];
        _busy = new bool[count];
        _free = new SemaphoreSlim(count, count);
        Stopping = _stopping.Token;
    }

    /// <summary>Cancelled when disposal begins; every job links it into its own token.</summary>
    public CancellationToken Stopping { get; }

    /// <summary>Whether disposal has begun.</summary>
    public bool IsDisposed { get { lock (_lock) return _disposed; } }

    /// <summary>Managed thread ids of the workers started so far (tests).</summary>
    internal IReadOnlyList<int> ThreadIds
    {
        get { lock (_lock) return _workers.Where(w => w is not null).Select(w => w!.ThreadId).ToArray(); }
    }

    /// <summary>Holds the pipeline open for work done on the caller's thread (disposal waits for it).</summary>
    /// <exception cref="ObjectDisposedException">Disposal has begun.</exception>
    public Lease Enter()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, typeof(MultimodalPipeline));
            _active++;
        }
        return new Lease(this);
    }

    private void Exit()
    {
        lock (_lock)
        {
            if (--_active == 0) Monitor.PulseAll(_lock);
        }
    }

    /// <summary>Runs <paramref name="job"/> on an idle worker, waiting for one if all are busy.</summary>
    /// <exception cref="OperationCanceledException">Cancelled while waiting for a worker (the job did not run).</exception>
    /// <exception cref="ObjectDisposedException">Disposal began before the job could start (the job did not run).</exception>
    public async Task RunAsync(Action job, CancellationToken cancellationToken)
    {
        using (var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, Stopping))
        {
            try
            {
                await _free.WaitAsync(wait.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (Stopping.IsCancellationRequested)
            {
                throw new ObjectDisposedException(nameof(MultimodalPipeline), "the pipeline was disposed while the request waited for a decode thread");
            }
        }
        int index;
        Worker worker;
        lock (_lock)
        {
            if (_disposed) { _free.Release(); throw new ObjectDisposedException(nameof(MultimodalPipeline)); }
            index = Array.IndexOf(_busy, false);
            _busy[index] = true;
            _active++;
            worker = _workers[index] ??= new Worker(index);
        }
        try
        {
            await worker.Run(job).ConfigureAwait(false);
        }
        finally
        {
            lock (_lock) _busy[index] = false;
            _free.Release();
            Exit();
        }
    }

    /// <summary>Cancels running work, faults queued work, waits for both, then ends the threads.
    /// Called from a decode thread itself (a job disposing its own pipeline), it does not wait for that job.</summary>
    public void Dispose()
    {
        Worker?[] workers;
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            workers = _workers.ToArray();
        }
        _stopping.Cancel();   // queued waiters throw ObjectDisposedException; running jobs see cancellation
        bool onWorker = workers.Any(w => w is not null && w.ThreadId == Environment.CurrentManagedThreadId);
        lock (_lock)
        {
            // A job that calls Dispose on its own decode thread would wait for itself forever.
            while (_active > (onWorker ? 1 : 0)) Monitor.Wait(_lock);
        }
        foreach (var w in workers) w?.Stop(join: !onWorker);
    }

    /// <summary>Keeps the pipeline open until disposed.</summary>
    internal readonly struct Lease(DecodeWorkers owner) : IDisposable
    {
        public void Dispose() => owner.Exit();
    }

    private sealed class Worker
    {
        private readonly Thread _thread;
        private readonly SemaphoreSlim _ready = new(0);
        private Handover? _next;
        private volatile bool _stop;

        public int ThreadId => _thread.ManagedThreadId;

        public Worker(int index)
        {
            _thread = new Thread(Loop) { IsBackground = true, Name = $"omm-decode-{index}" };
            _thread.Start();
        }

        public Task Run(Action job)
        {
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref _next, new Handover(job, done));
            _ready.Release();
            return done.Task;
        }

        private void Loop()
        {
            while (true)
            {
                _ready.Wait();
                // A job handed over is always run (and its task completed), even if a stop came with it.
                if (Interlocked.Exchange(ref _next, null) is { } handover)
                {
                    try
                    {
                        handover.Job();
                        handover.Done.SetResult();
                    }
                    catch (Exception e)
                    {
                        handover.Done.SetException(e);
                    }
                }
                else if (_stop) return;
            }
        }

        private sealed record Handover(Action Job, TaskCompletionSource Done);

        /// <summary>Ends the thread after the job it may be running (there is none by the time the owner calls this).</summary>
        public void Stop(bool join)
        {
            _stop = true;
            _ready.Release();
            if (join) _thread.Join();
        }
    }
}
