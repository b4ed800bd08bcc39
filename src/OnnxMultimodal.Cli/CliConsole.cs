using OnnxMultimodal.Pipeline;
using Spectre.Console;

namespace OnnxMultimodal.Cli;

/// <summary>Terminal behaviour: tables at full width when piped, progress only on a terminal.</summary>
internal static class CliConsole
{
    /// <summary>Spectre.Console sizes tables to 80 columns when stdout is not a terminal, which cuts headers in
    /// files and pipes; give them room instead (they are as wide as their content needs).</summary>
    public static void Configure()
    {
        if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 400;
    }

    /// <summary>True when progress may be drawn: stderr is a terminal (nothing is written into pipes or logs).</summary>
    public static bool Interactive => !Console.IsErrorRedirected && Environment.GetEnvironmentVariable("TERM") is not "dumb";

    /// <summary>Loads a model, with a progress bar on stderr when it is a terminal.</summary>
    public static async Task<MultimodalPipeline> LoadAsync(string model, PipelineOptions options, CancellationToken ct)
    {
        if (!Interactive) return await MultimodalPipeline.LoadAsync(model, options, cancellationToken: ct);
        return await Progress().StartAsync(async ctx =>
        {
            var task = ctx.AddTask($"loading {Markup.Escape(Path.GetFileName(Path.TrimEndingDirectorySeparator(model)))}", maxValue: 1);
            var progress = new Progress<float>(v => task.Value = v);
            var pipeline = await MultimodalPipeline.LoadAsync(model, options, progress, ct);
            task.Value = 1;
            return pipeline;
        });
    }

    /// <summary>Runs <paramref name="work"/> with one progress bar of <paramref name="steps"/> steps on a terminal;
    /// the callback it gets advances it by one step (a no-op when piped).</summary>
    public static async Task<T> StepsAsync<T>(string description, int steps, Func<Action, Task<T>> work)
    {
        if (!Interactive) return await work(() => { });
        return await Progress().StartAsync(async ctx =>
        {
            var task = ctx.AddTask(Markup.Escape(description), maxValue: Math.Max(1, steps));
            return await work(() => task.Increment(1));
        });
    }

    private static Spectre.Console.Progress Progress() =>
        AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) })
            .Progress().AutoClear(true).HideCompleted(true)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn());
}
