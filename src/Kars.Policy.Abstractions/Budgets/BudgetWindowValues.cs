using System.Globalization;
using System.Text;

namespace Kars.Policy.Budgets;

/// <summary>
/// A small fixed map from <see cref="BudgetWindow"/> to a 64-bit value (limits, remaining tokens, …).
/// A window may be absent. Copying or reading it allocates nothing.
/// </summary>
public readonly struct BudgetWindowValues : IEquatable<BudgetWindowValues>
{
    private readonly long _hour;
    private readonly long _day;
    private readonly long _week;
    private readonly long _month;
    private readonly long _year;
    private readonly byte _present;

    private BudgetWindowValues(long hour, long day, long week, long month, long year, byte present)
    {
        _hour = hour;
        _day = day;
        _week = week;
        _month = month;
        _year = year;
        _present = present;
    }

    /// <summary>Gets the presence mask (bit <c>1 &lt;&lt; window</c>).</summary>
    internal byte Mask => _present;

    /// <summary>Gets a value indicating whether no window is present.</summary>
    public bool IsEmpty => _present == 0;

    /// <summary>Gets the number of windows present.</summary>
    public int Count => System.Numerics.BitOperations.PopCount(_present);

    /// <summary>Gets a value indicating whether a window is present.</summary>
    /// <param name="window">The window.</param>
    /// <returns><see langword="true"/> when present.</returns>
    public bool Contains(BudgetWindow window) => (_present & Bit(window)) != 0;

    /// <summary>Gets the value of a window.</summary>
    /// <param name="window">The window.</param>
    /// <param name="value">The value when present, else 0.</param>
    /// <returns><see langword="true"/> when the window is present.</returns>
    public bool TryGetValue(BudgetWindow window, out long value)
    {
        if (!Contains(window))
        {
            value = 0;
            return false;
        }

        value = window switch
        {
            BudgetWindow.Hour => _hour,
            BudgetWindow.Day => _day,
            BudgetWindow.Week => _week,
            BudgetWindow.Month => _month,
            _ => _year,
        };
        return true;
    }

    /// <summary>Returns a copy with the value of a window set (added or replaced).</summary>
    /// <param name="window">The window.</param>
    /// <param name="value">The value.</param>
    /// <returns>The new map.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="window"/> is not a defined window.</exception>
    public BudgetWindowValues With(BudgetWindow window, long value)
    {
        byte present = (byte)(_present | Bit(window));
        return window switch
        {
            BudgetWindow.Hour => new(value, _day, _week, _month, _year, present),
            BudgetWindow.Day => new(_hour, value, _week, _month, _year, present),
            BudgetWindow.Week => new(_hour, _day, value, _month, _year, present),
            BudgetWindow.Month => new(_hour, _day, _week, value, _year, present),
            _ => new(_hour, _day, _week, _month, value, present),
        };
    }

    /// <inheritdoc/>
    public bool Equals(BudgetWindowValues other)
    {
        if (_present != other._present)
        {
            return false;
        }

        for (var w = BudgetWindow.Hour; w <= BudgetWindow.Year; w++)
        {
            TryGetValue(w, out long a);
            other.TryGetValue(w, out long b);
            if (a != b)
            {
                return false;
            }
        }

        return true;
    }

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is BudgetWindowValues other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode()
    {
        var hash = default(HashCode);
        hash.Add(_present);
        for (var w = BudgetWindow.Hour; w <= BudgetWindow.Year; w++)
        {
            TryGetValue(w, out long v);
            hash.Add(v);
        }

        return hash.ToHashCode();
    }

    /// <summary>Formats the present windows, e.g. <c>{day=10, month=200}</c>.</summary>
    /// <returns>The text.</returns>
    public override string ToString()
    {
        var builder = new StringBuilder("{");
        for (var w = BudgetWindow.Hour; w <= BudgetWindow.Year; w++)
        {
            if (TryGetValue(w, out long v))
            {
                if (builder.Length > 1)
                {
                    builder.Append(", ");
                }

                builder.Append(w.ToString().ToLowerInvariant()).Append('=').Append(v.ToString(CultureInfo.InvariantCulture));
            }
        }

        return builder.Append('}').ToString();
    }

    /// <summary>Compares two maps.</summary>
    /// <param name="left">The first.</param>
    /// <param name="right">The second.</param>
    /// <returns><see langword="true"/> when equal.</returns>
    public static bool operator ==(BudgetWindowValues left, BudgetWindowValues right) => left.Equals(right);

    /// <summary>Compares two maps.</summary>
    /// <param name="left">The first.</param>
    /// <param name="right">The second.</param>
    /// <returns><see langword="true"/> when different.</returns>
    public static bool operator !=(BudgetWindowValues left, BudgetWindowValues right) => !left.Equals(right);

    private static byte Bit(BudgetWindow window)
    {
        if ((uint)window > (uint)BudgetWindow.Year)
        {
            throw new ArgumentOutOfRangeException(nameof(window), window, "Unknown budget window.");
        }

        return (byte)(1 << (int)window);
    }
}
