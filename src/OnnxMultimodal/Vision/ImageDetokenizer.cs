using Microsoft.ML.OnnxRuntime;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Runtime;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace OnnxMultimodal.Vision;

/// <summary>The VQ detokenizer: codes [B, N] -> pixels [B, 3, H, W] in [-1, 1] (image_decoder.onnx), and PNG.</summary>
internal sealed class ImageDetokenizer : IDisposable
{
    private readonly GraphSession _graph;
    private readonly int _tokens, _codebook;

    private ImageDetokenizer(GraphSession graph, ImageManifest image)
    {
        _graph = graph;
        _tokens = image.TokensPerImage;
        _codebook = image.CodebookSize;
    }

    public static ImageDetokenizer Create(ModelPackage package, ExecutionOptions execution)
    {
        string path = package.ComponentPath("image_decoder");
        var io = package.Manifest.ImageDecoder ?? new ComponentIo { Input = "codes", Output = "pixels" };
        return new ImageDetokenizer(new GraphSession(path, execution, [io.Input], [io.Output]), package.Manifest.Image!);
    }

    /// <returns>[3, H, W] pixels in [-1, 1].</returns>
    public float[] Decode(IReadOnlyList<int> codes)
    {
        if (codes.Count != _tokens) throw new InvalidInputException("codes", $"{codes.Count} codes, an image is exactly {_tokens}");
        var data = new long[_tokens];
        for (int i = 0; i < _tokens; i++)
        {
            if ((uint)codes[i] >= (uint)_codebook) throw new InvalidInputException("codes", $"code {codes[i]} at {i} is outside the codebook of {_codebook}");
            data[i] = codes[i];
        }
        using var input = OrtValue.CreateTensorValueFromMemory(data, [1, _tokens]);
        using var outputs = _graph.Run([input]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>[3, H, W] in [-1, 1] -> 8-bit RGB PNG bytes.</summary>
    public static byte[] ToPng(float[] pixels, int size)
    {
        using var image = new Image<Rgb24>(size, size);
        int plane = size * size;
        static byte To8(float v) => (byte)Math.Clamp((int)MathF.Round((v + 1f) * 127.5f), 0, 255);
        image.ProcessPixelRows(rows =>
        {
            for (int y = 0; y < size; y++)
            {
                var row = rows.GetRowSpan(y);
                for (int x = 0; x < size; x++)
                {
                    int i = y * size + x;
                    row[x] = new Rgb24(To8(pixels[i]), To8(pixels[plane + i]), To8(pixels[2 * plane + i]));
                }
            }
        });
        using var ms = new MemoryStream();
        image.SaveAsPng(ms);
        return ms.ToArray();
    }

    public void Dispose() => _graph.Dispose();
}
