using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Chat;

/// <summary>Registers the pipeline and its chat client in a host's services.</summary>
public static class OnnxMultimodalServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="MultimodalPipeline"/> as a singleton, loaded once on first use from
    /// <paramref name="modelPath"/> and disposed with the container, and <see cref="IChatClient"/> (a
    /// <see cref="MultimodalChatClient"/> that does not own the pipeline). Where <paramref name="options"/> has no
    /// <see cref="PipelineOptions.LoggerFactory"/>, the container's <see cref="ILoggerFactory"/> is used.
    /// </summary>
    /// <param name="services">The service collection.</param>
    /// <param name="modelPath">The model folder.</param>
    /// <param name="options">Load options (default: CPU, the ort engine).</param>
    /// <returns><paramref name="services"/>.</returns>
    public static IServiceCollection AddOnnxMultimodal(this IServiceCollection services, string modelPath, PipelineOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrWhiteSpace(modelPath);
        services.TryAddSingleton(provider =>
        {
            var o = options ?? new PipelineOptions();
            if (o.LoggerFactory is null && provider.GetService<ILoggerFactory>() is { } factory) o = o with { LoggerFactory = factory };
            // LoadAsync runs on the thread pool, so waiting here cannot deadlock a synchronisation context.
            return MultimodalPipeline.LoadAsync(modelPath, o).GetAwaiter().GetResult();
        });
        services.TryAddSingleton<IChatClient>(provider => new MultimodalChatClient(provider.GetRequiredService<MultimodalPipeline>(), ownsPipeline: false));
        return services;
    }
}
