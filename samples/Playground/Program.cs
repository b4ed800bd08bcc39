// Playground: a browser page over the pipeline. Prompt -> streamed tokens; image -> caption or answer;
// WAV (uploaded or recorded) -> transcript; prompt -> image. Models and provider are chosen at start:
//   dotnet run --project samples/Playground -- --models models [--provider cuda] [--urls http://127.0.0.1:5000]
using OnnxMultimodal;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Playground;

// the page is served from the build output (wwwroot is copied there), wherever the app is started from
var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
builder.Services.Configure<Microsoft.AspNetCore.Http.Features.FormOptions>(o => o.MultipartBodyLengthLimit = 64 << 20);
var app = builder.Build();
await using var models = await Models.LoadAsync(app.Configuration, app.Logger);

app.UseDefaultFiles();
app.UseStaticFiles();
app.MapGet("/api/info", () => Results.Json(models.Describe()));
app.MapPost("/api/generate", (HttpContext http, PromptBody body, CancellationToken ct) =>
    Streams.Text(http, models, "text", [Part.Text(body.Prompt ?? "")], body.MaxTokens, ct));
app.MapPost("/api/caption", async (HttpContext http, CancellationToken ct) =>
{
    var form = await http.Request.ReadFormAsync(ct);
    if (form.Files.GetFile("image") is not { Length: > 0 } file) { await Streams.Error(http, "image: choose an image file"); return; }
    string prompt = form["prompt"].FirstOrDefault() is { Length: > 0 } q ? q : "A photo of";
    await Streams.Text(http, models, "vision", [Part.Image(await Streams.Bytes(file, ct)), Part.Text(prompt)], Streams.MaxTokens(form), ct);
}).DisableAntiforgery();
app.MapPost("/api/transcribe", async (HttpContext http, CancellationToken ct) =>
{
    var form = await http.Request.ReadFormAsync(ct);
    if (form.Files.GetFile("audio") is not { Length: > 0 } file) { await Streams.Error(http, "audio: choose or record a WAV file"); return; }
    await Streams.Text(http, models, "speech", [Part.Audio(await Streams.Bytes(file, ct))], Streams.MaxTokens(form), ct);
}).DisableAntiforgery();
app.MapPost("/api/imagine", (HttpContext http, PromptBody body, CancellationToken ct) => Streams.Image(http, models, body.Prompt ?? "", body.Seed, ct));
app.Run();

/// <summary>The JSON body of the text and image requests.</summary>
public sealed record PromptBody(string? Prompt, int? MaxTokens, ulong? Seed);
