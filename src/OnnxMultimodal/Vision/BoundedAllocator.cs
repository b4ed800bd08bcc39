using System.Buffers;
using System.Runtime.CompilerServices;
using SixLabors.ImageSharp.Memory;

namespace OnnxMultimodal.Vision;

/// <summary>
/// ImageSharp's buffers, counted: inside <see cref="Scope"/> every buffer a decoder asks for is added to
/// a budget, and the buffer that would pass it is refused (<see cref="InvalidInputException"/>) before it
/// is allocated. The header checks bound what a well-formed file needs; this bounds what any file can
/// make a decoder allocate (frames, tiles, progressive-JPEG coefficients, malformed headers).
/// The count is cumulative over the scope (freed buffers are not credited back): a conservative bound.
/// </summary>
internal sealed class BoundedAllocator : MemoryAllocator
{
    private const int BlockBytes = 32 << 20;   // buffers over this are split into blocks (ImageSharp handles discontiguous images)
    private static readonly AsyncLocal<Budget?> s_current = new();
    private readonly MemoryAllocator _inner = Create();

    /// <summary>Counts allocations against <paramref name="bytes"/> until disposed; <paramref name="input"/> names the image in the error.</summary>
    internal static Budget Scope(long bytes, string input)
    {
        var budget = new Budget(bytes, input, s_current.Value);
        s_current.Value = budget;
        return budget;
    }

    protected override int GetBufferCapacityInBytes() => BlockBytes;

    public override IMemoryOwner<T> Allocate<T>(int length, AllocationOptions options = AllocationOptions.None)
    {
        if (s_current.Value is { } budget) budget.Take((long)length * Unsafe.SizeOf<T>());
        return _inner.Allocate<T>(length, options);
    }

    public override void ReleaseRetainedResources() => _inner.ReleaseRetainedResources();

    /// <summary>One scope's count; disposing it ends the scope.</summary>
    internal sealed class Budget(long limit, string input, Budget? previous) : IDisposable
    {
        private long _used;

        /// <summary>Bytes counted so far.</summary>
        public long Used => Interlocked.Read(ref _used);

        public void Dispose() => s_current.Value = previous;

        public void Take(long bytes)
        {
            long used = Interlocked.Add(ref _used, bytes);
            if (used > limit)
                throw new InvalidInputException(input, $"decoding needs more than {limit / (1 << 20):N0} MiB of pixel buffers (ResourceLimits.MaxImagePixels bounds it); nothing more was allocated");
        }
    }
}
