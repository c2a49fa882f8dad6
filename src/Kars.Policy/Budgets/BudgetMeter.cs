using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Kars.Policy.Internal;
using NodaTime;
using NodaTime.Extensions;

namespace Kars.Policy.Budgets;

/// <summary>
/// Meters token budgets for budget keys against a <see cref="BudgetPolicy"/> and a <see cref="BudgetStore"/>:
/// applies the per-request cap, resolves each key's levels (its own limits and its parent's) once, and reserves.
/// </summary>
/// <remarks>
/// The key must be an identity the host trusts (the authenticated sandbox), never a value the agent controls
/// unless the host chooses so: an agent that can choose its key can choose a fresh budget. Safe for concurrent
/// use. Tokens reserved, charged and released, and the duration of every store call the meter and its leases make, are
/// recorded on the <c>Kars.Policy</c> meter (docs/telemetry.md): decisions carry leases issued through the meter, whose
/// settlement passes through it to the store (the lease ids are the store's). The policy is fixed for the meter's life: to reload, build a new meter over the same store (cheap; the
/// counters live in the store) and switch to it.
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001:Types that own disposable fields should be disposable", Justification = "The metered store around the host's store owns nothing (disposing it would not dispose the host's store, which its owner disposes).")]
public sealed class BudgetMeter
{
    private readonly BudgetStore _store;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, Resolved> _cache = new(StringComparer.Ordinal);
    private readonly int _maxCachedKeys;
    private int _cached;

