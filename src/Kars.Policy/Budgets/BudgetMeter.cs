using System.Collections.Concurrent;
using NodaTime;

namespace Kars.Policy.Budgets;

/// <summary>
/// Meters token budgets for budget keys against a <see cref="BudgetPolicy"/> and a <see cref="BudgetStore"/>:
/// applies the per-request cap, resolves each key's levels (its own limits and its parent's) once, and reserves.
/// </summary>
/// <remarks>
/// The key must be an identity the host trusts (the authenticated sandbox), never a value the agent controls
/// unless the host chooses so: an agent that can choose its key can choose a fresh budget. Safe for concurrent
/// use; <see cref="Policy"/> may be replaced at any time (hot reload) and applies to the next call.
/// </remarks>
public sealed class BudgetMeter
{
    private readonly BudgetStore _store;
    private Snapshot _snapshot;

    /// <summary>Initializes a meter.</summary>
    /// <param name="store">The store.</param>
    /// <param name="policy">The policy.</param>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public BudgetMeter(BudgetStore store, BudgetPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(policy);
        _store = store;
        _snapshot = new Snapshot(policy);
    }

    /// <summary>Gets or sets the policy. Setting it applies to the next call.</summary>
    public BudgetPolicy Policy
    {
        get => Volatile.Read(ref _snapshot).Policy;
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            Volatile.Write(ref _snapshot, new Snapshot(value));
        }
    }

    /// <summary>Reserves <paramref name="tokens"/> for <paramref name="key"/>, or rejects.</summary>
    /// <param name="key">The budget key (an identity the host trusts).</param>
    /// <param name="tokens">The reservation (see <see cref="BudgetReservation.Compute"/>).</param>
    /// <param name="at">An explicit instant (replay, tests), or <see langword="null"/> for the store's clock.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The decision; when admitted, settle or dispose its lease.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tokens"/> is negative or above <see cref="BudgetStore.MaxTokens"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="key"/> is not a valid key.</exception>
    /// <exception cref="BudgetStoreUnavailableException">The store cannot decide.</exception>
    public ValueTask<BudgetDecision> TryReserveAsync(string key, long tokens, Instant? at = null, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(tokens, BudgetStore.MaxTokens);
        Snapshot snapshot = Volatile.Read(ref _snapshot);
        Resolved levels = snapshot.Resolve(key);
        BudgetPolicy policy = snapshot.Policy;
        bool aboveCap = policy.PerRequestTokens is { } cap && tokens > cap;
        if (aboveCap && policy.Mode == BudgetMode.Enforce)
        {
            return new ValueTask<BudgetDecision>(new BudgetDecision(BudgetReason.PerRequestTokensExceeded, tokens, default, retryAfter: null, default));
        }

        var request = new BudgetRequest(levels.Level, tokens, policy.LeaseDuration, levels.Parent, policy.Mode, at);
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
        Resolved levels = Volatile.Read(ref _snapshot).Resolve(key);
        return _store.GetStatusAsync(levels.Level, levels.Parent, at, cancellationToken);
    }

    private async ValueTask<BudgetDecision> ObserveAboveCapAsync(BudgetRequest request, CancellationToken cancellationToken)
    {
        BudgetDecision decision = await _store.TryReserveAsync(request, cancellationToken).ConfigureAwait(false);
        if (!decision.IsAdmitted)
        {
            // Even Observe mode rejects a hold the store cannot represent (BudgetStore.MaxTokens, saturation).
            return decision;
        }

        return new BudgetDecision(BudgetReason.Observed, decision.Tokens, decision.Lease, null, decision.Remaining);
    }

    private readonly record struct Resolved(BudgetLevel Level, BudgetLevel? Parent);

    private sealed class Snapshot(BudgetPolicy policy)
    {
        private readonly ConcurrentDictionary<string, Resolved> _cache = new(StringComparer.Ordinal);

        public BudgetPolicy Policy { get; } = policy;

        public Resolved Resolve(string key)
        {
            ArgumentNullException.ThrowIfNull(key);
            return _cache.TryGetValue(key, out Resolved resolved) ? resolved : _cache.GetOrAdd(key, Create);
        }

        private Resolved Create(string key)
        {
            if (!Policy.Keys.TryGetValue(key, out BudgetKeyPolicy? own))
            {
                return new Resolved(new BudgetLevel(key, Policy.DefaultLimits), null);
            }

            BudgetLevel? parent = own.Parent is { } p ? new BudgetLevel(p, Policy.Keys[p].Limits) : null;
            return new Resolved(new BudgetLevel(key, own.Limits), parent);
        }
    }
}
