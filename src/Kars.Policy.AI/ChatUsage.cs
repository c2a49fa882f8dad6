using Kars.Policy.Budgets;
using Microsoft.Extensions.AI;

namespace Kars.Policy.AI;

/// <summary>What a call is charged from the usage its response reported (docs/integration.md, "What is charged").</summary>
internal readonly record struct ChatUsage(long Charged, long? Input, long? Output)
{
    /// <summary>Reads <paramref name="usage"/>; <see langword="false"/> when it is no evidence (absent, negative, or
    /// neither input and output nor a total), in which case the caller charges the whole hold.</summary>
    /// <remarks>
    /// Microsoft.Extensions.AI counts cached input tokens inside <see cref="UsageDetails.InputTokenCount"/> and
    /// reasoning tokens inside <see cref="UsageDetails.OutputTokenCount"/> (the remarks of
    /// <see cref="UsageDetails.CachedInputTokenCount"/> and <see cref="UsageDetails.ReasoningTokenCount"/>), as OpenAI's
    /// <c>usage.prompt_tokens_details.cached_tokens</c> and <c>completion_tokens_details.reasoning_tokens</c> are parts
    /// of <c>prompt_tokens</c> and <c>completion_tokens</c>. So the charge is input + output: cached tokens are charged in
    /// full (a token budget counts tokens, not price), reasoning tokens once. A provider that reports more reasoning
    /// than output evidently counts it apart, and the reasoning is added. When the reported total is larger than that
    /// sum, the total is charged: the larger figure wins, so a provider that counts something else in its total is not
    /// undercharged.
    /// </remarks>
    public static bool TryRead(UsageDetails? usage, out ChatUsage result)
    {
        result = default;
        if (usage is null)
        {
            return false;
        }

        long? input = usage.InputTokenCount;
        long? output = usage.OutputTokenCount;
        long? total = usage.TotalTokenCount;
        long? reasoning = usage.ReasoningTokenCount;
        if (input < 0 || output < 0 || total < 0 || reasoning < 0 || usage.CachedInputTokenCount < 0)
        {
            return false;
        }

        if (output is { } o && reasoning is { } r && r > o)
        {
            output = Add(o, r);
        }

        long? sum = input is { } i && output is { } oo ? Add(i, oo) : null;
        long? charged = (sum, total) switch
        {
            (long s, long t) => Math.Max(s, t),
            (long s, null) => s,
            (null, long t) => t,
            _ => null,
        };
        if (charged is not { } c)
        {
            return false;
        }

        result = new ChatUsage(Math.Min(c, BudgetStore.MaxTokens), input, output);
        return true;
    }

    /// <summary>Adds two non-negative counts, saturating at <see cref="long.MaxValue"/> (shared with <see cref="PromptTokenEstimate"/>).</summary>
    internal static long Add(long a, long b)
    {
        long s = a + b;
        return s < 0 ? long.MaxValue : s;
    }
}