    /// <summary>Initializes a meter.</summary>
    /// <param name="store">The store.</param>
    /// <param name="policy">The policy.</param>
    /// <param name="options">The options (validated and copied); the defaults when <see langword="null"/>.</param>
    /// <param name="timeProvider">The clock of decisions the store is not asked for (a per-request-cap rejection
    /// while the store is unreachable); <see cref="TimeProvider.System"/> when <see langword="null"/>.</param>
    /// <param name="meterFactory">Creates the <c>Kars.Policy</c> meter; <see langword="null"/> for a process-wide one.</param>
    /// <exception cref="ArgumentNullException"><paramref name="store"/> or <paramref name="policy"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public BudgetMeter(BudgetStore store, BudgetPolicy policy, BudgetMeterOptions? options = null, TimeProvider? timeProvider = null, IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(policy);
        _maxCachedKeys = BudgetMeterOptions.Validated(options).MaxCachedKeys;
        _time = timeProvider ?? TimeProvider.System;
        _store = new MeteredBudgetStore(store, KarsPolicyMetrics.Get(meterFactory), policy.Mode, _time);
        Policy = policy;
    }

    /// <summary>Gets the policy.</summary>
    public BudgetPolicy Policy { get; }

    /// <summary>Gets the number of keys whose levels are cached (tests).</summary>
    internal int CachedKeys => Volatile.Read(ref _cached);

    /// <summary>Reserves <paramref name="tokens"/> for <paramref name="key"/>, or rejects.</summary>
    /// <param name="key">The budget key (an identity the host trusts).</param>
    /// <param name="tokens">The reservation (see <see cref="BudgetReservation.Compute"/>).</param>
    /// <param name="at">An explicit instant (replay, tests), or <see langword="null"/> for the store's clock.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The decision; when admitted, settle or dispose its lease. A per-request-cap rejection reads the
    /// key's status from the store (one call) so that it reports the remaining tokens too; if the store cannot be
    /// read, the rejection stands without window figures.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tokens"/> is negative or above <see cref="BudgetStore.MaxTokens"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="key"/> is not a valid key.</exception>
    /// <exception cref="BudgetStoreUnavailableException">The store cannot decide.</exception>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("ApiDesign", "RS0027:API with optional parameter(s) should have the most parameters amongst its public overloads", Justification = "The lease-duration overload takes every parameter explicitly; this one stays the short form most callers use.")]
    public ValueTask<BudgetDecision> TryReserveAsync(string key, long tokens, Instant? at = null, CancellationToken cancellationToken = default)
        => TryReserveAsync(key, tokens, Policy.LeaseDuration, at, cancellationToken);

    /// <summary>Reserves <paramref name="tokens"/> for <paramref name="key"/> with a hold that lives
    /// <paramref name="leaseDuration"/> instead of the policy's <see cref="BudgetPolicy.LeaseDuration"/> (a host whose
    /// requests may outlive the policy's lease, such as long streamed responses), or rejects.</summary>
    /// <param name="key">The budget key (an identity the host trusts).</param>
    /// <param name="tokens">The reservation (see <see cref="BudgetReservation.Compute"/>).</param>
    /// <param name="leaseDuration">How long the hold lives before it is charged in full (positive, at most
    /// <see cref="BudgetRequest.MaxLeaseDuration"/>).</param>
    /// <param name="at">An explicit instant (replay, tests), or <see langword="null"/> for the store's clock.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The decision, as <see cref="TryReserveAsync(string, long, Instant?, CancellationToken)"/>.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tokens"/> is negative or above <see cref="BudgetStore.MaxTokens"/>,
    /// or <paramref name="leaseDuration"/> is out of range.</exception>
    /// <exception cref="ArgumentException"><paramref name="key"/> is not a valid key.</exception>
    /// <exception cref="BudgetStoreUnavailableException">The store cannot decide.</exception>
    public ValueTask<BudgetDecision> TryReserveAsync(string key, long tokens, TimeSpan leaseDuration, Instant? at, CancellationToken cancellationToken)
    {
        if (leaseDuration <= TimeSpan.Zero || leaseDuration > BudgetRequest.MaxLeaseDuration)
        {
            throw new ArgumentOutOfRangeException(nameof(leaseDuration), leaseDuration, "The lease duration is positive and at most BudgetRequest.MaxLeaseDuration (365 days).");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(tokens, BudgetStore.MaxTokens);
        Resolved levels = Resolve(key);
        BudgetPolicy policy = Policy;
        bool aboveCap = policy.PerRequestTokens is { } cap && tokens > cap;
        if (aboveCap && policy.Mode == BudgetMode.Enforce)
        {
            return RejectAboveCapAsync(levels, tokens, at, cancellationToken);
        }

        var request = new BudgetRequest(levels.Level, tokens, leaseDuration, levels.Parent, policy.Mode, at);
        return aboveCap ? ObserveAboveCapAsync(request, cancellationToken) : _store.TryReserveAsync(request, cancellationToken);
    }

    /// <summary>Reads the counters of <paramref name="key"/> in every window limited for it.</summary>
    /// <param name="key">The budget key.</param>
    /// <param name="at">An explicit instant, or <see langword="null"/> for the store's clock.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The status.</returns>
    /// <exception cref="BudgetStoreUnavailableException">The store cannot be read.</exception>
    public ValueTask<BudgetStatus> GetStatusAsync(string key, Instant? at = null, CancellationToken cancellationToken = default)
    {
        Resolved levels = Resolve(key);
        return _store.GetStatusAsync(levels.Level, levels.Parent, at, cancellationToken);
    }

    private async ValueTask<BudgetDecision> ObserveAboveCapAsync(BudgetRequest request, CancellationToken cancellationToken)
    {
        BudgetDecision d = await _store.TryReserveAsync(request, cancellationToken).ConfigureAwait(false);
        if (!d.IsAdmitted)
        {
            // Even Observe mode rejects a hold the store cannot represent (BudgetStore.MaxTokens, saturation).
            return d;
        }

        return new BudgetDecision(BudgetReason.Observed, d.Tokens, d.Lease, null, d.At, d.Limits, d.Remaining, d.BlockingWindow, d.IsUnmetered);
    }

    private async ValueTask<BudgetDecision> RejectAboveCapAsync(Resolved levels, long tokens, Instant? at, CancellationToken cancellationToken)
    {
        BudgetStatus status;
        try
        {
            status = await _store.GetStatusAsync(levels.Level, levels.Parent, at, cancellationToken).ConfigureAwait(false);
        }
        catch (BudgetStoreUnavailableException)
        {
            // The rejection does not depend on the store: it stands (429, not 503), only without window figures.
            return new BudgetDecision(BudgetReason.PerRequestTokensExceeded, tokens, default, null, at ?? _time.GetCurrentInstant(), default, default);
        }

        BudgetWindowValues limits = default;
        BudgetWindowValues remaining = default;
        foreach (BudgetWindowStatus window in status.Windows)
        {
            // The binding limit: the key's own unless the parent leaves less room.
            long ownRoom = window.Limit is { } own ? Math.Max(0, own - BudgetLedger.SaturatingAdd(window.Used, window.Held)) : long.MaxValue;
            long limit = window.Limit is { } ownLimit && window.Remaining >= ownRoom
                ? ownLimit
                : levels.Parent?.Limits[window.Window] ?? window.Limit ?? 0;
            limits = limits.With(window.Window, limit);
            remaining = remaining.With(window.Window, window.Remaining);
        }

        return new BudgetDecision(BudgetReason.PerRequestTokensExceeded, tokens, default, null, status.At, limits, remaining);
    }

    private Resolved Resolve(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (_cache.TryGetValue(key, out Resolved resolved))
        {
            return resolved;
        }

        resolved = Create(key);
        if (Volatile.Read(ref _cached) < _maxCachedKeys && _cache.TryAdd(key, resolved))
        {
            // Bounded: beyond MaxCachedKeys a key's levels are built per call (a small allocation), never cached.
            Interlocked.Increment(ref _cached);
        }

        return resolved;
    }

    private Resolved Create(string key)
    {
        BudgetPolicy policy = Policy;
        if (!policy.Keys.TryGetValue(key, out BudgetKeyPolicy? own))
        {
            return new Resolved(new BudgetLevel(key, policy.DefaultLimits), null);
        }

        BudgetLevel? parent = own.Parent is { } p ? new BudgetLevel(p, policy.Keys[p].Limits) : null;
        return new Resolved(new BudgetLevel(key, own.Limits), parent);
    }

    private readonly record struct Resolved(BudgetLevel Level, BudgetLevel? Parent);
}

/// <summary>Options of <see cref="BudgetMeter"/>.</summary>
/// <remarks>Settable so configuration binding can fill them; the meter validates and copies them.</remarks>
public sealed class BudgetMeterOptions
{
    /// <summary>Gets or sets how many keys' resolved levels the meter caches (at least 0). Beyond it, a key's levels
    /// are built on every call (a small allocation) instead of growing the cache with every key ever seen.</summary>
    /// <value>The default value is 100,000.</value>
    public int MaxCachedKeys { get; set; } = 100_000;

    /// <summary>Validates and copies <paramref name="options"/> (the defaults when <see langword="null"/>).</summary>
    internal static BudgetMeterOptions Validated(BudgetMeterOptions? options)
    {
        options ??= new BudgetMeterOptions();
        if (options.MaxCachedKeys < 0)
        {
            throw new ArgumentException($"BudgetMeterOptions.MaxCachedKeys must be 0 or more (was {options.MaxCachedKeys}).", nameof(options));
        }

        return new BudgetMeterOptions { MaxCachedKeys = options.MaxCachedKeys };
    }
}
