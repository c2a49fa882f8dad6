using System.Diagnostics.Metrics;
using Kars.Policy.Budgets;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Kars.Policy.AI;

/// <summary>Options of <see cref="TokenBudgetChatClient"/>. Copied (validated) when the client is created.</summary>
public sealed class TokenBudgetChatClientOptions
{
    /// <summary>Gets or sets the budget key of a call, from what the host trusts. Required.</summary>
    /// <value>The resolver; called once per call, before anything else, with the call's options. It returns the
    /// budget key, or <see langword="null"/> or an empty string to refuse the call.</value>
    /// <remarks>
    /// The key must be an identity the host controls: a fixed key per client, the authenticated sandbox from ambient
    /// state (an <c>AsyncLocal</c>, the current request's user), or an <see cref="ChatOptions.AdditionalProperties"/>
    /// entry that the host itself sets. It must never come from anything the model or the agent writes: the messages
    /// (which is why they are not passed), or options the agent builds. A caller that can choose its key can choose a
    /// fresh budget.
    /// </remarks>
    public Func<ChatOptions?, string?>? KeyResolver { get; set; }

    /// <summary>Gets or sets how the prompt of a call is estimated, in tokens; <see langword="null"/> for the built-in
    /// estimate.</summary>
    /// <value>The default value is <see langword="null"/>: the UTF-8 byte count of every text in the messages, the
    /// instructions and the tool schemas, 4 tokens per message and <see cref="NonTextContentTokens"/> per other content
    /// item. Bytes bound the tokens of byte-level BPE tokenizers from above, so the built-in estimate over-reserves
    /// (about 4× for English text) rather than under-reserves; plug in a real tokenizer to reserve closer.</value>
    /// <remarks>A negative estimate refuses the call with <see cref="InvalidOperationException"/>.</remarks>
    public Func<IEnumerable<ChatMessage>, ChatOptions?, long>? PromptTokenEstimator { get; set; }

    /// <summary>Gets or sets the tokens the built-in prompt estimate counts for each content item that is not text or
    /// a function call or result (images, audio, files). Between 0 and 1,000,000.</summary>
    /// <value>The default value is 1,024.</value>
    public long NonTextContentTokens { get; set; } = 1024;

    /// <summary>Gets or sets the completion bound when a call sets no <see cref="ChatOptions.MaxOutputTokens"/> and the
    /// policy has no per-request cap. Between 0 and <see cref="BudgetStore.MaxTokens"/>.</summary>
    /// <value>The default value is 4,096.</value>
    public long DefaultCompletionTokens { get; set; } = 4096;

    /// <summary>Gets or sets the <c>gen_ai.provider.name</c> of the token-usage metric; <see langword="null"/> for the
    /// inner client's <see cref="ChatClientMetadata.ProviderName"/>.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? ProviderName { get; set; }

    /// <summary>Gets or sets the factory of the <c>Kars.Policy</c> meter; <see langword="null"/> for a meter the client
    /// creates and disposes itself.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public IMeterFactory? MeterFactory { get; set; }

    /// <summary>Gets or sets the logger factory; <see langword="null"/> for no logging.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public ILoggerFactory? LoggerFactory { get; set; }

    internal TokenBudgetChatClientOptions Validate()
    {
        if (KeyResolver is null)
        {
            throw new ArgumentException("TokenBudgetChatClientOptions.KeyResolver is required: the budget key must come from the host, never from the model input.", "options");
        }

        if (DefaultCompletionTokens is < 0 or > BudgetStore.MaxTokens)
        {
            throw new ArgumentOutOfRangeException(nameof(DefaultCompletionTokens), DefaultCompletionTokens, $"TokenBudgetChatClientOptions.DefaultCompletionTokens must be between 0 and {BudgetStore.MaxTokens}.");
        }

        if (NonTextContentTokens is < 0 or > 1_000_000)
        {
            throw new ArgumentOutOfRangeException(nameof(NonTextContentTokens), NonTextContentTokens, "TokenBudgetChatClientOptions.NonTextContentTokens must be between 0 and 1,000,000.");
        }

        return new TokenBudgetChatClientOptions
        {
            KeyResolver = KeyResolver,
            PromptTokenEstimator = PromptTokenEstimator,
            NonTextContentTokens = NonTextContentTokens,
            DefaultCompletionTokens = DefaultCompletionTokens,
            ProviderName = ProviderName,
            MeterFactory = MeterFactory,
            LoggerFactory = LoggerFactory,
        };
    }
}
