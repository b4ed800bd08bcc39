using System.Buffers.Binary;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Speech;

/// <summary>Limits for reading audio. Immutable. The bounds live in <see cref="ResourceLimits"/>;
/// <see cref="MaxSeconds"/> is a shorthand for <see cref="ResourceLimits.MaxAudioSeconds"/>.</summary>
public sealed record AudioOptions
{
    /// <summary>Duration and sample-rate bounds, checked from the header before any sample is read.</summary>
    public ResourceLimits Limits { get; init; } = ResourceLimits.Default;

    /// <summary>Longer recordings are refused from their header, before any sample is read.</summary>
    public double MaxSeconds
    {
        get => Limits.MaxAudioSeconds;
        init => Limits = Limits with { MaxAudioSeconds = value };
    }
}

/// <summary>Mono samples in [-1, 1] at a known rate.</summary>
internal sealed record Waveform(float[] Samples, int SampleRate, int SourceChannels, int SourceRate);

/// <summary>
/// Reads RIFF/WAVE: PCM 8 (unsigned), 16, 24 and 32-bit, IEEE float 32 and 64-bit, plain or
/// WAVE_FORMAT_EXTENSIBLE, any number of channels (averaged to mono), any sample rate (resampled to
/// the target with <see cref="Resampler"/>). Reads sequentially from any <see cref="Stream"/>.
/// </summary>
internal static class WaveReader
{
    /// <exception cref="InvalidInputException">Not a WAV file, truncated, unsupported encoding, empty or too long.</exception>
    public static Waveform Read(string path, int targetRate, AudioOptions options, string input = "audio")
    {
        if (!File.Exists(path)) throw new InvalidInputException(input, $"file not found: {path}");
        using var s = File.OpenRead(path);
        return Read(s, targetRate, options, $"{input} ({Path.GetFileName(path)})");
    }

    /// <inheritdoc cref="Read(string, int, AudioOptions, string)"/>
    public static Waveform Read(Stream stream, int targetRate, AudioOptions options, string input = "audio")
    {
        try
        {
            Span<byte> header = stackalloc byte[12];
            if (!TryFill(stream, header)) throw new InvalidInputException(input, "truncated: shorter than a RIFF header");
            if (!header[..4].SequenceEqual("RIFF"u8) || !header[8..12].SequenceEqual("WAVE"u8))
                throw new InvalidInputException(input, "not a RIFF/WAVE file");
            int format = -1, channels = 0, rate = 0, bits = 0, blockAlign = 0;
            Span<byte> chunk = stackalloc byte[8];
            while (true)
            {
                if (!TryFill(stream, chunk)) throw new InvalidInputException(input, format < 0 ? "truncated: no 'fmt ' chunk" : "no 'data' chunk");
                var id = chunk[..4];
                uint size = BinaryPrimitives.ReadUInt32LittleEndian(chunk[4..]);
                if (id.SequenceEqual("fmt "u8))
                {
                    if (size < 16 || size > 1024) throw new InvalidInputException(input, $"'fmt ' chunk of {size} bytes");
                    var fmt = new byte[size + (size & 1)];
                    if (!TryFill(stream, fmt)) throw new InvalidInputException(input, "truncated inside the 'fmt ' chunk");
                    format = BinaryPrimitives.ReadUInt16LittleEndian(fmt);
                    channels = BinaryPrimitives.ReadUInt16LittleEndian(fmt.AsSpan(2));
                    rate = BinaryPrimitives.ReadInt32LittleEndian(fmt.AsSpan(4));
                    blockAlign = BinaryPrimitives.ReadUInt16LittleEndian(fmt.AsSpan(12));
                    bits = BinaryPrimitives.ReadUInt16LittleEndian(fmt.AsSpan(14));
                    if (format == 0xFFFE && size >= 26) format = BinaryPrimitives.ReadUInt16LittleEndian(fmt.AsSpan(24));   // extensible: sub-format GUID
                }
                else if (id.SequenceEqual("data"u8))
                {
                    if (format < 0) throw new InvalidInputException(input, "'data' before 'fmt '");
                    return ReadData(stream, size, format, channels, rate, bits, blockAlign, targetRate, options, input);
                }
                else
                {
                    Skip(stream, size + (size & 1), input);
                }
            }
        }
        catch (IOException e)
        {
            throw new InvalidInputException(input, "cannot be read: " + e.Message, e);
        }
    }

