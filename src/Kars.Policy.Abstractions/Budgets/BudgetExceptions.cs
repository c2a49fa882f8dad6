namespace Kars.Policy.Budgets;

/// <summary>The base of the budget failures that are not decisions: the store could not decide.</summary>
public abstract class BudgetException : KarsPolicyException
{
    /// <summary>Initializes a new instance.</summary>
    /// <param name="message">What failed.</param>
    /// <param name="innerException">The underlying cause.</param>
    protected BudgetException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// The budget store cannot be reached or cannot make a durable decision (I/O failure, Redis down, time-out).
/// Hosts fail closed: the ASP.NET Core gate answers 503.
/// </summary>
public sealed class BudgetStoreUnavailableException : BudgetException
{
    /// <summary>Initializes a new instance.</summary>
    /// <param name="message">What failed.</param>
    /// <param name="innerException">The underlying cause.</param>
    public BudgetStoreUnavailableException(string message, Exception? innerException = null)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// The persisted budget state is corrupt, truncated in a way that cannot be a torn last write, or of an unknown
/// version. The store refuses to start rather than reset spend to zero; an operator must repair or remove it.
/// </summary>
public sealed class BudgetStateCorruptException : BudgetException
{
    /// <summary>Initializes a new instance.</summary>
    /// <param name="message">What is wrong, naming the file and position.</param>
    /// <param name="path">The file (or store location) with the bad state.</param>
    /// <param name="innerException">The underlying cause.</param>
    public BudgetStateCorruptException(string message, string? path = null, Exception? innerException = null)
        : base(message, innerException)
    {
        Path = path;
    }

    /// <summary>Gets the file (or store location) with the bad state, if known.</summary>
    public string? Path { get; }
}

/// <summary>
/// A durable budget store's location is already open in this or another process. One owner per location: two
/// owners would each decide on counters the other cannot see and overwrite each other's log, losing acknowledged spend.
/// </summary>
public sealed class BudgetStoreInUseException : BudgetException
{
    /// <summary>Initializes a new instance.</summary>
    /// <param name="message">What is in use, naming the location.</param>
    /// <param name="location">The store location (for the file store, its directory).</param>
    /// <param name="innerException">The underlying cause.</param>
    public BudgetStoreInUseException(string message, string location, Exception? innerException = null)
        : base(message, innerException)
    {
        Location = location;
    }

    /// <summary>Gets the store location that is in use (for the file store, its directory).</summary>
    public string Location { get; }
}

/// <summary>
/// A request's instant falls in a period whose counters the store has already pruned (time went back by more than
/// the store keeps ended periods, about an hour). The store cannot know that period's spend, so it refuses to decide
/// rather than admit on empty counters. Nothing changed.
/// </summary>
public sealed class BudgetPeriodPrunedException : BudgetException
{
    /// <summary>Initializes a new instance.</summary>
    /// <param name="message">What was refused.</param>
    /// <param name="at">The instant of the request.</param>
    /// <param name="forgottenBefore">The store no longer knows spend before this instant.</param>
    public BudgetPeriodPrunedException(string message, NodaTime.Instant at, NodaTime.Instant forgottenBefore)
        : base(message, null)
    {
        At = at;
        ForgottenBefore = forgottenBefore;
    }

    /// <summary>Gets the instant of the refused request.</summary>
    public NodaTime.Instant At { get; }

    /// <summary>Gets the instant before which the store no longer knows the key's spend.</summary>
    public NodaTime.Instant ForgottenBefore { get; }
}
