namespace Kars.Policy.Budgets;

/// <summary>
/// Token limits over any subset of the five windows. A <see langword="null"/> limit means the window is not limited.
/// </summary>
/// <remarks>Immutable and safe for concurrent use. A limit of 0 admits nothing in that window.</remarks>
public sealed class BudgetLimits : IEquatable<BudgetLimits>
{
    private readonly BudgetWindowValues _values;

    /// <summary>Initializes limits. Every given limit must be zero or positive.</summary>
    /// <param name="hour">Tokens per UTC hour, or <see langword="null"/>.</param>
    /// <param name="day">Tokens per UTC day, or <see langword="null"/>.</param>
    /// <param name="week">Tokens per ISO week, or <see langword="null"/>.</param>
    /// <param name="month">Tokens per UTC month, or <see langword="null"/>.</param>
    /// <param name="year">Tokens per UTC year, or <see langword="null"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException">A limit is negative.</exception>
    public BudgetLimits(long? hour = null, long? day = null, long? week = null, long? month = null, long? year = null)
    {
        var values = default(BudgetWindowValues);
        values = Add(values, BudgetWindow.Hour, hour, nameof(hour));
        values = Add(values, BudgetWindow.Day, day, nameof(day));
        values = Add(values, BudgetWindow.Week, week, nameof(week));
        values = Add(values, BudgetWindow.Month, month, nameof(month));
        values = Add(values, BudgetWindow.Year, year, nameof(year));
        _values = values;
    }

    /// <summary>Gets limits that limit nothing.</summary>
    public static BudgetLimits None { get; } = new();

    /// <summary>Gets the limits as window values (only limited windows are present).</summary>
    public BudgetWindowValues Values => _values;

    /// <summary>Gets a value indicating whether any window is limited.</summary>
    public bool HasAny => !_values.IsEmpty;

    /// <summary>Gets the limit of a window.</summary>
    /// <param name="window">The window.</param>
    /// <returns>The limit, or <see langword="null"/> when the window is not limited.</returns>
    public long? this[BudgetWindow window] => _values.TryGetValue(window, out long value) ? value : null;

    /// <summary>Gets the limit of a window.</summary>
    /// <param name="window">The window.</param>
    /// <param name="limit">The limit when the window is limited.</param>
    /// <returns><see langword="true"/> when the window is limited.</returns>
    public bool TryGetLimit(BudgetWindow window, out long limit) => _values.TryGetValue(window, out limit);

    /// <inheritdoc/>
    public bool Equals(BudgetLimits? other) => other is not null && _values.Equals(other._values);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as BudgetLimits);

    /// <inheritdoc/>
    public override int GetHashCode() => _values.GetHashCode();

    /// <inheritdoc/>
    public override string ToString() => _values.ToString();

    private static BudgetWindowValues Add(BudgetWindowValues values, BudgetWindow window, long? limit, string name)
    {
        if (limit is null)
        {
            return values;
        }

        ArgumentOutOfRangeException.ThrowIfNegative(limit.Value, name);
        return values.With(window, limit.Value);
    }
}
