using Microsoft.ML.OnnxRuntime;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Vision;

/// <summary>The VQ image tokenizer: pixels [B, 3, H, W] in [-1, 1] -> codes [B, N] (image_encoder.onnx).</summary>
internal sealed class ImageTokenizer : IDisposable
{
    private readonly GraphSession _graph;

    public int ImageSize { get; }
    public int TokensPerImage { get; }

    private ImageTokenizer(GraphSession graph, ImageManifest image)
    {
        _graph = graph;
        ImageSize = image.Size;
        TokensPerImage = image.TokensPerImage;
    }

    public static ImageTokenizer Create(ModelPackage package, ExecutionOptions execution)
    {
        string path = package.ComponentPath("image_encoder");
        var io = package.Manifest.ImageEncoder ?? new ComponentIo { Input = "pixel_values", Output = "codes" };
        return new ImageTokenizer(new GraphSession(path, execution, [io.Input], [io.Output]), package.Manifest.Image!);
    }

    /// <param name="pixels">[1, 3, H, W] in [-1, 1].</param>
    /// <returns>[N] codebook indices.</returns>
    public long[] Encode(float[] pixels) => Encode(pixels.AsMemory());

    /// <inheritdoc cref="Encode(float[])"/>
    public long[] Encode(Memory<float> pixels)
    {
        int expected = 3 * ImageSize * ImageSize;
        if (pixels.Length != expected) throw new InvalidInputException("pixels", $"{pixels.Length} values, expected 3x{ImageSize}x{ImageSize}");
        using var input = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, pixels, [1, 3, ImageSize, ImageSize]);
        using var outputs = _graph.Run([input]);
        return outputs[0].GetTensorDataAsSpan<long>().ToArray();
    }

    public void Dispose() => _graph.Dispose();
}
