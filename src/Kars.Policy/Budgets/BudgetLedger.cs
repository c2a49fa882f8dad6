using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using NodaTime;

namespace Kars.Policy.Budgets;

/// <summary>The counters of one key in one period of one window.</summary>
internal sealed class BudgetCounter(BudgetWindow window, Instant start, Instant end)
{
    public BudgetWindow Window { get; } = window;

    public Instant Start { get; } = start;

    public Instant End { get; } = end;

    /// <summary>Tokens charged (settled, abandoned or expired leases). May exceed the limit.</summary>
    public long Used;

    /// <summary>Tokens held by open leases.</summary>
    public long Held;
}

/// <summary>All counters of one budget key: the current period of each window plus recent past periods.</summary>
internal sealed class BudgetKeyState(string key)
{
    private readonly BudgetCounter?[] _current = new BudgetCounter?[BudgetPeriods.WindowCount];
    private readonly Dictionary<(BudgetWindow, Instant), BudgetCounter> _periods = [];

    public string Key { get; } = key;

    /// <summary>Gets a number that changes whenever a counter of this key is pruned, so cached references to
    /// this key's counters (<see cref="BudgetCounterSet"/>) can tell that they may be stale.</summary>
    public int Version { get; private set; }

    /// <summary>Gets the end of the latest period pruned from this key: its counters before that instant are gone,
    /// so a request at an earlier instant cannot be decided (it would be admitted on fresh, empty counters).</summary>
    public Instant ForgottenBefore { get; private set; } = Instant.MinValue;

    /// <summary>Raises <see cref="ForgottenBefore"/> (recovery restores it from a snapshot).</summary>
    public void Forget(Instant before)
    {
        if (before > ForgottenBefore)
        {
            ForgottenBefore = before;
        }
    }

    /// <summary>Gets or sets the number of open leases that hold tokens at this key (as the key or as the parent);
    /// a key with open leases is never evicted.</summary>
    public int OpenLeases { get; set; }

    /// <summary>Gets or sets the counter set of the last admission for this key (owned by the ledger).</summary>
    public BudgetCounterSet? CachedSet { get; set; }

    public IEnumerable<BudgetCounter> Counters => _periods.Values;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public BudgetCounter Get(int window, BudgetPeriodSet periods, Instant now)
    {
        BudgetCounter? counter = _current[window];
        Instant start = periods.Start(window);
        return counter is not null && counter.Start == start ? counter : GetSlow((BudgetWindow)window, start, periods.End(window), now);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public BudgetCounter GetSlow(BudgetWindow window, Instant start, Instant end, Instant now)
    {
        if (!_periods.TryGetValue((window, start), out BudgetCounter? counter))
        {
            Prune(now);
            counter = new BudgetCounter(window, start, end);
            _periods.Add((window, start), counter);
        }

        BudgetCounter? current = _current[(int)window];
        if (current is null || current.Start < start)
        {
            _current[(int)window] = counter;
        }

        return counter;
    }

    /// <summary>Whether the key has no open lease and every counter's period ended more than an hour before
    /// <paramref name="now"/> (the same grace as <see cref="Prune"/>: status reads of the period that just ended).</summary>
    public bool IsIdle(Instant now)
    {
        if (OpenLeases != 0)
        {
            return false;
        }

        Instant horizon = now - Duration.FromHours(1);
        foreach (BudgetCounter c in _periods.Values)
        {
            if (c.End >= horizon || c.Held != 0)
            {
                return false;
            }
        }

        return true;
    }

    private void Prune(Instant now)
    {
        // Ended periods without holds are kept for an hour (status of the previous period, late settlements
        // keep their own references); after that only history is lost, never an open hold.
        Instant horizon = now - Duration.FromHours(1);
        foreach (var pair in _periods)
        {
            BudgetCounter c = pair.Value;
            if (c.End < horizon && c.Held == 0 && !ReferenceEquals(_current[(int)c.Window], c))
            {
                _periods.Remove(pair.Key);
                Forget(c.End);
                Version++;
            }
        }
    }
}

/// <summary>The ten counters (five windows, two levels) a lease holds tokens in.</summary>
[InlineArray(10)]
internal struct BudgetCounterRefs
{
    private BudgetCounter? _element;
}

/// <summary>
/// The counters one admission holds tokens in: the current period of each window of the key and, when there is a
/// parent, of the parent. Immutable once built, so many leases share one set; the ledger caches the set of the last
/// admission per key and reuses it while the periods, the parent and both keys' <see cref="BudgetKeyState.Version"/>
/// are unchanged (then every reference is still the counter a fresh lookup would return).
/// </summary>
internal sealed class BudgetCounterSet
{
    /// <summary>The counters: 0–4 the key's windows, 5–9 the parent's (null without a parent).</summary>
    public BudgetCounterRefs Counters;

