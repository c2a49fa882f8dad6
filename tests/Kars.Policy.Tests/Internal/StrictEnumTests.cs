using Kars.Policy.Budgets;
using Kars.Policy.Egress;
using Kars.Policy.Internal;

namespace Kars.Policy.Tests.Internal;

public sealed class StrictEnumTests
{
    [Theory]
    [InlineData("Strict", EgressMode.Strict)]
    [InlineData("learn", EgressMode.Learn)]
    [InlineData("LEARN", EgressMode.Learn)]
    public void TryParse_DeclaredName_AnyCase_Reads(string text, EgressMode expected)
    {
        StrictEnum.TryParse(text, out EgressMode mode).Should().BeTrue();
        mode.Should().Be(expected);
    }

    [Theory]
    [InlineData("Strict,Learn")]
    [InlineData("Enforce,Observe")]
    [InlineData("1")]
    [InlineData("0")]
    [InlineData("-1")]
    [InlineData(" Learn ")]
    [InlineData("Learn ")]
    [InlineData("\u00A0Learn")]
    [InlineData("")]
    [InlineData(null)]
    [InlineData("Learned")]
    public void TryParse_NumbersListsPaddingOrUnknown_Rejected(string? text)
    {
        StrictEnum.TryParse(text, out EgressMode _).Should().BeFalse();
        StrictEnum.TryParse(text, out BudgetMode _).Should().BeFalse();
    }
}
