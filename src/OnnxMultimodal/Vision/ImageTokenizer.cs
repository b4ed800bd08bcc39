using Microsoft.ML.OnnxRuntime;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Vision;

/// <summary>The VQ image tokenizer: pixels [B, 3, H, W] in [-1, 1] -> codes [B, N] (image_encoder.onnx).</summary>
public sealed class ImageTokenizer : IDisposable
{
    private readonly InferenceSession _session;
    private readonly string _input, _output, _path;

    public int ImageSize { get; }
    public int TokensPerImage { get; }

    private ImageTokenizer(InferenceSession session, string path, ImageManifest image, string input, string output)
    {
        _session = session;
        _path = path;
        _input = input;
        _output = output;
        ImageSize = image.Size;
        TokensPerImage = image.TokensPerImage;
    }

    public static ImageTokenizer Create(ModelPackage package, ExecutionOptions execution)
    {
        string path = package.ComponentPath("image_encoder");
        var io = package.Manifest.ImageEncoder ?? new ComponentIo { Input = "pixel_values", Output = "codes" };
        var (session, _) = SessionFactory.CreateChecked(path, execution, [io.Input], [io.Output]);
        return new ImageTokenizer(session, path, package.Manifest.Image!, io.Input, io.Output);
    }

    /// <param name="pixels">[1, 3, H, W] in [-1, 1].</param>
    /// <returns>[N] codebook indices.</returns>
    public long[] Encode(float[] pixels)
    {
        int expected = 3 * ImageSize * ImageSize;
        if (pixels.Length != expected) throw new InvalidInputException("pixels", $"{pixels.Length} values, expected 3x{ImageSize}x{ImageSize}");
        using var input = OrtValue.CreateTensorValueFromMemory(pixels, [1, 3, ImageSize, ImageSize]);
        using var runOptions = new RunOptions();
        try
        {
            using var outputs = _session.Run(runOptions, [_input], [input], [_output]);
            return outputs[0].GetTensorDataAsSpan<long>().ToArray();
        }
        catch (OnnxRuntimeException e)
        {
            throw new InferenceException(Path.GetFileName(_path), e.Message, e);
        }
    }

    public void Dispose() => _session.Dispose();
}