    private static Waveform ReadData(Stream stream, uint size, int format, int channels, int rate, int bits, int blockAlign,
                                     int targetRate, AudioOptions options, string input)
    {
        string encoding = (format, bits) switch
        {
            (1, 8 or 16 or 24 or 32) => "pcm",
            (3, 32 or 64) => "float",
            (6, _) => throw new InvalidInputException(input, "WAV format code 6 (A-law) is not supported; convert to PCM or float"),
            (7, _) => throw new InvalidInputException(input, "WAV format code 7 (mu-law) is not supported; convert to PCM or float"),
            (1 or 3, _) => throw new InvalidInputException(input, $"{bits}-bit {(format == 1 ? "PCM" : "float")} is not supported"),
            _ => throw new InvalidInputException(input, $"WAV format code {format} is not supported (PCM 1 and IEEE float 3 are)"),
        };
        var limits = options.Limits;
        if (channels <= 0 || rate <= 0) throw new InvalidInputException(input, $"header claims {channels} channels at {rate} Hz");
        if (rate < limits.MinAudioSampleRate || rate > limits.MaxAudioSampleRate)
            throw new InvalidInputException(input, $"a sample rate of {rate:N0} Hz is outside the supported {limits.MinAudioSampleRate:N0}-{limits.MaxAudioSampleRate:N0} Hz (ResourceLimits.MinAudioSampleRate/MaxAudioSampleRate)");
        int bytesPerSample = bits / 8;
        if (blockAlign != channels * bytesPerSample) blockAlign = channels * bytesPerSample;
        long frames = size / blockAlign;
        if (frames == 0) throw new InvalidInputException(input, "no samples");
        // Exact comparison in whole frames: a recording of exactly the limit is accepted, one frame more is not.
        if (frames > limits.MaxAudioSeconds * rate)
            throw new InvalidInputException(input, $"{Duration(frames, rate)} of audio is over the limit of {Duration(limits.MaxAudioSeconds)} (ResourceLimits.MaxAudioSeconds); split it or raise the limit");
        if (stream.CanSeek && stream.Length - stream.Position < (long)frames * blockAlign)
            throw new InvalidInputException(input, $"the data chunk claims {size:N0} bytes but only {stream.Length - stream.Position:N0} remain (truncated file)");

        var mono = new float[frames];
        var buffer = new byte[blockAlign * 4096];
        long done = 0;
        float scale = 1f / channels;
        while (done < frames)
        {
            int want = (int)Math.Min(4096, frames - done);
            var span = buffer.AsSpan(0, want * blockAlign);
            if (!TryFill(stream, span))
                throw new InvalidInputException(input, $"the data chunk claims {size:N0} bytes but the file ends after {done * blockAlign:N0}");
            for (int f = 0; f < want; f++)
            {
                float sum = 0;
                for (int c = 0; c < channels; c++)
                    sum += Sample(span.Slice(f * blockAlign + c * bytesPerSample, bytesPerSample), encoding, bits);
                if (!float.IsFinite(sum))
                    throw new InvalidInputException(input, $"sample {done + f:N0} ({Duration(done + f, rate)} in) is {(float.IsNaN(sum) ? "NaN" : "infinite")}: float WAV samples must be finite");
                mono[done + f] = sum * scale;
            }
            done += want;
        }
        var samples = rate == targetRate ? mono : Resampler.Resample(mono, rate, targetRate);
        return new Waveform(samples, targetRate, channels, rate);
    }

    /// <summary>A duration for messages: seconds with as many decimals as it takes to tell it from the limit
    /// (120 s, 120.001 s, 7 min 30.5 s is written 450.5 s).</summary>
    internal static string Duration(long frames, int rate) => Duration((double)frames / rate);

    /// <inheritdoc cref="Duration(long, int)"/>
    internal static string Duration(double seconds) => $"{seconds.ToString("0.######", System.Globalization.CultureInfo.InvariantCulture)} s";

    private static float Sample(ReadOnlySpan<byte> b, string encoding, int bits) => (encoding, bits) switch
    {
        ("pcm", 8) => (b[0] - 128) / 128f,
        ("pcm", 16) => BinaryPrimitives.ReadInt16LittleEndian(b) / 32768f,
        ("pcm", 24) => ((b[0] | (b[1] << 8) | ((sbyte)b[2] << 16))) / 8388608f,
        ("pcm", 32) => BinaryPrimitives.ReadInt32LittleEndian(b) / 2147483648f,
        ("float", 32) => BinaryPrimitives.ReadSingleLittleEndian(b),
        _ => (float)BinaryPrimitives.ReadDoubleLittleEndian(b),
    };

    private static bool TryFill(Stream s, Span<byte> buffer)
    {
        int read = 0;
        while (read < buffer.Length)
        {
            int n = s.Read(buffer[read..]);
            if (n == 0) return false;
            read += n;
        }
        return true;
    }

    private static void Skip(Stream s, long count, string input)
    {
        if (s.CanSeek)
        {
            if (s.Position + count > s.Length) throw new InvalidInputException(input, "truncated inside a chunk");
            s.Seek(count, SeekOrigin.Current);
            return;
        }
        var tmp = new byte[4096];
        while (count > 0)
        {
            int n = s.Read(tmp, 0, (int)Math.Min(tmp.Length, count));
            if (n == 0) throw new InvalidInputException(input, "truncated inside a chunk");
            count -= n;
        }
    }
}
