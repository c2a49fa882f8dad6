namespace Kars.Policy.StoreHost;

/// <summary>STUB: the file store's child-process mode.</summary>
internal static class FileHost
{
    public static Task<int> RunAsync(string[] args)
    {
        _ = args;
        return Task.FromResult(2);
    }
}
