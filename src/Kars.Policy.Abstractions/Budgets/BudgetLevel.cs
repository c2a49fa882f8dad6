namespace Kars.Policy.Budgets;

/// <summary>
/// One level of a budget: a key (a sandbox, or a tenant as the parent of sandboxes) and its limits.
/// </summary>
/// <remarks>
/// The key is an identity the host trusts: the authenticated sandbox or tenant, never a header the agent
/// controls unless the host chooses so. Create a level once per key and reuse it: stores may cache state
/// against the instance. Immutable and safe for concurrent use.
/// </remarks>
public sealed class BudgetLevel
{
    /// <summary>The longest key accepted, in characters.</summary>
    public const int MaxKeyLength = 256;

    /// <summary>Initializes a level.</summary>
    /// <param name="key">The budget key: 1–256 UTF-16 code units of valid UTF-16 (no lone surrogates), no control characters.</param>
    /// <param name="limits">The limits of this level.</param>
    /// <exception cref="ArgumentException"><paramref name="key"/> is empty, too long, has control characters or is not valid UTF-16 (a lone surrogate).</exception>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public BudgetLevel(string key, BudgetLimits limits)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(limits);
        if (key.Length is 0 or > MaxKeyLength)
        {
            throw new ArgumentException($"A budget key has 1 to {MaxKeyLength} characters.", nameof(key));
        }

        for (int i = 0; i < key.Length; i++)
        {
            char c = key[i];
            if (char.IsControl(c))
            {
                throw new ArgumentException($"A budget key has no control characters (U+{(int)c:X4} at index {i}).", nameof(key));
            }

            if (char.IsHighSurrogate(c) && i + 1 < key.Length && char.IsLowSurrogate(key[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(c))
            {
                // A lone surrogate is not text: it cannot be encoded (UTF-8 file store, Redis) and would name a different key after a round trip.
                throw new ArgumentException($"A budget key is valid UTF-16: lone surrogate U+{(int)c:X4} at index {i}.", nameof(key));
            }
        }

        Key = key;
        Limits = limits;
    }

    /// <summary>Gets the budget key.</summary>
    public string Key { get; }

    /// <summary>Gets the limits of this level.</summary>
    public BudgetLimits Limits { get; }

    /// <inheritdoc/>
    public override string ToString() => $"{Key} {Limits}";
}
