using System.Text.Json;
using OnnxMultimodal.Generation;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Playground;

/// <summary>Server-sent events over a POST response: <c>data: {"delta": "..."}</c> per token,
/// <c>data: {"progress": n, "total": m}</c> while an image is drawn, then one <c>done</c> (stats, image) or <c>error</c>.</summary>
internal static class Streams
{
    public const int DefaultMaxTokens = 32;

    public static int? MaxTokens(IFormCollection form) => int.TryParse(form["maxTokens"].FirstOrDefault(), out int n) ? n : null;

    public static async Task<byte[]> Bytes(IFormFile file, CancellationToken ct)
    {
        using var ms = new MemoryStream();
        await file.CopyToAsync(ms, ct);
        return ms.ToArray();
    }

    public static async Task Text(HttpContext http, Models models, string task, IReadOnlyList<Part> parts, int? maxTokens, CancellationToken ct)
    {
        if (models.For(task, out var reason) is not { } pipeline) { await Error(http, $"{task}: {reason}"); return; }
        Start(http);
        var request = new GenerationRequest(parts) { Sampling = new SamplingOptions { MaxNewTokens = Math.Clamp(maxTokens ?? DefaultMaxTokens, 1, 512) } };
        try
        {
            await foreach (var u in pipeline.GenerateAsync(request, ct))
            {
                if (u.TextDelta.Length > 0) await Send(http, new { delta = u.TextDelta }, ct);
                if (u.Stats is { } s) await Send(http, new { done = true, tokens = s.GeneratedTokens, ms = Math.Round(s.Total.TotalMilliseconds, 1), finish = s.FinishReason.ToString() }, ct);
            }
        }
        catch (OnnxMultimodalException e) { await Send(http, new { error = e.Message }, ct); }
    }

    public static async Task Image(HttpContext http, Models models, string prompt, ulong? seed, CancellationToken ct)
    {
        if (models.For("vision", out var reason) is not { } pipeline) { await Error(http, $"vision: {reason}"); return; }
        if (!pipeline.Model.ProducesImages) { await Error(http, $"{pipeline.Model.Name} has no image decoder"); return; }
        Start(http);
        var request = new GenerationRequest(prompt)
        {
            Output = OutputModality.Image,
            Sampling = new SamplingOptions { Temperature = 1f, TopP = 0.9f, Seed = seed ?? 7 },
        };
        try
        {
            int n = 0;
            await foreach (var u in pipeline.GenerateAsync(request, ct))
            {
                if (u.TokenId is not null && ++n % 8 == 0) await Send(http, new { progress = n }, ct);
                if (u.Image is { } image)
                    await Send(http, new { done = true, image = "data:image/png;base64," + Convert.ToBase64String(image.Png), width = image.Width, height = image.Height }, ct);
            }
        }
        catch (OnnxMultimodalException e) { await Send(http, new { error = e.Message }, ct); }
    }

    public static async Task Error(HttpContext http, string message)
    {
        Start(http);
        await Send(http, new { error = message }, http.RequestAborted);
    }

    private static void Start(HttpContext http)
    {
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
    }

    private static async Task Send(HttpContext http, object data, CancellationToken ct)
    {
        await http.Response.WriteAsync($"data: {JsonSerializer.Serialize(data)}\n\n", ct);
        await http.Response.Body.FlushAsync(ct);
    }
}