    /// <summary>How many slots are in use: 5 without a parent, 10 with one. A slot is null when its window is
    /// limited neither at the key nor at the parent (nothing is counted there).</summary>
    public int Count;

    /// <summary>The windows counted (limited at the key or its parent), bit <c>1 &lt;&lt; window</c> (cache validation).</summary>
    public int Mask;

    /// <summary>The period set the counters were looked up for (cache validation).</summary>
    public BudgetPeriodSet? Periods;

    /// <summary>The parent key the counters were looked up for (cache validation).</summary>
    public BudgetKeyState? Parent;

    /// <summary>The key's version at lookup (cache validation).</summary>
    public int KeyVersion;

    /// <summary>The parent's version at lookup (cache validation).</summary>
    public int ParentVersion;
}

/// <summary>Five 64-bit values, one per window.</summary>
[InlineArray(BudgetPeriods.WindowCount)]
internal struct BudgetLimitValues
{
    private long _element;
}

/// <summary>
/// The limits of one level decoded into an array and a bit mask, cached by reference: <see cref="BudgetLimits"/> is
/// immutable and hosts pass the same instance on every call, so decoding happens once per distinct instance.
/// </summary>
internal sealed class BudgetLimitsView
{
    private BudgetLimits? _source;
    private BudgetLimitValues _values;
    private int _mask;

    /// <summary>Decodes <paramref name="limits"/> unless it is the instance decoded last.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public BudgetLimitsView Load(BudgetLimits limits)
    {
        if (!ReferenceEquals(limits, _source))
        {
            Decode(limits);
        }

        return this;
    }

    /// <summary>Gets the limited windows as a bit mask (bit <c>1 &lt;&lt; window</c>).</summary>
    public int Mask => _mask;

    /// <summary>Gets the limit of window <paramref name="window"/> (0–4), when it is limited.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryGetLimit(int window, out long limit)
    {
        limit = _values[window];
        return (_mask & (1 << window)) != 0;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Decode(BudgetLimits limits)
    {
        int mask = 0;
        for (int w = 0; w < BudgetPeriods.WindowCount; w++)
        {
            mask |= limits.TryGetLimit((BudgetWindow)w, out long limit) ? 1 << w : 0;
            _values[w] = limit;
        }

        _mask = mask;
        _source = limits;
    }
}

/// <summary>An open lease.</summary>
internal struct BudgetOpenLease
{
    public BudgetKeyState Key;
    public BudgetKeyState? Parent;
    public Instant At;
    public Instant ExpiresAt;
    public long Tokens;
    public BudgetCounterSet Counters;
}

/// <summary>A recently closed lease, remembered so settlement stays idempotent.</summary>
internal struct BudgetClosedLease
{
    public long Id;
    public BudgetSettlementStatus Status;
    public long Charged;
}

/// <summary>Creates the leases of a store (stores implement it by calling <see cref="BudgetStore"/>'s protected
/// lease factory, which only a store can reach).</summary>
internal interface IBudgetLeaseIssuer
{
    BudgetLease Issue(long leaseId, long tokens, Instant expiresAt);
}

/// <summary>
/// The budget state machine shared by the in-memory and file stores. Not thread-safe: callers hold one lock
/// around every call, which is what makes admission atomic across every window and level.
/// </summary>
internal sealed class BudgetLedger
{
    /// <summary>How many closed leases are remembered for idempotent settlement (a power of two).</summary>
    public const int ClosedLeaseMemory = 8192;

