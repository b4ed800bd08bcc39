using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Profiling;
using Spectre.Console;

namespace OnnxMultimodal.Cli;

/// <summary>
/// <c>omm soak</c>: N mixed requests (text, caption, imagine, transcribe on the tiny models) at concurrency C,
/// some cancelled at random moments, the pipelines disposed and reloaded while requests run; host RSS,
/// managed heap, handles and threads (and device memory on CUDA) sampled at intervals. Exit 0 when every
/// request ended as completed, cancelled or refused by a disposed pipeline, else 1.
/// </summary>
internal static class SoakCommand
{
    /// <summary>One reading. RssMiB is the resident set as found; TrimmedRssMiB the same after <c>malloc_trim(0)</c>
    /// (freed pages glibc kept in its arenas handed back); HeapInUseMiB / HeapFreeMiB what glibc's malloc holds
    /// in live allocations / keeps free (mallinfo2). The three are null where glibc is not the allocator.</summary>
    private sealed record Sample(int Requests, double Seconds, double RssMiB, double? TrimmedRssMiB, double? HeapInUseMiB, double? HeapFreeMiB,
                                 double ManagedMiB, int Handles, int Threads, double? DeviceMiB);

    private sealed class Slot(string task, string model)
    {
        public string Task { get; } = task;
        public string Model { get; } = model;
        public volatile MultimodalPipeline? Pipeline;
    }

    public static Command Create()
    {
        var requests = new Option<int>("--requests", "-n") { Description = "Requests to run in all", DefaultValueFactory = _ => 1000 };
        var concurrency = new Option<int>("--concurrency", "-c") { Description = "Requests in flight at once", DefaultValueFactory = _ => 4 };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens per text request", DefaultValueFactory = _ => 8 };
        var cancelRate = new Option<double>("--cancel-rate") { Description = "Share of requests cancelled at a random moment", DefaultValueFactory = _ => 0.1 };
        var reloadEvery = new Option<int>("--reload-every") { Description = "Dispose and reload one pipeline every N requests, while others run (0 = never)", DefaultValueFactory = _ => 250 };
        var interval = new Option<int>("--interval") { Description = "Sample memory, handles and threads every N requests", DefaultValueFactory = _ => 500 };
        var tasks = new Option<string>("--tasks") { Description = "Mix of tasks: text,caption,imagine,transcribe", DefaultValueFactory = _ => "text,caption,imagine,transcribe" };
        var modelsDir = new Option<string?>("--models") { Description = "Folder holding tiny-llama, tiny-chameleon, tiny-seamless (default: the embedded ones)" };
        var seed = new Option<int>("--seed") { Description = "Seed of the mix, the cancellations and the reloads", DefaultValueFactory = _ => 1 };
        var json = new Option<string?>("--json") { Description = "Write the samples and counts as JSON" };
        var trim = new Option<bool>("--malloc-trim") { Description = "At each sample, after reading the resident set, call glibc's malloc_trim(0) and read it again (false: never trim)", DefaultValueFactory = _ => true };
        var arenas = new Option<int>("--malloc-arena-max") { Description = "Cap glibc's malloc arenas before loading (mallopt M_ARENA_MAX; 0 = glibc's default of 8 per core)", DefaultValueFactory = _ => 2 };
        var mmapThreshold = new Option<int>("--malloc-mmap-threshold") { Description = "Fixed glibc mmap threshold in bytes (mallopt M_MMAP_THRESHOLD; 0 = glibc's dynamic default)", DefaultValueFactory = _ => 1 << 20 };
        var cmd = new Command("soak", "Run many mixed requests with random cancellation and dispose/reload cycles; report memory, handles and threads")
            { requests, concurrency, maxTokens, cancelRate, reloadEvery, interval, tasks, modelsDir, seed, json, trim, arenas, mmapThreshold };
        cmd.Options.Add(CliCommon.Provider);
        cmd.Options.Add(CliCommon.Threads);
        cmd.SetAction((r, ct) => CliCommon.Guard(() => Run(r, r.GetValue(requests), r.GetValue(concurrency), r.GetValue(maxTokens), r.GetValue(cancelRate),
            r.GetValue(reloadEvery), r.GetValue(interval), r.GetValue(tasks)!, r.GetValue(modelsDir), r.GetValue(seed), r.GetValue(json), r.GetValue(trim), r.GetValue(arenas), r.GetValue(mmapThreshold), ct)));
        return cmd;
    }

