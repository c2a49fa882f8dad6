using NodaTime;

namespace Kars.Policy.Budgets;

/// <summary>
/// A request to reserve tokens against a key and, optionally, its parent, in every limited window of both.
/// </summary>
/// <remarks>
/// The store admits the request iff <c>used + held + tokens ≤ limit</c> for every limited window at every level,
/// atomically; a rejected request changes no counter. In <see cref="BudgetMode.Observe"/> mode the request is
/// admitted and counted either way and the decision says whether it would have been rejected.
/// </remarks>
public readonly struct BudgetRequest
{
    /// <summary>Initializes a request.</summary>
    /// <param name="level">The key and its limits.</param>
    /// <param name="tokens">The tokens to hold (0 or more): prompt estimate plus completion bound.</param>
    /// <param name="leaseDuration">How long the hold lives before it is charged in full if not settled.</param>
    /// <param name="parent">The parent level (tenant), whose limits apply too, or <see langword="null"/>.</param>
    /// <param name="mode">Enforce (default) or Observe.</param>
    /// <param name="at">The instant of the request; <see langword="null"/> lets the store use its own clock.
    /// Replay and tests pass an explicit instant.</param>
    public BudgetRequest(BudgetLevel level, long tokens, TimeSpan leaseDuration, BudgetLevel? parent = null, BudgetMode mode = BudgetMode.Enforce, Instant? at = null)
    {
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
}
