using StackExchange.Redis;

namespace Kars.Policy.Redis.Tests.Infrastructure;

/// <summary>One non-persistent <c>redis-server</c> shared by the tests of the <see cref="RedisCollection"/>; each
/// test isolates itself with its own key prefix.</summary>
public sealed class RedisServerFixture : IAsyncLifetime
{
    private RedisServer? _server;
    private ConnectionMultiplexer? _connection;

    /// <summary>The running server.</summary>
    internal RedisServer Server => _server ?? throw new InvalidOperationException("fixture not initialised");

    /// <summary>A connection shared by the tests.</summary>
    public ConnectionMultiplexer Connection => _connection ?? throw new InvalidOperationException("fixture not initialised");

    /// <summary>A fresh key prefix for one test.</summary>
    public static string NewPrefix() => "t" + Guid.NewGuid().ToString("N")[..12] + ":";

    public async Task InitializeAsync()
    {
        _server = await RedisServer.StartAsync().ConfigureAwait(false);
        _connection = await ConnectionMultiplexer.ConnectAsync(_server.ConnectionString).ConfigureAwait(false);
    }

    public async Task DisposeAsync()
    {
        if (_connection is not null)
        {
            await _connection.DisposeAsync().ConfigureAwait(false);
        }

        if (_server is not null)
        {
            await _server.DisposeAsync().ConfigureAwait(false);
        }
    }
}

/// <summary>Tests sharing one redis-server.</summary>
[CollectionDefinition(Name)]
public sealed class RedisCollection : ICollectionFixture<RedisServerFixture>
{
    public const string Name = "redis";
}