    private readonly Dictionary<string, BudgetKeyState> _keys = new(StringComparer.Ordinal);
    private readonly Dictionary<long, BudgetOpenLease> _open = [];
    private readonly BudgetClosedLease[] _closed = new BudgetClosedLease[ClosedLeaseMemory];
    private readonly List<long> _due = [];
    private readonly List<BudgetKeyState> _evict = [];

    /// <summary>The latest period end any evicted key had counted (see <see cref="EvictIdle"/>); new keys start with it
    /// as their <see cref="BudgetKeyState.ForgottenBefore"/>.</summary>
    private Instant _evictedBefore = Instant.MinValue;
    private BudgetPeriodSet? _periods;
    private readonly BudgetLimitsView _ownLimits = new();
    private readonly BudgetLimitsView _parentLimits = new();
    private string? _lastKeyName;
    private BudgetKeyState? _lastKey;
    private string? _lastParentName;
    private BudgetKeyState? _lastParent;
    private Instant _nextExpiry = Instant.MaxValue;
    private TimeSpan _leaseSpan;
    private Duration _leaseDuration;

    /// <summary>Gets the next lease id to issue.</summary>
    public long NextLeaseId { get; private set; } = 1;

    public IReadOnlyDictionary<string, BudgetKeyState> Keys => _keys;

    public IReadOnlyDictionary<long, BudgetOpenLease> OpenLeases => _open;

    public ReadOnlySpan<BudgetClosedLease> ClosedLeases => _closed;

