using System.Globalization;
using Kars.Policy.Budgets;
using NodaTime;
using NodaTime.Text;

namespace Kars.Policy.StoreHost;

/// <summary>
/// <c>file DIR [CALLERS] [TOKENS] [AT]</c>: opens a <see cref="FileBudgetStore"/> on the real file system in DIR and
/// admits requests on key <c>crash</c> from CALLERS concurrent loops (default 16), TOKENS tokens each (default 3),
/// printing <c>ack LEASEID TOKENS</c> after each admission is acknowledged, until the process is killed.
/// AT (an ISO instant such as <c>2100-01-01T12:00:00Z</c>) is passed as every request's instant, so the day window
/// and the lease expiry are the caller's and not the wall clock's; without it the store's clock (the system's) decides.
/// Prints <c>ready</c> once the store is open, or <c>in-use DIR</c> and exits 3 when another store owns DIR.
/// </summary>
internal static class FileHost
{
    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length < 1)
        {
            await Console.Error.WriteLineAsync("usage: file DIR [CALLERS] [TOKENS] [AT]").ConfigureAwait(false);
            return 2;
        }

        int callers = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 16;
        long tokens = args.Length > 2 ? long.Parse(args[2], CultureInfo.InvariantCulture) : 3;
        Instant? at = args.Length > 3 ? InstantPattern.ExtendedIso.Parse(args[3]).Value : null;
        var level = new BudgetLevel("crash", new BudgetLimits(day: long.MaxValue / 4));
        var output = TextWriter.Synchronized(Console.Out);
        FileBudgetStore opened;
        try
        {
            opened = await FileBudgetStore.OpenAsync(args[0]).ConfigureAwait(false);
        }
        catch (BudgetStoreInUseException ex)
        {
            await output.WriteLineAsync("in-use " + ex.Location).ConfigureAwait(false);
            await output.FlushAsync().ConfigureAwait(false);
            return 3;
        }

        await using FileBudgetStore store = opened;
        await output.WriteLineAsync("ready").ConfigureAwait(false);
        await output.FlushAsync().ConfigureAwait(false);

        var loops = Enumerable.Range(0, callers).Select(_ => Task.Run(async () =>
        {
            while (true)
            {
                BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(level, tokens, TimeSpan.FromHours(1), at: at)).ConfigureAwait(false);
                if (decision.IsAdmitted)
                {
                    await output.WriteLineAsync($"ack {decision.Lease.Id.ToString(CultureInfo.InvariantCulture)} {tokens.ToString(CultureInfo.InvariantCulture)}").ConfigureAwait(false);
                    await output.FlushAsync().ConfigureAwait(false);
                }
            }
        }));
        await Task.WhenAll(loops).ConfigureAwait(false);
        return 0;
    }
}
