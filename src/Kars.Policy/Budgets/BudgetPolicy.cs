namespace Kars.Policy.Budgets;

/// <summary>The budget of one listed key: its own limits and, optionally, a parent key whose limits apply too.</summary>
/// <param name="Limits">The key's own limits.</param>
/// <param name="Parent">The parent key (a tenant), or <see langword="null"/>.</param>
public sealed record BudgetKeyPolicy(BudgetLimits Limits, string? Parent = null);

/// <summary>
/// A budget configuration: the mode, the per-request cap, the limits of keys that are not listed, and the listed
/// keys with their own limits and parent. Immutable and safe for concurrent use.
/// </summary>
public sealed class BudgetPolicy
{
    /// <summary>Initializes a policy and checks it.</summary>
    /// <param name="defaultLimits">The limits of keys that are not listed.</param>
    /// <param name="keys">The listed keys; copied.</param>
    /// <param name="mode">Enforce (default) or Observe.</param>
    /// <param name="perRequestTokens">The largest reservation one request may make, or <see langword="null"/>.</param>
    /// <param name="leaseDuration">How long a hold lives before it is charged in full; 10 minutes when <see langword="null"/>.</param>
    /// <exception cref="ArgumentException">A parent is not listed, is the key itself, or has a parent of its own; or a value is out of range.</exception>
    public BudgetPolicy(BudgetLimits? defaultLimits = null, IReadOnlyDictionary<string, BudgetKeyPolicy>? keys = null, BudgetMode mode = BudgetMode.Enforce, long? perRequestTokens = null, TimeSpan? leaseDuration = null)
    {
        if (perRequestTokens < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(perRequestTokens), perRequestTokens, "The per-request cap is zero or more.");
        }

        if (leaseDuration <= TimeSpan.Zero || leaseDuration > BudgetRequest.MaxLeaseDuration)
        {
            throw new ArgumentOutOfRangeException(nameof(leaseDuration), leaseDuration, "The lease duration is positive and at most BudgetRequest.MaxLeaseDuration (365 days).");
        }

        if (!Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown budget mode.");
        }

        var copy = new Dictionary<string, BudgetKeyPolicy>(StringComparer.Ordinal);
        foreach (var pair in keys ?? new Dictionary<string, BudgetKeyPolicy>())
        {
            ArgumentNullException.ThrowIfNull(pair.Value, nameof(keys));
            ArgumentNullException.ThrowIfNull(pair.Value.Limits, nameof(keys));
            copy.Add(pair.Key, pair.Value);
        }

        foreach (var pair in copy)
        {
            if (pair.Value.Parent is not { } parent)
            {
                continue;
            }

            if (parent == pair.Key)
            {
                throw new ArgumentException($"Budget key '{pair.Key}' names itself as its parent.", nameof(keys));
            }

            if (!copy.TryGetValue(parent, out BudgetKeyPolicy? parentPolicy))
            {
                throw new ArgumentException($"Budget key '{pair.Key}' names parent '{parent}', which is not listed.", nameof(keys));
            }

            if (parentPolicy.Parent is not null)
            {
                throw new ArgumentException($"Budget key '{pair.Key}' has parent '{parent}', which has a parent of its own; one level of parent is supported.", nameof(keys));
            }
        }

        DefaultLimits = defaultLimits ?? BudgetLimits.None;
        Keys = copy;
        Mode = mode;
        PerRequestTokens = perRequestTokens;
        LeaseDuration = leaseDuration ?? TimeSpan.FromMinutes(10);
    }

    /// <summary>Gets the limits of keys that are not listed.</summary>
    public BudgetLimits DefaultLimits { get; }

    /// <summary>Gets the listed keys.</summary>
    public IReadOnlyDictionary<string, BudgetKeyPolicy> Keys { get; }

    /// <summary>Gets the mode.</summary>
    public BudgetMode Mode { get; }

    /// <summary>Gets the per-request cap, or <see langword="null"/>.</summary>
    public long? PerRequestTokens { get; }

    /// <summary>Gets how long a hold lives before it is charged in full.</summary>
    public TimeSpan LeaseDuration { get; }
}
