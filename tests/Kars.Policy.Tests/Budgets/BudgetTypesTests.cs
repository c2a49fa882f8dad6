using Kars.Policy.Budgets;

namespace Kars.Policy.Tests.Budgets;

public sealed class BudgetTypesTests
{
    [Theory]
    [InlineData(100, null, null, 4096, 50, 4096)]
    [InlineData(5000, null, null, 4096, 50, 5000)]
    [InlineData(100, 100, 9999, 4096, 50, 10099)]
    [InlineData(0, 2048, null, null, 50, 2048)]
    [InlineData(10, null, 700, null, 50, 710)]
    [InlineData(10, null, null, null, 50, 60)]
    [InlineData(10, 0, null, 4096, 50, 10)]
    public void Compute_TakesLargerBoundElseCapElseDefault(int prompt, int? maxTokens, int? maxCompletion, int? cap, int fallback, int expected)
    {
        BudgetReservation.Compute(prompt, maxTokens, maxCompletion, cap, fallback).Should().Be(expected);
    }

    [Fact]
    public void Compute_Overflow_SaturatesAtMaxTokens()
    {
        BudgetReservation.Compute(long.MaxValue, long.MaxValue, null, null, 0).Should().Be(BudgetStore.MaxTokens);
        BudgetReservation.Compute(1, BudgetStore.MaxTokens, null, null, 0).Should().Be(BudgetStore.MaxTokens);
        BudgetReservation.Compute(0, BudgetStore.MaxTokens - 1, null, null, 0).Should().Be(BudgetStore.MaxTokens - 1);
    }

    [Fact]
    public void Compute_Negative_Throws()
    {
        var act = () => BudgetReservation.Compute(-1, null, null, null, 0);

        act.Should().Throw<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void BudgetLimits_NegativeLimit_Throws()
    {
        var act = () => new BudgetLimits(day: -1);

        act.Should().Throw<ArgumentOutOfRangeException>().WithParameterName("day");
    }

    [Fact]
    public void BudgetLimits_Indexer_ReturnsOnlyLimitedWindows()
    {
        var limits = new BudgetLimits(week: 7, year: 0);

        limits[BudgetWindow.Week].Should().Be(7);
        limits[BudgetWindow.Year].Should().Be(0);
        limits[BudgetWindow.Day].Should().BeNull();
        limits.Values.Count.Should().Be(2);
        limits.ToString().Should().Be("{week=7, year=0}");
        limits.Should().Be(new BudgetLimits(week: 7, year: 0));
    }

    [Theory]
    [InlineData("")]
    [InlineData("a\nb")]
    public void BudgetLevel_InvalidKey_Throws(string key)
    {
        var act = () => new BudgetLevel(key, BudgetLimits.None);

        act.Should().Throw<ArgumentException>();
    }

    [Theory]
    [InlineData(new[] { 'a', '\uD800' }, "lone surrogate U+D800 at index 1")]
    [InlineData(new[] { '\uDC00', 'a' }, "lone surrogate U+DC00 at index 0")]
    [InlineData(new[] { '\uD83D', '\uD83D', '\uDE00' }, "lone surrogate U+D83D at index 0")]
    [InlineData(new[] { 'a', '\uDE00', '\uD83D' }, "lone surrogate U+DE00 at index 1")]
    [InlineData(new[] { 'a', '\u007F' }, "control characters (U+007F at index 1)")]
    public void BudgetLevel_InvalidUtf16OrControl_ThrowsNamingTheCharacter(char[] chars, string expected)
    {
        var act = () => new BudgetLevel(new string(chars), BudgetLimits.None);

        act.Should().Throw<ArgumentException>().WithParameterName("key").And.Message.Should().Contain(expected);
    }

    [Fact]
    public void BudgetLevel_SurrogatePairAndNonAscii_AreAccepted()
    {
        var level = new BudgetLevel("agent-\uD83D\uDE00-ü", BudgetLimits.None);

        level.Key.Should().Be("agent-😀-ü");
    }

    [Fact]
    public void BudgetDecision_Default_IsARejection()
    {
        BudgetDecision decision = default;

        decision.IsAdmitted.Should().BeFalse();
        decision.Reason.Should().Be(BudgetReason.BudgetExceeded);
        decision.Lease.IsValid.Should().BeFalse();
    }

    [Fact]
    public async Task BudgetLease_Default_SettleThrowsDisposeIsNoOp()
    {
        BudgetLease lease = default;

        var settle = async () => await lease.SettleAsync(1);

        await settle.Should().ThrowAsync<InvalidOperationException>();
        await lease.DisposeAsync();
    }
}
