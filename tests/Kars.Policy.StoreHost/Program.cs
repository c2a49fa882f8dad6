namespace Kars.Policy.StoreHost;

/// <summary>Usage: <c>Kars.Policy.StoreHost file|redis|fuzz …</c>. Each mode lives in its own file.</summary>
internal static class Program
{
    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 0)
        {
            await Console.Error.WriteLineAsync("usage: Kars.Policy.StoreHost file|redis|fuzz ...").ConfigureAwait(false);
            return 2;
        }

        return args[0] switch
        {
            "file" => await FileHost.RunAsync(args[1..]).ConfigureAwait(false),
            "redis" => await RedisHost.RunAsync(args[1..]).ConfigureAwait(false),
            "fuzz" => await FuzzHost.RunAsync(args[1..]).ConfigureAwait(false),
            _ => 2,
        };
    }
}
