using System.Globalization;
using Kars.Policy.Budgets;
using NodaTime;

namespace Kars.Policy.StoreHost;

/// <summary>
/// <c>fuzz DIR SEED ROUND COMPACT</c>: opens a <see cref="FileBudgetStore"/> in DIR (compacting every COMPACT records)
/// and runs a random sequence of operations on key <c>k</c> (parent <c>t</c>) until it is killed, one at a time. Before
/// each operation it prints <c>begin …</c> and after the store acknowledged it <c>ack …</c>, so the test knows every
/// acknowledged operation and the one that may have been in flight when it killed the process:
/// every line ends in <c> .</c> so that a line cut short by the kill is recognisable;
/// <c>begin R TOKENS</c> / <c>ack R LEASE TOKENS</c> (admission), <c>begin S LEASE ACTUAL</c> / <c>ack S LEASE STATUS CHARGED</c>
/// (settlement), <c>begin A LEASE</c> / <c>ack A LEASE STATUS CHARGED</c> (abandonment). Every instant is explicit
/// (<c>2100-01-01T10:00Z</c> + ROUND × 100 s + 1 ms per operation) and leases last a day, so nothing expires.
/// </summary>
internal static class FuzzHost
{
    public static readonly BudgetLevel Parent = new("t", new BudgetLimits(day: 1_000_000_000));
    public static readonly BudgetLevel Key = new("k", new BudgetLimits(day: 1_000_000_000));

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length < 4)
        {
            await Console.Error.WriteLineAsync("usage: fuzz DIR SEED ROUND COMPACT").ConfigureAwait(false);
            return 2;
        }

        var random = new Random(int.Parse(args[1], CultureInfo.InvariantCulture));
        int round = int.Parse(args[2], CultureInfo.InvariantCulture);
        var options = new FileBudgetStoreOptions { CompactAfterRecords = long.Parse(args[3], CultureInfo.InvariantCulture) };
        await using FileBudgetStore store = await FileBudgetStore.OpenAsync(args[0], options).ConfigureAwait(false);
        var output = Console.Out;
        await output.WriteLineAsync("ready").ConfigureAwait(false);
        Instant at = Instant.FromUtc(2100, 1, 1, 10, 0) + Duration.FromSeconds(100 * round);
        var open = new List<long>();
        var closed = new List<long>();
        for (int i = 0; i < 1_000_000; i++)
        {
            at += Duration.FromMilliseconds(1);
            int op = random.Next(100);
            if (op < 50 || open.Count == 0)
            {
                long tokens = random.Next(0, 101);
                await output.WriteLineAsync(Line("begin R", tokens)).ConfigureAwait(false);
                BudgetDecision d = await store.TryReserveAsync(new BudgetRequest(Key, tokens, TimeSpan.FromDays(1), Parent, at: at)).ConfigureAwait(false);
                if (!d.IsAdmitted)
                {
                    await Console.Error.WriteLineAsync("unexpected rejection: " + d).ConfigureAwait(false);
                    return 3;
                }

                open.Add(d.Lease.Id);
                await output.WriteLineAsync(Line("ack R", d.Lease.Id, tokens)).ConfigureAwait(false);
            }
            else if (op < 90 || closed.Count == 0)
            {
                int index = random.Next(open.Count);
                long id = open[index];
                open.RemoveAt(index);
                closed.Add(id);
                BudgetSettlement s;
                if (op < 75)
                {
                    long actual = random.Next(0, 151);
                    await output.WriteLineAsync(Line("begin S", id, actual)).ConfigureAwait(false);
                    s = await store.SettleAsync(id, actual, at).ConfigureAwait(false);
                    await output.WriteLineAsync(Line("ack S", id, (long)s.Status, s.Charged)).ConfigureAwait(false);
                }
                else
                {
                    await output.WriteLineAsync(Line("begin A", id)).ConfigureAwait(false);
                    s = await store.AbandonAsync(id, at).ConfigureAwait(false);
                    await output.WriteLineAsync(Line("ack A", id, (long)s.Status, s.Charged)).ConfigureAwait(false);
                }
            }
            else
            {
                // A repeat: must change nothing and write nothing.
                long id = closed[random.Next(closed.Count)];
                await output.WriteLineAsync(Line("begin A", id)).ConfigureAwait(false);
                BudgetSettlement s = await store.AbandonAsync(id, at).ConfigureAwait(false);
                await output.WriteLineAsync(Line("ack A", id, (long)s.Status, s.Charged)).ConfigureAwait(false);
            }
        }

        return 0;
    }

    private static string Line(string head, params long[] values)
        => head + " " + string.Join(' ', values.Select(v => v.ToString(CultureInfo.InvariantCulture))) + " .";
}
