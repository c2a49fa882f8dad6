using NodaTime;

namespace Kars.Policy.Cli;

/// <summary>
/// The one RFC 3339 reader of the CLI (<c>eval --at</c>, the <c>at</c> of <c>budget replay</c> events), written out
/// so that nothing outside the grammar slips through a general-purpose pattern (NodaTime's <c>HH</c> reads
/// <c>24:00:00</c> as the next midnight and its offsets stop at ±18:00):
/// <c>YYYY-MM-DD</c> <c>T</c> <c>hh:mm:ss</c>, an optional fraction of 1–9 digits after <c>.</c>, then <c>Z</c> or
/// <c>±hh:mm</c> (any offset up to ±23:59, RFC 3339 §5.6). Lower-case <c>t</c>/<c>z</c> are accepted (§5.6).
/// Refused: hour 24, a leap second (<c>:60</c>), a day the month does not have, a missing or partial offset, a
/// <c>,</c> fraction, extended or signed years, and the year 0000 (RFC 3339 allows it, but neither .NET's
/// <see cref="DateTimeOffset"/> nor the budget stores represent it, so both commands refuse it alike).
/// Callers check the range they support on the resulting instant.
/// </summary>
internal static class Rfc3339
{
    /// <summary>Parses strict RFC 3339 as described on the type.</summary>
    /// <param name="text">The text.</param>
    /// <param name="instant">The instant it names.</param>
    /// <returns><see langword="true"/> when <paramref name="text"/> is valid.</returns>
    public static bool TryParse(string text, out Instant instant)
    {
        instant = default;
        ReadOnlySpan<char> s = text;
        if (s.Length < 20
            || !Digits(s, 0, 4, out int year) || s[4] != '-'
            || !Digits(s, 5, 2, out int month) || s[7] != '-'
            || !Digits(s, 8, 2, out int day) || (s[10] is not ('T' or 't'))
            || !Digits(s, 11, 2, out int hour) || s[13] != ':'
            || !Digits(s, 14, 2, out int minute) || s[16] != ':'
            || !Digits(s, 17, 2, out int second))
        {
            return false;
        }

        if (year < 1 || month is < 1 or > 12 || day < 1 || day > CalendarSystem.Iso.GetDaysInMonth(year, month)
            || hour > 23 || minute > 59 || second > 59)
        {
            return false;
        }

        int i = 19;
        long nanos = 0;
        if (s[i] == '.')
        {
            int start = ++i;
            while (i < s.Length && char.IsAsciiDigit(s[i]))
            {
                i++;
            }

            int count = i - start;
            if (count is < 1 or > 9)
            {
                return false;
            }

            for (int k = 0; k < 9; k++)
            {
                nanos = (nanos * 10) + (k < count ? s[start + k] - '0' : 0);
            }
        }

        int offsetMinutes;
        ReadOnlySpan<char> zone = s[i..];
        if (zone is "Z" or "z")
        {
            offsetMinutes = 0;
        }
        else if (zone.Length == 6 && zone[0] is '+' or '-' && Digits(zone, 1, 2, out int oh) && zone[3] == ':' && Digits(zone, 4, 2, out int om) && oh <= 23 && om <= 59)
        {
            offsetMinutes = ((oh * 60) + om) * (zone[0] == '-' ? -1 : 1);
        }
        else
        {
            return false;
        }

        Instant local = new LocalDateTime(year, month, day, hour, minute, second).PlusNanoseconds(nanos).InUtc().ToInstant();
        Duration offset = Duration.FromMinutes(offsetMinutes);

        // local − offset, without leaving NodaTime's range (9999-12-31T23:59:59-23:59 lies past its end).
        if ((offsetMinutes < 0 && local > Instant.MaxValue + offset) || (offsetMinutes > 0 && local < Instant.MinValue + offset))
        {
            return false;
        }

        instant = local - offset;
        return true;
    }

    private static bool Digits(ReadOnlySpan<char> s, int start, int count, out int value)
    {
        value = 0;
        for (int k = start; k < start + count; k++)
        {
            if (!char.IsAsciiDigit(s[k]))
            {
                return false;
            }

            value = (value * 10) + (s[k] - '0');
        }

        return true;
    }
}
