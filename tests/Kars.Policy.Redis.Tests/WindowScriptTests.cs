using System.Globalization;
using Kars.Policy.Redis.Tests.Infrastructure;
using NodaTime;
using NodaTime.Calendars;
using StackExchange.Redis;

namespace Kars.Policy.Redis.Tests;

/// <summary>The Lua calendar arithmetic (window ids and bounds for hour, day, ISO week, month and year) checked
/// against NodaTime.</summary>
[Collection(RedisCollection.Name)]
public sealed class WindowScriptTests(RedisServerFixture fixture)
{
    private static readonly string[] Codes = ["H", "D", "W", "M", "Y"];

    public static TheoryData<string> EdgeInstants => new()
    {
        "1970-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
        "2000-01-01T00:00:00Z",
        "2000-02-28T23:59:59Z",
        "2000-02-29T00:00:00Z",
        "2000-02-29T23:59:59Z",
        "2000-03-01T00:00:00Z",
        "2023-01-01T12:00:00Z", // Sunday: ISO week 52 of 2022
        "2024-02-29T12:34:56Z",
        "2024-12-30T00:00:00Z", // Monday: ISO week 1 of 2025
        "2026-03-31T23:59:59Z",
        "2026-12-31T23:59:59Z",
        "2026-12-28T00:00:00Z", // ISO week 53 of 2026
        "2027-01-03T23:59:59Z", // still ISO 2026-W53
        "2027-01-04T00:00:00Z", // 2027-W01
        "2020-12-31T10:00:00Z", // 2020-W53
        "2021-01-03T10:00:00Z", // 2020-W53
        "2100-02-28T23:59:59Z", // 2100 is not a leap year
        "2100-03-01T00:00:00Z",
        "2400-02-29T00:00:00Z",
        "1900-03-01T00:00:00Z",
        "1969-12-31T23:59:59Z",
    };

    [Theory]
    [MemberData(nameof(EdgeInstants))]
    public async Task Window_EdgeInstant_MatchesNodaTime(string instant)
    {
        Instant at = Instant.FromDateTimeOffset(DateTimeOffset.Parse(instant, CultureInfo.InvariantCulture));
        await AssertMatchesAsync([at.ToUnixTimeSeconds()]);
    }

    [Fact]
    public async Task Window_RandomInstants_MatchNodaTime()
    {
        var random = new Random(20261126);
        long min = Instant.FromUtc(1901, 1, 1, 0, 0).ToUnixTimeSeconds();
        long max = Instant.FromUtc(2399, 12, 31, 23, 59).ToUnixTimeSeconds();
        var batch = new List<long>();
        for (int i = 0; i < 20_000; i++)
        {
            batch.Add(random.NextInt64(min, max));
        }

        // Around every year end and leap day of 1990–2060, one second either side.
        for (int year = 1990; year <= 2060; year++)
        {
            long yearStart = Instant.FromUtc(year, 1, 1, 0, 0).ToUnixTimeSeconds();
            batch.AddRange([yearStart - 1, yearStart, yearStart + 1]);
            if (CalendarSystem.Iso.IsLeapYear(year))
            {
                long leap = Instant.FromUtc(year, 2, 29, 0, 0).ToUnixTimeSeconds();
                batch.AddRange([leap - 1, leap, leap + 86_399, leap + 86_400]);
            }
        }

        foreach (long[] chunk in batch.Chunk(2_000))
        {
            await AssertMatchesAsync(chunk);
        }
    }

    private async Task AssertMatchesAsync(IReadOnlyList<long> seconds)
    {
        IDatabase db = fixture.Connection.GetDatabase();
        RedisValue[] args = seconds.Select(s => (RedisValue)s.ToString(CultureInfo.InvariantCulture)).ToArray();
        var result = (RedisResult[])(await db.ScriptEvaluateAsync(RedisBudgetScripts.WindowProbe, [], args))!;
        result.Should().HaveCount(seconds.Count * Codes.Length * 3);
        int i = 0;
        foreach (long t in seconds)
        {
            foreach (string code in Codes)
            {
                (string id, long start, long end) = Expected(code, t);
                string actual = $"{(string)result[i]!} [{(string)result[i + 1]!}, {(string)result[i + 2]!})";
                actual.Should().Be(
                    string.Create(CultureInfo.InvariantCulture, $"{id} [{start}, {end})"),
                    $"window {code} of {Instant.FromUnixTimeSeconds(t)}");
                i += 3;
            }
        }
    }

    private static (string Id, long Start, long End) Expected(string code, long t)
    {
        LocalDateTime local = Instant.FromUnixTimeSeconds(t).InUtc().LocalDateTime;
        LocalDate date = local.Date;
        static long Sec(LocalDateTime ldt) => ldt.InUtc().ToInstant().ToUnixTimeSeconds();
        switch (code)
        {
            case "H":
                var hour = date.At(new LocalTime(local.Hour, 0));
                return (hour.ToString("yyyyMMddHH", CultureInfo.InvariantCulture), Sec(hour), Sec(hour.PlusHours(1)));
            case "D":
                return (date.ToString("yyyyMMdd", CultureInfo.InvariantCulture), Sec(date.AtMidnight()), Sec(date.PlusDays(1).AtMidnight()));
            case "W":
                LocalDate monday = date.With(DateAdjusters.PreviousOrSame(IsoDayOfWeek.Monday));
                int weekYear = WeekYearRules.Iso.GetWeekYear(date);
                int week = WeekYearRules.Iso.GetWeekOfWeekYear(date);
                return (string.Create(CultureInfo.InvariantCulture, $"{weekYear:D4}W{week:D2}"), Sec(monday.AtMidnight()), Sec(monday.PlusWeeks(1).AtMidnight()));
            case "M":
                LocalDate first = date.With(DateAdjusters.StartOfMonth);
                return (date.ToString("yyyyMM", CultureInfo.InvariantCulture), Sec(first.AtMidnight()), Sec(first.PlusMonths(1).AtMidnight()));
            default:
                var jan1 = new LocalDate(date.Year, 1, 1);
                return (date.Year.ToString("D4", CultureInfo.InvariantCulture), Sec(jan1.AtMidnight()), Sec(jan1.PlusYears(1).AtMidnight()));
        }
    }
}
