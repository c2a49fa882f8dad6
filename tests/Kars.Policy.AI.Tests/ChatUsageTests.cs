using Kars.Policy.Budgets;
using Microsoft.Extensions.AI;

namespace Kars.Policy.AI.Tests;

public sealed class ChatUsageTests
{
    [Theory]
    [InlineData(100L, 50L, 150L, null, null, 150L)]      // input + output
    [InlineData(100L, 50L, null, 80L, 30L, 150L)]        // cached is part of input, reasoning part of output: charged once
    [InlineData(100L, 50L, null, null, 70L, 220L)]       // reasoning above output is counted apart by that provider: added
    [InlineData(100L, 50L, 400L, null, null, 400L)]      // a larger total wins
    [InlineData(null, null, 90L, null, null, 90L)]       // a total alone is evidence
    [InlineData(100L, null, 130L, null, null, 130L)]     // input and total
    public void TryRead_Charges(long? input, long? output, long? total, long? cached, long? reasoning, long charged)
    {
        var usage = new UsageDetails { InputTokenCount = input, OutputTokenCount = output, TotalTokenCount = total, CachedInputTokenCount = cached, ReasoningTokenCount = reasoning };

        ChatUsage.TryRead(usage, out ChatUsage read).Should().BeTrue();

        read.Charged.Should().Be(charged);
    }

    [Theory]
    [InlineData(100L, null, null)]
    [InlineData(null, 50L, null)]
    [InlineData(-1L, 50L, 49L)]
    [InlineData(10L, 50L, -60L)]
    public void TryRead_IncompleteOrNegative_IsNoEvidence(long? input, long? output, long? total)
    {
        var usage = new UsageDetails { InputTokenCount = input, OutputTokenCount = output, TotalTokenCount = total };

        ChatUsage.TryRead(usage, out _).Should().BeFalse();
        ChatUsage.TryRead(null, out _).Should().BeFalse();
    }

    [Fact]
    public void TryRead_Huge_SaturatesAtTheStoreMaximum()
    {
        var usage = new UsageDetails { InputTokenCount = long.MaxValue, OutputTokenCount = long.MaxValue };

        ChatUsage.TryRead(usage, out ChatUsage read).Should().BeTrue();

        read.Charged.Should().Be(BudgetStore.MaxTokens);
    }

    [Fact]
    public void PromptEstimate_CountsUtf8BytesPerMessageOverheadInstructionsAndOtherContent()
    {
        ChatMessage[] messages =
        [
            new(ChatRole.System, "héllo"),                        // 6 bytes + 4
            new(ChatRole.User, [new TextContent("abc"), new DataContent(new byte[5000], "image/png")]), // 3 + 1024 + 4
        ];
        var options = new ChatOptions { Instructions = "be brief" }; // 8

        PromptTokenEstimate.Estimate(messages, options, nonTextContentTokens: 1024).Should().Be(6 + 4 + 3 + 1024 + 4 + 8);
    }

    [Fact]
    public void PromptEstimate_IsAnUpperBoundOfBytes_ForNonAsciiText()
    {
        ChatMessage[] messages = [new(ChatRole.User, "日本語")]; // 9 UTF-8 bytes

        PromptTokenEstimate.Estimate(messages, null, 0).Should().Be(9 + PromptTokenEstimate.PerMessage);
    }

    [Fact]
    public void Sanitize_KeepsModelNames_AndReplacesAnythingElse()
    {
        GenAITokenUsage.Sanitize("gpt-4o-2024-08-06").Should().Be("gpt-4o-2024-08-06");
        GenAITokenUsage.Sanitize("llama3:8b").Should().Be("llama3:8b");
        GenAITokenUsage.Sanitize("has space").Should().Be("_OTHER");
        GenAITokenUsage.Sanitize(new string('a', 129)).Should().Be("_OTHER");
        GenAITokenUsage.Sanitize("").Should().Be("_OTHER");
    }
}
