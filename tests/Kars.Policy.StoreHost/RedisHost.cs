using System.Globalization;
using Kars.Policy.Budgets;
using Kars.Policy.Redis;
using NodaTime;
using NodaTime.Text;

namespace Kars.Policy.StoreHost;

/// <summary>
/// The Redis store's child-process mode, for kill-and-restart tests. Admits in a loop against one key and prints
/// one line per outcome, flushed before the next admission starts:
/// <c>ADMITTED {leaseId}</c> (acknowledged: the store returned the admission), <c>REJECTED</c>,
/// <c>UNAVAILABLE</c> (the store threw <see cref="BudgetStoreUnavailableException"/>; the loop goes on).
/// It prints <c>READY</c> first and <c>EXHAUSTED</c> and exits 0 after <c>--stop-after-rejections</c> rejections.
/// </summary>
/// <remarks>
/// Usage: <c>redis --connection CONN --prefix P --key K --day-limit N --tokens T [--at RFC3339]
/// [--lease-seconds S] [--stop-after-rejections R] [--delay-ms D]</c>.
/// </remarks>
internal static class RedisHost
{
    public static async Task<int> RunAsync(string[] args)
    {
        Dictionary<string, string> options;
        try
        {
            options = Parse(args);
        }
        catch (ArgumentException ex)
        {
            await Console.Error.WriteLineAsync(ex.Message).ConfigureAwait(false);
            return 2;
        }

        string connection = options["--connection"];
        string prefix = options["--prefix"];
        string key = options["--key"];
        long dayLimit = long.Parse(options["--day-limit"], CultureInfo.InvariantCulture);
        long tokens = long.Parse(options["--tokens"], CultureInfo.InvariantCulture);
        Instant? at = options.TryGetValue("--at", out string? atText) ? InstantPattern.ExtendedIso.Parse(atText).Value : null;
        var lease = TimeSpan.FromSeconds(options.TryGetValue("--lease-seconds", out string? ls) ? int.Parse(ls, CultureInfo.InvariantCulture) : 3600);
        int stopAfter = options.TryGetValue("--stop-after-rejections", out string? sa) ? int.Parse(sa, CultureInfo.InvariantCulture) : 1;
        int delayMs = options.TryGetValue("--delay-ms", out string? d) ? int.Parse(d, CultureInfo.InvariantCulture) : 0;

        var storeOptions = new RedisBudgetStoreOptions
        {
            Configuration = connection,
            KeyPrefix = prefix,
            OperationTimeout = TimeSpan.FromSeconds(2),
            ConnectTimeout = TimeSpan.FromSeconds(2),
        };
        await using var store = new RedisBudgetStore(storeOptions);
        var level = new BudgetLevel(key, new BudgetLimits(day: dayLimit));
        using var stdout = new StreamWriter(Console.OpenStandardOutput()) { AutoFlush = true };
        await stdout.WriteLineAsync("READY").ConfigureAwait(false);

        int rejections = 0;
        while (rejections < stopAfter)
        {
            try
            {
                BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(level, tokens, lease, at: at)).ConfigureAwait(false);
                if (decision.IsAdmitted)
                {
                    await stdout.WriteLineAsync("ADMITTED " + decision.Lease.Id.ToString(CultureInfo.InvariantCulture)).ConfigureAwait(false);
                }
                else
                {
                    rejections++;
                    await stdout.WriteLineAsync("REJECTED").ConfigureAwait(false);
                }
            }
            catch (BudgetStoreUnavailableException)
            {
                await stdout.WriteLineAsync("UNAVAILABLE").ConfigureAwait(false);
                await Task.Delay(50).ConfigureAwait(false);
            }

            if (delayMs > 0)
            {
                await Task.Delay(delayMs).ConfigureAwait(false);
            }
        }

        await stdout.WriteLineAsync("EXHAUSTED").ConfigureAwait(false);
        return 0;
    }

    private static Dictionary<string, string> Parse(string[] args)
    {
        var options = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i += 2)
        {
            if (i + 1 >= args.Length || !args[i].StartsWith("--", StringComparison.Ordinal))
            {
                throw new ArgumentException($"redis host: bad argument '{args[i]}'");
            }

            options[args[i]] = args[i + 1];
        }

        foreach (string required in new[] { "--connection", "--prefix", "--key", "--day-limit", "--tokens" })
        {
            if (!options.ContainsKey(required))
            {
                throw new ArgumentException($"redis host: {required} is required");
            }
        }

        return options;
    }
}
