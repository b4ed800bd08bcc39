using System.CommandLine;
using OnnxMultimodal.Cli;

CliConsole.Configure();
var root = new RootCommand("omm: multimodal generation from ONNX graphs on ONNX Runtime");
root.Subcommands.Add(RunCommand.Create());
root.Subcommands.Add(ChatCommand.Create());
root.Subcommands.Add(VisionCommands.Caption());
root.Subcommands.Add(VisionCommands.Ask());
root.Subcommands.Add(VisionCommands.Imagine());
root.Subcommands.Add(TranscribeCommand.Create());
root.Subcommands.Add(InfoCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
root.Subcommands.Add(ProfileCommand.Create());
root.Subcommands.Add(ChartCommand.Create());
root.Subcommands.Add(TokenizeCommand.Create());
root.Subcommands.Add(SoakCommand.Create());
return await root.Parse(args).InvokeAsync();