    public BudgetDecision Reserve(IBudgetLeaseIssuer issuer, in BudgetRequest request, Instant now)
    {
        ExpireDue(now);
        BudgetPeriodSet periods = Periods(now);
        BudgetLevel level = request.Level;
        BudgetLevel? parent = request.Parent;
        BudgetKeyState key = GetKey(level.Key, ref _lastKeyName, ref _lastKey);
        BudgetKeyState? parentKey = parent is null ? null : GetKey(parent.Key, ref _lastParentName, ref _lastParent);
        if (now < key.ForgottenBefore || (parentKey is not null && now < parentKey.ForgottenBefore))
        {
            // Time went back into a period this store has already pruned: its spend is forgotten, so any answer
            // would be made on empty counters. Refuse instead of admitting on them.
            throw Forgotten(now, parentKey is not null && now < parentKey.ForgottenBefore ? parentKey : key);
        }

        long tokens = request.Tokens;

        BudgetLimitsView own = _ownLimits.Load(level.Limits);
        BudgetLimitsView? inherited = parent is null ? null : _parentLimits.Load(parent.Limits);
        BudgetCounterSet set = CountersFor(key, parentKey, periods, now, own.Mask | (inherited?.Mask ?? 0));
        ref BudgetCounterRefs counters = ref set.Counters;
        bool fits = true;
        bool retryable = true;
        int blocking = -1;
        for (int w = 0; w < BudgetPeriods.WindowCount; w++)
        {
            if (own.TryGetLimit(w, out long limit))
            {
                BudgetCounter c = counters[w]!;
                if (!Fits(c, tokens, limit))
                {
                    fits = false;
                    retryable &= tokens <= limit && limit > 0;
                    blocking = Later(blocking, w, periods);
                }
            }
        }

        if (inherited is not null)
        {
            for (int w = 0; w < BudgetPeriods.WindowCount; w++)
            {
                if (inherited.TryGetLimit(w, out long parentLimit))
                {
                    BudgetCounter pc = counters[w + 5]!;
                    if (!Fits(pc, tokens, parentLimit))
                    {
                        fits = false;
                        retryable &= tokens <= parentLimit && parentLimit > 0;
                        blocking = Later(blocking, w, periods);
                    }
                }
            }
        }

        BudgetWindow? blockingWindow = blocking < 0 ? null : (BudgetWindow)blocking;
        if (!fits && request.Mode == BudgetMode.Enforce)
        {
            // A request larger than some window's whole limit can never fit: no retry delay would be honest.
            TimeSpan? retryAfter = retryable ? BudgetPeriods.RetryAfter(now, periods.End(blocking)) : null;
            return Decide(BudgetReason.BudgetExceeded, tokens, default, retryAfter, now, own, inherited, counters, blockingWindow);
        }

        int count = set.Count;
        for (int i = 0; i < count; i++)
        {
            if (counters[i] is { } held && held.Held > long.MaxValue - tokens)
            {
                // The hold would not be representable (only reachable in Observe mode with ~1024 maximal open
                // leases): fail closed in every mode rather than wrap or lose track of held tokens.
                return Decide(BudgetReason.BudgetExceeded, tokens, default, retryAfter: null, now, own, inherited, counters, blockingWindow);
            }
        }

        // Everything that can fail is computed before the first counter changes (BudgetRequest bounds the lease and
        // the instant, so this cannot overflow; the order keeps it that way if a bound ever moves).
        if (request.LeaseDuration != _leaseSpan)
        {
            _leaseSpan = request.LeaseDuration;
            _leaseDuration = Duration.FromTimeSpan(_leaseSpan);
        }

        Instant expiresAt = now + _leaseDuration;
        for (int i = 0; i < count; i++)
        {
            if (counters[i] is { } c)
            {
                c.Held += tokens;
            }
        }

        long id = NextLeaseId++;
        ref BudgetOpenLease entry = ref CollectionsMarshal.GetValueRefOrAddDefault(_open, id, out _);
        entry.Key = key;
        entry.Parent = parentKey;
        entry.At = now;
        entry.ExpiresAt = expiresAt;
        entry.Tokens = tokens;
        entry.Counters = set;
        if (expiresAt < _nextExpiry)
        {
            _nextExpiry = expiresAt;
        }

        key.OpenLeases++;
        if (parentKey is not null)
        {
            parentKey.OpenLeases++;
        }

        return Decide(
            fits ? BudgetReason.Admitted : BudgetReason.Observed,
            tokens,
            issuer.Issue(id, tokens, expiresAt),
            retryAfter: null,
            now,
            own,
            inherited,
            counters,
            blockingWindow);
    }

    public BudgetSettlement Settle(long id, long actual, Instant now) => Finish(id, actual, abandon: false, now);

    private static BudgetPeriodPrunedException Forgotten(Instant now, BudgetKeyState key)
        => new(
            $"The budget store cannot decide a request at {now} for key '{key.Key}': the store has already pruned the periods before {key.ForgottenBefore} (time went back), so their spend is no longer known. Requests may arrive at most about an hour out of order.",
            now,
            key.ForgottenBefore);

    public BudgetSettlement Abandon(long id, Instant now) => Finish(id, 0, abandon: true, now);

