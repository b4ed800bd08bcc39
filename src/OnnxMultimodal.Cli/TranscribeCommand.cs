using System.CommandLine;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Cli;

/// <summary><c>omm transcribe --audio F [--tgt-lang L]</c>: speech->text (Seamless).</summary>
internal static class TranscribeCommand
{
    public static Command Create()
    {
        var audio = new Option<string>("--audio") { Description = "WAV file (PCM 8/16/24/32-bit or float, any rate and channels)", Required = true };
        var lang = new Option<string?>("--tgt-lang") { Description = "Target language code, e.g. spa, fra (default: the model's first)" };
        var cmd = new Command("transcribe", "Speech to text: filter banks, speech encoder, text decoder") { audio, lang };
        CliCommon.AddSampling(cmd);
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            string model = r.GetValue(CliCommon.Model) ?? DefaultModels.PathOf(DefaultModels.Speech);
            await using var pipeline = await MultimodalPipeline.LoadAsync(model, CliCommon.PipelineOptions(r), cancellationToken: ct);
            var request = new GenerationRequest([Part.Audio(r.GetValue(audio)!)]) { TargetLanguage = r.GetValue(lang), Sampling = CliCommon.Sampling(r) };
            await foreach (var u in pipeline.GenerateAsync(request, ct)) Console.Write(u.TextDelta);
            Console.WriteLine();
            return 0;
        }));
        return cmd;
    }
}
