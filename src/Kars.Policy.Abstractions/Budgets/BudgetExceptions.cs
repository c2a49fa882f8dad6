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
