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
        var maxSeconds = new Option<double>("--max-seconds") { Description = "Longest recording accepted, in seconds", DefaultValueFactory = _ => new Speech.AudioOptions().MaxSeconds };
        var cmd = new Command("transcribe", "Speech to text: filter banks, speech encoder, text decoder (engine ort only)") { audio, lang, maxSeconds };
        CliCommon.AddSampling(cmd);
        cmd.SetAction((r, ct) => CliCommon.Guard(async () =>
        {
            if (CliCommon.ParseEngine(r.GetValue(CliCommon.Engine)!) != EngineKind.Ort)
                throw new InvalidInputException("--engine", "transcribe runs on the 'ort' engine only (ORT GenAI cannot take the speech encoder's states)");
            string file = r.GetValue(audio)!;
            if (!File.Exists(file)) throw new InvalidInputException("--audio", $"file not found: {file}");
            string model = r.GetValue(CliCommon.Model) ?? DefaultModels.PathOf(DefaultModels.Speech);
            var options = CliCommon.PipelineOptions(r) with { Audio = new Speech.AudioOptions { MaxSeconds = r.GetValue(maxSeconds) } };
            await using var pipeline = await CliConsole.LoadAsync(model, options, ct);
            var request = new GenerationRequest([Part.Audio(r.GetValue(audio)!)]) { TargetLanguage = r.GetValue(lang), Sampling = CliCommon.Sampling(r) };
            await foreach (var u in pipeline.GenerateAsync(request, ct)) Console.Write(u.TextDelta);
            Console.WriteLine();
            return 0;
        }, ("parts[0]", "--audio"), ("ResourceLimits.MaxAudioSeconds", "--max-seconds"), ("AudioOptions.MaxSeconds", "--max-seconds")));
        return cmd;
    }
}
