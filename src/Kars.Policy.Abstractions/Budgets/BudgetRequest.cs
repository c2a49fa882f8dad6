using NodaTime;

namespace Kars.Policy.Budgets;

/// <summary>
/// A request to reserve tokens against a key and, optionally, its parent, in every limited window of both.
/// </summary>
/// <remarks>
/// The store admits the request iff <c>used + held + tokens ≤ limit</c> for every limited window at every level,
/// atomically; a rejected request changes no counter. In <see cref="BudgetMode.Observe"/> mode the request is
/// admitted and counted either way and the decision says whether it would have been rejected.
/// Every argument is checked here, before any store sees the request, so a request that could not be carried out
/// (a lease expiry past the end of time, an unknown mode) never changes a counter.
/// </remarks>
public readonly struct BudgetRequest
{
    /// <summary>The longest lease a request may ask for: 365 days. A hold that outlives its periods by years is
    /// never what a host means, and the bound keeps every expiry instant representable.</summary>
    public static readonly TimeSpan MaxLeaseDuration = TimeSpan.FromDays(365);

    /// <summary>The earliest instant a budget store accepts: 0001-01-01T00:00:00Z.</summary>
    public static readonly Instant MinAt = Instant.FromUtc(1, 1, 1, 0, 0);

    /// <summary>The latest instant a budget store accepts: the last instant of the year 9998, so that the periods of
    /// every window (that year ends on 9999-01-01) and every lease expiry (at most <see cref="MaxLeaseDuration"/>
    /// later) stay representable.</summary>
    public static readonly Instant MaxAt = Instant.FromUtc(9999, 1, 1, 0, 0) - Duration.Epsilon;

    /// <summary>Initializes a request.</summary>
    /// <param name="level">The key and its limits.</param>
    /// <param name="tokens">The tokens to hold (0 or more): prompt estimate plus completion bound.</param>
    /// <param name="leaseDuration">How long the hold lives before it is charged in full if not settled.</param>
    /// <param name="parent">The parent level (tenant), whose limits apply too, or <see langword="null"/>.</param>
    /// <param name="mode">Enforce (default) or Observe.</param>
    /// <param name="at">The instant of the request; <see langword="null"/> lets the store use its own clock.
    /// Replay and tests pass an explicit instant.</param>
    /// <exception cref="ArgumentNullException"><paramref name="level"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="tokens"/> is negative or above <see cref="BudgetStore.MaxTokens"/>;
    /// <paramref name="leaseDuration"/> is not positive or above <see cref="MaxLeaseDuration"/>; <paramref name="mode"/> is not a
    /// declared mode; or <paramref name="at"/> is outside <see cref="MinAt"/>..<see cref="MaxAt"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="parent"/> has the key of <paramref name="level"/>.</exception>
    public BudgetRequest(BudgetLevel level, long tokens, TimeSpan leaseDuration, BudgetLevel? parent = null, BudgetMode mode = BudgetMode.Enforce, Instant? at = null)
    {
        ArgumentNullException.ThrowIfNull(level);
        if (tokens is < 0 or > BudgetStore.MaxTokens)
        {
            throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"The tokens of a request are 0 to BudgetStore.MaxTokens ({BudgetStore.MaxTokens}).");
        }

        if (leaseDuration <= TimeSpan.Zero || leaseDuration > MaxLeaseDuration)
        {
            throw new ArgumentOutOfRangeException(nameof(leaseDuration), leaseDuration, $"The lease duration of a request is positive and at most BudgetRequest.MaxLeaseDuration ({MaxLeaseDuration.TotalDays} days).");
        }

        if (parent is not null && string.Equals(parent.Key, level.Key, StringComparison.Ordinal))
        {
            throw new ArgumentException("A budget key cannot be its own parent.", nameof(parent));
        }

        if (mode is not (BudgetMode.Enforce or BudgetMode.Observe))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown budget mode.");
        }

        ThrowIfOutOfRange(at, nameof(at));
        Level = level;
        Tokens = tokens;
        LeaseDuration = leaseDuration;
        Parent = parent;
        Mode = mode;
        At = at;
    }

    /// <summary>Gets the key and its limits.</summary>
    public BudgetLevel Level { get; }

    /// <summary>Gets the parent level, or <see langword="null"/>.</summary>
    public BudgetLevel? Parent { get; }

    /// <summary>Gets the tokens to hold.</summary>
    public long Tokens { get; }

    /// <summary>Gets how long the hold lives before it is charged in full.</summary>
    public TimeSpan LeaseDuration { get; }

    /// <summary>Gets the mode.</summary>
    public BudgetMode Mode { get; }

    /// <summary>Gets the explicit instant of the request, or <see langword="null"/> for the store's clock.</summary>
    public Instant? At { get; }

    /// <summary>Throws when an explicit instant is outside <see cref="MinAt"/>..<see cref="MaxAt"/>.</summary>
    /// <param name="at">The instant, or <see langword="null"/> (the store's clock).</param>
    /// <param name="paramName">The parameter name to report.</param>
    internal static void ThrowIfOutOfRange(Instant? at, string paramName)
    {
        if (at is { } instant && (instant < MinAt || instant > MaxAt))
        {
            throw new ArgumentOutOfRangeException(paramName, instant, "Budget stores accept instants from 0001-01-01T00:00:00Z to the end of the year 9998 (BudgetRequest.MinAt..MaxAt).");
        }
    }
}