    public BudgetStatus Status(BudgetLevel level, BudgetLevel? parent, Instant now)
    {
        ExpireDue(now);
        BudgetPeriodSet periods = BudgetPeriodSet.For(now);
        BudgetKeyState key = GetKey(level.Key);
        BudgetKeyState? parentKey = parent is null ? null : GetKey(parent.Key);
        var windows = new List<BudgetWindowStatus>(BudgetPeriods.WindowCount);
        for (int w = 0; w < BudgetPeriods.WindowCount; w++)
        {
            var window = (BudgetWindow)w;
            bool own = level.Limits.TryGetLimit(window, out long limit);
            long parentLimit = 0;
            bool inherited = parent is not null && parent.Limits.TryGetLimit(window, out parentLimit);
            if (!own && !inherited)
            {
                continue;
            }

            BudgetCounter c = key.GetSlow(window, periods.Start(w), periods.End(w), now);
            long remaining = long.MaxValue;
            if (own)
            {
                remaining = Left(c, limit);
            }

            if (inherited)
            {
                remaining = Math.Min(remaining, Left(parentKey!.GetSlow(window, periods.Start(w), periods.End(w), now), parentLimit));
            }

            windows.Add(new BudgetWindowStatus(window, c.Start, c.End, own ? limit : null, c.Used, c.Held, remaining));
        }

        return new BudgetStatus(level.Key, now, windows);
    }

