namespace Kars.Policy.StoreHost;

/// <summary>STUB: the redis store's child-process mode.</summary>
internal static class RedisHost
{
    public static Task<int> RunAsync(string[] args)
    {
        _ = args;
        return Task.FromResult(2);
    }
}