    private static async Task<int> Run(ParseResult r, int total, int concurrency, int maxTokens, double cancelRate, int reloadEvery, int interval,
                                       string taskList, string? modelsDir, int seed, string? jsonPath, bool trim, int arenaMax, int mmapThreshold, CancellationToken ct)
    {
        if (total < 1) throw new InvalidInputException("--requests", $"must be >= 1 (got {total})");
        if (concurrency < 1 || concurrency > 256) throw new InvalidInputException("--concurrency", $"must be in 1..256 (got {concurrency})");
        if (interval < 1) throw new InvalidInputException("--interval", $"must be >= 1 (got {interval})");
        if (!(cancelRate is >= 0 and <= 1)) throw new InvalidInputException("--cancel-rate", $"must be in [0, 1] (got {cancelRate})");
        if (arenaMax < 0) throw new InvalidInputException("--malloc-arena-max", $"must be >= 0 (got {arenaMax})");
        if (mmapThreshold < 0) throw new InvalidInputException("--malloc-mmap-threshold", $"must be >= 0 (got {mmapThreshold})");
        // Before any pipeline starts its threads. Under glibc's defaults every reload's new decode and ONNX Runtime
        // threads spread allocations over up to 8 arenas per core, and large buffers land in those heaps once the
        // dynamic mmap threshold has risen; freed memory then stays with glibc (docs/hardening.md, "Soak").
        // This tunes the soak process only: the library leaves its host's allocator alone.
        bool tuned = (arenaMax > 0 || mmapThreshold > 0) && GlibcHeap.Tune(arenaMax, mmapThreshold);
        string models = modelsDir ?? Path.Combine(AppContext.BaseDirectory, "models");
        var options = new PipelineOptions { Execution = CliCommon.Execution(r), MaxConcurrentRequests = Math.Min(concurrency, 8) };
        var kinds = taskList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var slots = kinds.Select(k => new Slot(k, Path.Combine(models, k switch
        {
            "text" => "tiny-llama",
            "caption" or "imagine" => "tiny-chameleon",
            "transcribe" => "tiny-seamless",
            _ => throw new InvalidInputException("--tasks", $"'{k}' is not one of text, caption, imagine, transcribe"),
        }))).ToArray();
        foreach (var slot in slots) slot.Pipeline = await MultimodalPipeline.LoadAsync(slot.Model, options, cancellationToken: ct);
        string image = Path.Combine(models, "tiny-chameleon", "reference", "shapes.png");
        string audio = Path.Combine(models, "tiny-seamless", "reference", "robot_16k.wav");

        using var gpu = options.Execution.Providers.Contains(Runtime.ExecutionProviderKind.Cuda)
            ? GpuMonitor.TryStart(options.Execution.DeviceId, TimeSpan.FromMilliseconds(100), out _) : null;
        var samples = new List<Sample>();
        var clock = Stopwatch.StartNew();
        int next = -1, done = 0, completed = 0, cancelled = 0, disposed = 0, reloads = 0, failed = 0;
        var failures = new List<string>();
        var reloadLock = new SemaphoreSlim(1, 1);
        samples.Add(Measure(0, clock, gpu, trim));
        PrintSample(samples[^1]);

        async Task Worker(int id)
        {
            var random = new Random(seed * 7919 + id);
            while (true)
            {
                int i = Interlocked.Increment(ref next);
                if (i >= total || ct.IsCancellationRequested) return;
                var slot = slots[random.Next(slots.Length)];
                using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
                if (random.NextDouble() < cancelRate) cts.CancelAfter(random.Next(0, 20));
                string outcome;
                try
                {
                    var pipeline = slot.Pipeline!;
                    var request = slot.Task switch
                    {
                        "caption" => new GenerationRequest([Part.Image(image), Part.Text("A photo of")]) { Sampling = Tokens(maxTokens) },
                        "imagine" => new GenerationRequest("a red circle") { Output = OutputModality.Image, Sampling = new SamplingOptions { Temperature = 1, TopP = 0.9f, Seed = (ulong)i } },
                        "transcribe" => new GenerationRequest([Part.Audio(audio)]) { Sampling = Tokens(maxTokens) },
                        _ => new GenerationRequest("Once upon a time") { Sampling = Tokens(maxTokens) },
                    };
                    await foreach (var _ in pipeline.GenerateAsync(request, cts.Token)) { }
                    outcome = "completed";
                }
                catch (OperationCanceledException) when (cts.IsCancellationRequested) { outcome = "cancelled"; }
                catch (ObjectDisposedException) { outcome = "disposed"; }   // the pipeline was reloaded under it
                catch (Exception e)
                {
                    outcome = "failed";
                    lock (failures) if (failures.Count < 10) failures.Add($"{slot.Task}: {e.GetType().Name}: {e.Message}");
                }
                switch (outcome)
                {
                    case "completed": Interlocked.Increment(ref completed); break;
                    case "cancelled": Interlocked.Increment(ref cancelled); break;
                    case "disposed": Interlocked.Increment(ref disposed); break;
                    default: Interlocked.Increment(ref failed); break;
                }
                int finished = Interlocked.Increment(ref done);
                if (reloadEvery > 0 && finished % reloadEvery == 0)
                {
                    // Reload one pipeline while the other workers keep using the old one: they see ObjectDisposedException, never a crash.
                    await reloadLock.WaitAsync(ct);
                    try
                    {
                        var slotToReload = slots[finished / reloadEvery % slots.Length];
                        var old = slotToReload.Pipeline!;
                        var fresh = await MultimodalPipeline.LoadAsync(slotToReload.Model, options, cancellationToken: ct);
                        slotToReload.Pipeline = fresh;
                        await old.DisposeAsync();
                        Interlocked.Increment(ref reloads);
                    }
                    finally { reloadLock.Release(); }
                }
                if (finished % interval == 0)
                {
                    var sample = Measure(finished, clock, gpu, trim);
                    lock (samples) samples.Add(sample);
                    PrintSample(sample);
                }
            }
        }

        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(id => Task.Run(() => Worker(id), CancellationToken.None)));
        foreach (var slot in slots) slot.Pipeline!.Dispose();
        var last = Measure(done, clock, gpu, trim);
        lock (samples) { samples.Sort((a, b) => a.Requests.CompareTo(b.Requests)); samples.Add(last); }
        var table = new Table().AddColumns("requests", "seconds", "RSS MiB", "trimmed MiB", "malloc in use", "malloc free", "managed MiB", "handles", "threads", "device MiB");
        foreach (var s in samples)
            table.AddRow(s.Requests.ToString(), s.Seconds.ToString("F1"), s.RssMiB.ToString("F1"), s.TrimmedRssMiB?.ToString("F1") ?? "-",
                         s.HeapInUseMiB?.ToString("F1") ?? "-", s.HeapFreeMiB?.ToString("F1") ?? "-", s.ManagedMiB.ToString("F1"), s.Handles.ToString(), s.Threads.ToString(),
                         s.DeviceMiB?.ToString("F0") ?? "-");
        AnsiConsole.Write(table);
        // Growth after warm-up: from the first interval sample (pools, JIT and allocator arenas filled) to the last
        // one taken while the pipelines were still loaded (the final sample, after disposal, is lower by their weights).
        var warm = samples.Count > 3 ? samples[1] : samples[0];
        var loaded = samples.Count > 3 ? samples[^2] : last;
        double growth = loaded.RssMiB - warm.RssMiB;
        double? trimmedGrowth = loaded.TrimmedRssMiB - warm.TrimmedRssMiB, inUseGrowth = loaded.HeapInUseMiB - warm.HeapInUseMiB;
        Console.WriteLine($"{done} requests in {clock.Elapsed.TotalSeconds:F1} s: {completed} completed, {cancelled} cancelled, {disposed} disposed under a reload, " +
                          $"{failed} failed; {reloads} reloads; RSS {warm.RssMiB:F1} -> {loaded.RssMiB:F1} MiB (max {samples.Max(s => s.RssMiB):F1}, {last.RssMiB:F1} disposed), " +
                          $"threads {warm.Threads} -> {last.Threads}, handles {warm.Handles} -> {last.Handles}" +
                          (trimmedGrowth is { } tg ? $"; trimmed RSS {tg:+0.0;-0.0} MiB" : "") + (inUseGrowth is { } ig ? $", malloc in use {ig:+0.0;-0.0} MiB" : ""));
        foreach (var f in failures) Console.Error.WriteLine($"failure: {f}");
        GlibcHeap.PrintStats();
        if (jsonPath is not null)
        {
            var report = new
            {
                machine = Environment.MachineName, processors = Environment.ProcessorCount, date = DateTime.UtcNow.ToString("u"),
                provider = string.Join(",", options.Execution.Providers), requests = done, concurrency, max_tokens = maxTokens, cancel_rate = cancelRate,
                reload_every = reloadEvery, tasks = kinds, seconds = clock.Elapsed.TotalSeconds,
                completed, cancelled, disposed, failed, reloads, failures, malloc_trim = trim, malloc_arena_max = tuned ? arenaMax : 0, malloc_mmap_threshold = tuned ? mmapThreshold : 0, rss_growth_after_warmup_mib = growth,
                trimmed_rss_growth_after_warmup_mib = trimmedGrowth, malloc_in_use_growth_after_warmup_mib = inUseGrowth, samples,
            };
            File.WriteAllText(jsonPath, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
        }
        return failed == 0 ? 0 : 1;
    }