    /// <summary>Charges every open lease whose expiry is at or before <paramref name="now"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void ExpireDue(Instant now)
    {
        if (now >= _nextExpiry)
        {
            ExpireDueSlow(now);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ExpireDueSlow(Instant now)
    {
        Instant next = Instant.MaxValue;
        _due.Clear();
        foreach (var pair in _open)
        {
            if (pair.Value.ExpiresAt <= now)
            {
                _due.Add(pair.Key);
            }
            else if (pair.Value.ExpiresAt < next)
            {
                next = pair.Value.ExpiresAt;
            }
        }

        foreach (long id in _due)
        {
            _open.Remove(id, out BudgetOpenLease lease);
            Close(id, lease, lease.Tokens, BudgetSettlementStatus.Expired);
        }

        _nextExpiry = next;
    }

    // ----- Recovery (file store): apply logged operations without re-deciding them. -----

    public void RestoreHold(long id, Instant at, Instant expiresAt, long tokens, string key, string? parent, bool addToCounters)
    {
        if (id <= 0 || tokens is < 0 or > BudgetStore.MaxTokens)
        {
            throw new FormatException($"lease {id} holds {tokens} tokens (a lease id is positive, a hold 0 to {BudgetStore.MaxTokens})");
        }

        if (_open.ContainsKey(id))
        {
            throw new FormatException($"lease {id} is admitted again while it is open (a forged or duplicated record)");
        }

        if (addToCounters && id < NextLeaseId)
        {
            // Lease ids are issued in increasing order and logged in that order: a log record with an older id is forged.
            throw new FormatException($"lease {id} is admitted after lease {NextLeaseId - 1} (lease ids only grow; a forged or duplicated record)");
        }

        var keyState = GetKey(key);
        var parentState = parent is null ? null : GetKey(parent);
        // Not cached (no Periods): recovery runs once, and the set must name the periods of the lease's own instant.
        var set = new BudgetCounterSet { Count = parentState is null ? 5 : 10, Mask = (1 << BudgetPeriods.WindowCount) - 1 };
        for (int w = 0; w < BudgetPeriods.WindowCount; w++)
        {
            var (start, end) = BudgetPeriods.Get((BudgetWindow)w, at);
            set.Counters[w] = keyState.GetSlow((BudgetWindow)w, start, end, at);
            if (parentState is not null)
            {
                set.Counters[w + 5] = parentState.GetSlow((BudgetWindow)w, start, end, at);
            }
        }

        if (addToCounters)
        {
            for (int i = 0; i < set.Count; i++)
            {
                BudgetCounter c = set.Counters[i]!;
                c.Held = SaturatingAdd(c.Held, tokens);
            }
        }

        if (_open.TryGetValue(id, out BudgetOpenLease replaced))
        {
            replaced.Key.OpenLeases--;
            if (replaced.Parent is not null)
            {
                replaced.Parent.OpenLeases--;
            }
        }

        keyState.OpenLeases++;
        if (parentState is not null)
        {
            parentState.OpenLeases++;
        }

        _open[id] = new BudgetOpenLease { Key = keyState, Parent = parentState, At = at, ExpiresAt = expiresAt, Tokens = tokens, Counters = set };
        NextLeaseId = Math.Max(NextLeaseId, id + 1);
        if (expiresAt < _nextExpiry)
        {
            _nextExpiry = expiresAt;
        }
    }

    public void RestoreSettle(long id, long? actual)
    {
        if (actual is < 0 or > BudgetStore.MaxTokens)
        {
            throw new FormatException($"lease {id} settled with {actual} tokens (0 to {BudgetStore.MaxTokens})");
        }

        if (!_open.Remove(id, out BudgetOpenLease lease))
        {
            // Only an open lease is ever logged as settled or abandoned (repeats and expiries write nothing).
            throw new FormatException($"lease {id} is settled but is not open (a forged or duplicated record)");
        }

        Close(id, lease, actual ?? lease.Tokens, BudgetSettlementStatus.Settled);
    }

    /// <summary>Restores how far back a key's periods were pruned.</summary>
    public void RestoreForgotten(string key, Instant before) => GetKey(key).Forget(before);

    public void RestoreCounter(string key, BudgetWindow window, Instant start, Instant end, long used, long held)
    {
        if (used < 0 || held < 0)
        {
            // A negative counter would lower the load and admit more than the limit: never accept one.
            throw new FormatException($"negative counter (used {used}, held {held})");
        }

        BudgetCounter c = GetKey(key).GetSlow(window, start, end, start);
        c.Used = used;
        c.Held = held;
    }

    public void RestoreClosed(BudgetClosedLease closed)
    {
        if (closed.Id > 0)
        {
            _closed[closed.Id & (ClosedLeaseMemory - 1)] = closed;
        }
    }

    public void RestoreNextLeaseId(long next) => NextLeaseId = Math.Max(NextLeaseId, next);

    /// <summary>Adds two non-negative counters, sticking at <see cref="long.MaxValue"/> instead of wrapping.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long SaturatingAdd(long a, long b)
    {
        long sum = a + b;
        return sum < 0 ? long.MaxValue : sum;
    }

    private static bool Fits(BudgetCounter c, long tokens, long limit)
    {
        // A saturated load is "at least long.MaxValue": it never fits, whatever the limit. A limit of 0 admits
        // nothing, not even a request of 0 tokens (docs/budgets.md: it is how an operator switches a key off).
        long load = SaturatingAdd(c.Used, c.Held);
        return load != long.MaxValue && limit > 0 && tokens <= limit && load <= limit - tokens;
    }

    private static long Left(BudgetCounter c, long limit)
    {
        long load = SaturatingAdd(c.Used, c.Held);
        return load >= limit ? 0 : limit - load;
    }

    /// <summary>Of two blocking windows (-1 = none yet), the one whose period ends last; the longer on a tie.</summary>
    private static int Later(int current, int window, BudgetPeriodSet periods)
        => current < 0 || periods.End(window) >= periods.End(current) ? window : current;

    /// <summary>Builds a decision with, per limited window, the binding limit (the level with the least room; the
    /// smaller limit on a tie) and the remaining tokens. Allocates nothing.</summary>
    private static BudgetDecision Decide(BudgetReason reason, long tokens, BudgetLease lease, TimeSpan? retryAfter, Instant now, BudgetLimitsView own, BudgetLimitsView? inherited, in BudgetCounterRefs counters, BudgetWindow? blocking)
    {
        var limits = default(BudgetLimitValues);
        var remaining = default(BudgetLimitValues);
        byte present = 0;
        for (int w = 0; w < BudgetPeriods.WindowCount; w++)
        {
            long room = long.MaxValue;
            long bound = long.MaxValue;
            if (own.TryGetLimit(w, out long limit))
            {
                room = Left(counters[w]!, limit);
                bound = limit;
                present |= (byte)(1 << w);
            }

            if (inherited is not null && inherited.TryGetLimit(w, out long parentLimit))
            {
                long parentRoom = Left(counters[w + 5]!, parentLimit);
                if (parentRoom < room || (parentRoom == room && parentLimit < bound))
                {
                    room = parentRoom;
                    bound = parentLimit;
                }

                present |= (byte)(1 << w);
            }

            limits[w] = bound;
            remaining[w] = room;
        }

        return new BudgetDecision(reason, tokens, lease, retryAfter, now, ToWindowValues(limits, present), ToWindowValues(remaining, present), blocking);
    }

    /// <summary>The windows of <paramref name="present"/> (bit <c>1 &lt;&lt; window</c>) with their values, through the
    /// public <see cref="BudgetWindowValues.With"/> (a copy of a small struct; nothing is allocated).</summary>
    private static BudgetWindowValues ToWindowValues(ReadOnlySpan<long> values, byte present)
    {
        var result = default(BudgetWindowValues);
        for (int w = 0; w < values.Length; w++)
        {
            if ((present & (1 << w)) != 0)
            {
                result = result.With((BudgetWindow)w, values[w]);
            }
        }

        return result;
    }

    private BudgetPeriodSet Periods(Instant now)
    {
        BudgetPeriodSet? periods = _periods;
        if (periods is null || !periods.Contains(now))
        {
            periods = BudgetPeriodSet.For(now);
            _periods = periods;
            EvictIdle(now);
        }

        return periods;
    }

    /// <summary>Forgets every key that has no open lease and whose counters all belong to periods that ended more
    /// than an hour before <paramref name="now"/>: it has nothing left to decide with (a new period starts from zero
    /// either way).
    /// Runs when the current hour changes, so at most once per hour of the store's clock.</summary>
    /// <returns>How many keys were evicted.</returns>
    public int EvictIdle(Instant now)
    {
        foreach (var pair in _keys)
        {
            if (pair.Value.IsIdle(now))
            {
                _evict.Add(pair.Value);
            }
        }

        foreach (BudgetKeyState state in _evict)
        {
            // An evicted key's spend is forgotten like a pruned period's: a key created again later inherits this
            // floor, so a request that goes back before it is refused rather than decided on empty counters.
            Instant floor = state.ForgottenBefore;
            foreach (BudgetCounter c in state.Counters)
            {
                floor = c.End > floor ? c.End : floor;
            }

            _evictedBefore = floor > _evictedBefore ? floor : _evictedBefore;
            _keys.Remove(state.Key);
            if (ReferenceEquals(state, _lastKey))
            {
                _lastKey = null;
                _lastKeyName = null;
            }

            if (ReferenceEquals(state, _lastParent))
            {
                _lastParent = null;
                _lastParentName = null;
            }
        }

        int evicted = _evict.Count;
        _evict.Clear();
        return evicted;
    }

    private BudgetKeyState GetKey(string key)
    {
        if (!_keys.TryGetValue(key, out BudgetKeyState? state))
        {
            state = new BudgetKeyState(key);
            state.Forget(_evictedBefore);
            _keys.Add(key, state);
        }

        return state;
    }

    /// <summary>
    /// <see cref="GetKey(string)"/> with a one-entry cache by string reference: hosts usually pass the same key
    /// string (from their <see cref="BudgetLevel"/>) on every call. <see cref="EvictIdle"/> clears the cache when it
    /// removes the cached state, so a cached state is always the one the dictionary holds for that key.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private BudgetKeyState GetKey(string key, ref string? lastName, ref BudgetKeyState? last)
    {
        if (ReferenceEquals(key, lastName))
        {
            return last!;
        }

        BudgetKeyState state = GetKey(key);
        lastName = key;
        last = state;
        return state;
    }

    /// <summary>The counters of <paramref name="key"/> (and <paramref name="parent"/>) in <paramref name="periods"/>,
    /// from the key's cached set when it is still valid.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static BudgetCounterSet CountersFor(BudgetKeyState key, BudgetKeyState? parent, BudgetPeriodSet periods, Instant now, int mask)
    {
        BudgetCounterSet? set = key.CachedSet;
        if (set is not null
            && ReferenceEquals(set.Periods, periods)
            && set.Mask == mask
            && ReferenceEquals(set.Parent, parent)
            && set.KeyVersion == key.Version
            && (parent is null || set.ParentVersion == parent.Version))
        {
            return set;
        }

        return CountersForSlow(key, parent, periods, now, mask);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static BudgetCounterSet CountersForSlow(BudgetKeyState key, BudgetKeyState? parent, BudgetPeriodSet periods, Instant now, int mask)
    {
        var set = new BudgetCounterSet { Count = parent is null ? 5 : 10, Mask = mask, Periods = periods, Parent = parent };
        for (int w = 0; w < BudgetPeriods.WindowCount; w++)
        {
            // Only windows limited at the key or its parent are counted: an idle key then ends with its longest
            // limited window and can be evicted (see EvictIdle).
            if ((mask & (1 << w)) == 0)
            {
                continue;
            }

            set.Counters[w] = key.Get(w, periods, now);
            if (parent is not null)
            {
                set.Counters[w + 5] = parent.Get(w, periods, now);
            }
        }

        // Versions are read after the lookups: a lookup may prune ended periods (never the current ones), and the
        // set stays valid only until the next prune of either key.
        set.KeyVersion = key.Version;
        set.ParentVersion = parent?.Version ?? 0;
        key.CachedSet = set;
        return set;
    }

    private BudgetSettlement Closed(long id)
    {
        ref BudgetClosedLease closed = ref _closed[id & (ClosedLeaseMemory - 1)];
        if (closed.Id == id)
        {
            return new BudgetSettlement(closed.Status == BudgetSettlementStatus.Expired ? BudgetSettlementStatus.Expired : BudgetSettlementStatus.AlreadySettled, closed.Charged);
        }

        return id < NextLeaseId
            ? new BudgetSettlement(BudgetSettlementStatus.AlreadySettled, 0)
            : new BudgetSettlement(BudgetSettlementStatus.UnknownLease, 0);
    }

    /// <summary>Settles, abandons (charges the hold) or expires an open lease with one table lookup.</summary>
    private BudgetSettlement Finish(long id, long actual, bool abandon, Instant now)
    {
        ExpireDue(now);
        if (_open.Remove(id, out BudgetOpenLease lease))
        {
            long hold = lease.Tokens;
            if (now >= lease.ExpiresAt)
            {
                Close(id, lease, hold, BudgetSettlementStatus.Expired);
                return new BudgetSettlement(BudgetSettlementStatus.Expired, hold);
            }

            long charged = abandon ? hold : actual;
            Close(id, lease, charged, BudgetSettlementStatus.Settled);
            return new BudgetSettlement(BudgetSettlementStatus.Settled, charged);
        }

        return Closed(id);
    }

    /// <summary>Moves a lease, already removed from the open table, to the closed ring and charges it.</summary>
    private void Close(long id, in BudgetOpenLease lease, long charged, BudgetSettlementStatus status)
    {
        long tokens = lease.Tokens;
        lease.Key.OpenLeases--;
        if (lease.Parent is not null)
        {
            lease.Parent.OpenLeases--;
        }

        BudgetCounterSet set = lease.Counters;
        int count = set.Count;
        for (int i = 0; i < count; i++)
        {
            if (set.Counters[i] is not { } c)
            {
                continue;
            }

            c.Held = Math.Max(0, c.Held - tokens);
            c.Used = SaturatingAdd(c.Used, charged);
        }

        _closed[id & (ClosedLeaseMemory - 1)] = new BudgetClosedLease { Id = id, Status = status, Charged = charged };
    }
}
