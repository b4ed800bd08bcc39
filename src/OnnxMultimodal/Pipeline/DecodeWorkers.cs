namespace OnnxMultimodal.Pipeline;

/// <summary>
/// The threads that run requests. ONNX Runtime's CUDA provider keeps per-thread state (cuBLAS and
/// cuDNN handles, workspaces), so a request that lands on a fresh thread-pool thread pays for building
/// it inside its prefill: on an H200 that made a 194-token 7B prefill 3-4x slower than on a warm
/// thread. Here each request takes the lowest-numbered idle worker, so one request at a time always
/// runs on worker 0, and N concurrent requests warm N workers once. Workers start on first use.
/// </summary>
internal sealed class DecodeWorkers : IDisposable
{
    private readonly Worker?[] _workers;
    private readonly bool[] _busy;
    private readonly SemaphoreSlim _free;
    private readonly object _lock = new();
    private bool _disposed;

    public DecodeWorkers(int count)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), count, "at least one worker");
        _workers = new Worker?[count];
        _busy = new bool[count];
        _free = new SemaphoreSlim(count, count);
    }

    /// <summary>Managed thread ids of the workers started so far (tests).</summary>
    internal IReadOnlyList<int> ThreadIds
    {
        get { lock (_lock) return _workers.Where(w => w is not null).Select(w => w!.ThreadId).ToArray(); }
    }

    /// <summary>Runs <paramref name="job"/> on an idle worker, waiting for one if all are busy.</summary>
    /// <exception cref="OperationCanceledException">Cancelled while waiting for a worker (the job did not run).</exception>
    public async Task RunAsync(Action job, CancellationToken cancellationToken)
    {
        await _free.WaitAsync(cancellationToken).ConfigureAwait(false);
        int index;
        Worker worker;
        lock (_lock)
        {
            if (_disposed) { _free.Release(); throw new ObjectDisposedException(nameof(MultimodalPipeline)); }
            index = Array.IndexOf(_busy, false);
            _busy[index] = true;
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
        }
    }

    public void Dispose()
    {
        Worker?[] workers;
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            workers = _workers.ToArray();
        }
        foreach (var w in workers) w?.Dispose();
    }

    private sealed class Worker : IDisposable
    {
        private readonly Thread _thread;
        private readonly SemaphoreSlim _ready = new(0);
        private (Action Job, TaskCompletionSource Done)? _next;
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
            _next = (job, done);
            _ready.Release();
            return done.Task;
        }

        private void Loop()
        {
            while (true)
            {
                _ready.Wait();
                if (_stop) return;
                var (job, done) = _next!.Value;
                _next = null;
                try
                {
                    job();
                    done.SetResult();
                }
                catch (Exception e)
                {
                    done.SetException(e);
                }
            }
        }

        public void Dispose()
        {
            _stop = true;       // the thread ends after the job it may be running; nothing waits for it
            _ready.Release();
        }
    }
}