    private static SamplingOptions Tokens(int n) => new() { MaxNewTokens = n, IgnoreStopTokens = true };

    private static Sample Measure(int requests, Stopwatch clock, GpuMonitor? gpu, bool trim)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        using var p = Process.GetCurrentProcess();
        int handles = OperatingSystem.IsLinux() && Directory.Exists("/proc/self/fd") ? Directory.GetFiles("/proc/self/fd").Length : p.HandleCount;
        double? device = gpu is { Readings.Count: > 0 } g ? g.Readings[^1].UsedBytes / 1048576.0 : null;
        double rss = p.WorkingSet64 / 1048576.0;
        var heap = GlibcHeap.Read();
        double? trimmed = null;
        if (trim && GlibcHeap.Trim())
        {
            p.Refresh();
            trimmed = p.WorkingSet64 / 1048576.0;
        }
        return new Sample(requests, clock.Elapsed.TotalSeconds, rss, trimmed, heap?.InUseMiB, heap?.FreeMiB, GC.GetTotalMemory(false) / 1048576.0,
                          handles, p.Threads.Count, device);
    }

    private static void PrintSample(Sample s) =>
        Console.Error.WriteLine($"[{s.Seconds,7:F1} s] {s.Requests,7} requests  RSS {s.RssMiB,7:F1} MiB" + (s.TrimmedRssMiB is { } t ? $" (trimmed {t,7:F1})" : "") +
                                (s.HeapInUseMiB is { } u ? $"  malloc in use {u,6:F1} free {s.HeapFreeMiB,6:F1}" : "") +
                                $"  managed {s.ManagedMiB,6:F1} MiB  handles {s.Handles,4}  threads {s.Threads,3}" +
                                (s.DeviceMiB is { } d ? $"  device {d:F0} MiB" : ""));
}
