namespace Kars.Policy.Budgets;

/// <summary>Computes how many tokens to hold for an inference request (DESIGN §4).</summary>
public static class BudgetReservation
{
    /// <summary>
    /// Returns prompt estimate + completion bound, where the bound is the larger of <paramref name="maxTokens"/> and
    /// <paramref name="maxCompletionTokens"/>, else what the per-request cap leaves after the prompt
    /// (<c>max(0, perRequestTokens − promptTokens)</c>, so the whole request fits the cap), else
    /// <paramref name="defaultCompletionTokens"/>. Saturates at <see cref="BudgetStore.MaxTokens"/>, so the result can always be reserved.
    /// </summary>
    /// <remarks>The per-request cap applies to the whole reservation (prompt + completion): a request without
    /// <c>max_tokens</c> is bounded by the rest of the cap instead of by the full cap, which would always exceed it.</remarks>
    /// <param name="promptTokens">The estimated prompt tokens (0 or more).</param>
    /// <param name="maxTokens">The request's <c>max_tokens</c>, if it is a non-negative integer.</param>
    /// <param name="maxCompletionTokens">The request's <c>max_completion_tokens</c>, if it is a non-negative integer.</param>
    /// <param name="perRequestTokens">The per-request cap, if configured.</param>
    /// <param name="defaultCompletionTokens">The configured default completion bound (0 or more).</param>
    /// <returns>The tokens to hold.</returns>
    /// <exception cref="ArgumentOutOfRangeException">An argument is negative.</exception>
    public static long Compute(long promptTokens, long? maxTokens, long? maxCompletionTokens, long? perRequestTokens, long defaultCompletionTokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(promptTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(defaultCompletionTokens);
        if (maxTokens < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(maxTokens), maxTokens, "max_tokens is zero or more.");
        }

        if (maxCompletionTokens < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(maxCompletionTokens), maxCompletionTokens, "max_completion_tokens is zero or more.");
        }

        if (perRequestTokens < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(perRequestTokens), perRequestTokens, "The per-request cap is zero or more.");
        }

        long bound = (maxTokens, maxCompletionTokens) switch
        {
            (long a, long b) => Math.Max(a, b),
            (long a, null) => a,
            (null, long b) => b,
            _ => perRequestTokens is { } cap ? Math.Max(0, cap - promptTokens) : defaultCompletionTokens,
        };

        // Saturates at BudgetStore.MaxTokens, the largest reservation a store accepts: an agent-controlled
        // max_tokens can then never make the meter throw; it holds (or is rejected for) the maximum instead.
        long sum = promptTokens + bound;
        return sum is < 0 or > BudgetStore.MaxTokens ? BudgetStore.MaxTokens : sum;
    }
}
