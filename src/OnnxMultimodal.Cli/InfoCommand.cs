using System.CommandLine;
using Microsoft.ML.OnnxRuntime;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;
using Spectre.Console;

namespace OnnxMultimodal.Cli;

/// <summary><c>omm info</c>: what a model folder holds and which execution providers load here.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var cmd = new Command("info", "Show a model's components, shapes, precision, and the execution providers that load on this machine");
        cmd.Options.Add(CliCommon.Model);
        cmd.SetAction((r, ct) => CliCommon.Guard(() =>
        {
            var package = ModelPackage.Open(CliCommon.ModelPath(r));
            var m = package.Manifest;
            var table = new Table().AddColumns("component", "file", "inputs", "outputs");
            foreach (var (role, file) in m.Components)
            {
                string path = Path.Combine(package.Directory, file);
                if (!file.EndsWith(".onnx")) { table.AddRow(role, file, "", ""); continue; }
                var header = OnnxHeader.Read(path);
                using var session = OpenGraph(path);
                string Describe(IReadOnlyDictionary<string, NodeMetadata> md) => Markup.Escape(string.Join("\n", md.Take(5).Select(kv =>
                    $"{kv.Key} {kv.Value.ElementDataType} [{string.Join(",", kv.Value.Dimensions.Select((d, i) => d >= 0 ? d.ToString() : Readable(kv.Value.SymbolicDimensions[i])))}]")
                    .Append(md.Count > 5 ? $"... ({md.Count} in all)" : "")));
                table.AddRow(role, $"{file}\nIR {header.IrVersion}, opset {header.Opsets.GetValueOrDefault("")}", Describe(session.InputMetadata), Describe(session.OutputMetadata));
            }
            var d = package.Decoder;
            AnsiConsole.MarkupLine($"[bold]{Markup.Escape(m.Name)}[/]  family {m.Family}, precision {m.Precision}");
            AnsiConsole.MarkupLine($"decoder: {d.NumLayers} layers, hidden {d.HiddenSize}, {d.NumHeads} heads ({d.NumKvHeads} kv), head dim {d.HeadDim}, vocab {d.VocabSize}, context {d.ContextLength}, kv cache {d.KvCache}");
            AnsiConsole.Write(table);
            var providers = new Table().AddColumns("execution provider", "loads here", "detail");
            foreach (var (kind, loads, detail) in SessionFactory.Probe())
                providers.AddRow(kind.ToString(), loads ? "[green]yes[/]" : "[red]no[/]", Markup.Escape(detail.Length > 160 ? detail[..160] + "..." : detail));
            AnsiConsole.Write(providers);
            AnsiConsole.MarkupLine($"ONNX Runtime providers compiled in: {Markup.Escape(string.Join(", ", SessionFactory.AvailableProviders()))}");
            return Task.FromResult(0);
        }));
        return cmd;
    }

    /// <exception cref="ModelPackageException">ONNX Runtime cannot load the graph (garbage bytes, unknown ops).</exception>
    private static InferenceSession OpenGraph(string path)
    {
        try
        {
            return new InferenceSession(path);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelPackageException(path, $"ONNX Runtime cannot load the graph: {e.Message}", e);
        }
    }

    /// <summary>A symbolic dimension as the exporter named it (batch, seq, past, ...), or "?" where ONNX Runtime's
    /// shape inference made a name up ("unk__12", "Transposecross.0.key_dim_1").</summary>
    internal static string Readable(string symbol) =>
        symbol.Length == 0 || System.Text.RegularExpressions.Regex.IsMatch(symbol, @"^unk__\d+$|_dim_\d+$") ? "?" : symbol;
}
