using System.Runtime.CompilerServices;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.AI;

namespace Kars.Policy.AI.Tests;

/// <summary>Stands for the model: answers with what a test scripts, and counts the calls that reached it.</summary>
internal sealed class FakeChatClient : IChatClient
{
    private int _calls;
    private int _streamsDisposed;

    public Func<IEnumerable<ChatMessage>, ChatOptions?, CancellationToken, Task<ChatResponse>>? Respond { get; set; }

    public Func<IEnumerable<ChatMessage>, ChatOptions?, CancellationToken, IAsyncEnumerable<ChatResponseUpdate>>? Stream { get; set; }

    public ChatClientMetadata Metadata { get; set; } = new("fake-provider", new Uri("https://secret-host.example.internal/v1"), "model-a");

    public int Calls => Volatile.Read(ref _calls);

    public int StreamsDisposed => Volatile.Read(ref _streamsDisposed);

    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _calls);
        return Respond!(messages, options, cancellationToken);
    }

    public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _calls);
        return Track(Stream!(messages, options, cancellationToken));
    }

    public object? GetService(Type serviceType, object? serviceKey = null)
        => serviceKey is null && serviceType == typeof(ChatClientMetadata) ? Metadata : serviceKey is null && serviceType.IsInstanceOfType(this) ? this : null;

    public void Dispose()
    {
    }

    /// <summary>A response with the given usage (none when both are null).</summary>
    public static ChatResponse Response(long? input, long? output, string? model = "model-a-2026")
        => new(new ChatMessage(ChatRole.Assistant, "hello"))
        {
            ModelId = model,
            Usage = input is null && output is null ? null : new UsageDetails { InputTokenCount = input, OutputTokenCount = output, TotalTokenCount = input + output },
        };

    /// <summary>Text updates, then the given usage updates, as providers stream them.</summary>
    public static async IAsyncEnumerable<ChatResponseUpdate> Updates(IEnumerable<UsageDetails> usages, [EnumeratorCancellation] CancellationToken cancellationToken = default, int textUpdates = 3, string? model = "model-a-2026")
    {
        for (int i = 0; i < textUpdates; i++)
        {
            await Task.Yield();
            cancellationToken.ThrowIfCancellationRequested();
            yield return new ChatResponseUpdate(ChatRole.Assistant, "part" + i) { ModelId = model };
        }

        foreach (UsageDetails usage in usages)
        {
            await Task.Yield();
            yield return new ChatResponseUpdate { ModelId = model, Contents = [new UsageContent(usage)] };
        }
    }

    private async IAsyncEnumerable<ChatResponseUpdate> Track(IAsyncEnumerable<ChatResponseUpdate> inner, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        try
        {
            await foreach (ChatResponseUpdate update in inner.WithCancellation(cancellationToken))
            {
                yield return update;
            }
        }
        finally
        {
            Interlocked.Increment(ref _streamsDisposed);
        }
    }
}

/// <summary>An <see cref="IMeterFactory"/> whose meters are scoped to it, so a <c>MetricCollector</c> sees only one test's measurements.</summary>
internal sealed class TestMeterFactory : IMeterFactory
{
    private readonly List<Meter> _meters = [];

    public Meter Create(MeterOptions options)
    {
        var meter = new Meter(new MeterOptions(options.Name) { Version = options.Version, Tags = options.Tags, Scope = this });
        lock (_meters)
        {
            _meters.Add(meter);
        }

        return meter;
    }

    public void Dispose()
    {
        lock (_meters)
        {
            foreach (Meter meter in _meters)
            {
                meter.Dispose();
            }
        }
    }
}
