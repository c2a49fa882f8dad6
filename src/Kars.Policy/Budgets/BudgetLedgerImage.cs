using NodaTime;

namespace Kars.Policy.Budgets;

/// <summary>
/// A copy of a ledger's values (counters, open and recently closed leases), taken under the store's lock so that
/// the file store can format its compaction snapshot after releasing it. Copying values is a few field reads per
/// counter; formatting them as text is what takes time.
/// </summary>
internal sealed class BudgetLedgerImage
{
    private BudgetLedgerImage(long sequence, long nextLeaseId, Counter[] counters, Forgotten[] forgotten, Lease[] openLeases, BudgetClosedLease[] closedLeases)
    {
        ForgottenKeys = forgotten;
        Sequence = sequence;
        NextLeaseId = nextLeaseId;
        Counters = counters;
        OpenLeases = openLeases;
        ClosedLeases = closedLeases;
    }

    public long Sequence { get; }

    public long NextLeaseId { get; }

    public Counter[] Counters { get; }

    /// <summary>Keys whose periods before an instant were pruned (written as <c>F</c> records).</summary>
    public Forgotten[] ForgottenKeys { get; }

    public Lease[] OpenLeases { get; }

    public BudgetClosedLease[] ClosedLeases { get; }

    /// <summary>Copies the ledger's values. The caller holds the lock that guards <paramref name="ledger"/>.</summary>
    public static BudgetLedgerImage Capture(BudgetLedger ledger, long sequence)
    {
        var counters = new List<Counter>(ledger.Keys.Count * BudgetPeriods.WindowCount);
        var forgotten = new List<Forgotten>();
        foreach (BudgetKeyState key in ledger.Keys.Values)
        {
            if (key.ForgottenBefore != Instant.MinValue)
            {
                forgotten.Add(new Forgotten(key.Key, key.ForgottenBefore));
            }

            foreach (BudgetCounter c in key.Counters)
            {
                counters.Add(new Counter(key.Key, c.Window, c.Start, c.End, c.Used, c.Held));
            }
        }

        var open = new Lease[ledger.OpenLeases.Count];
        int i = 0;
        foreach (var pair in ledger.OpenLeases)
        {
            BudgetOpenLease lease = pair.Value;
            open[i++] = new Lease(pair.Key, lease.At, lease.ExpiresAt, lease.Tokens, lease.Key.Key, lease.Parent?.Key);
        }

        return new BudgetLedgerImage(sequence, ledger.NextLeaseId, [.. counters], [.. forgotten], open, ledger.ClosedLeases.ToArray());
    }

    /// <summary>One counter's values.</summary>
    public readonly record struct Counter(string Key, BudgetWindow Window, Instant Start, Instant End, long Used, long Held);

    /// <summary>A key whose periods ending before <paramref name="Before"/> were pruned.</summary>
    public readonly record struct Forgotten(string Key, Instant Before);

    /// <summary>One open lease's values.</summary>
    public readonly record struct Lease(long Id, Instant At, Instant ExpiresAt, long Tokens, string Key, string? Parent);
}
