using System.Runtime.CompilerServices;
using Kars.Policy.Budgets;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kars.Policy.AI;

/// <summary>
/// An <see cref="IChatClient"/> middleware that meters token budgets: it reserves before every call through a
/// <see cref="BudgetMeter"/>, refuses a call the budget rejects without calling the inner client, settles the
/// reservation from the usage the response reports (streaming included), charges the whole hold when no usage
/// evidence arrives, and records the OpenTelemetry GenAI <c>gen_ai.client.token.usage</c> histogram.
/// </summary>
/// <remarks>
/// <para>The budget key of a call comes from <see cref="TokenBudgetChatClientOptions.KeyResolver"/>, never from the
/// messages. The reservation is the prompt estimate plus <see cref="ChatOptions.MaxOutputTokens"/>, else what the
/// policy's per-request cap leaves after the prompt, else <see cref="TokenBudgetChatClientOptions.DefaultCompletionTokens"/>
/// (<see cref="BudgetReservation.Compute"/>).</para>
/// <para>A rejection throws <see cref="TokenBudgetExceededException"/>; a store that cannot decide throws
/// <see cref="BudgetStoreUnavailableException"/> (unless the store is configured to fail open); in both cases the inner
/// client is not called. In <see cref="BudgetMode.Observe"/> every call goes through and is counted.</para>
/// <para>Settlement: a response (or a stream that ran to its end) whose <see cref="UsageDetails"/> give input and output
/// counts, or a total, is charged input + output (cached input included, reasoning counted once), or the total when
/// that is larger. A response without usage, an exception or cancellation from the inner client, a stream that fails,
/// is cancelled or whose enumerator is disposed before its end are all charged the whole hold. A stream enumerator
/// that is never disposed is charged the whole hold by the store when the lease expires. Settlement never throws
/// into the caller: if the store fails then, the lease expires and is charged in full.</para>
/// <para>Safe for concurrent use; admission is atomic in the store, so concurrent callers never overspend.</para>
/// </remarks>
public sealed class TokenBudgetChatClient : DelegatingChatClient
{
    private readonly BudgetMeter _meter;
    private readonly TokenBudgetChatClientOptions _options;
    private readonly GenAITokenUsage _usage;
    private readonly ILogger _logger;
    private readonly string? _provider;
    private readonly string? _defaultModel;

    /// <summary>Initializes a budget middleware over <paramref name="innerClient"/>.</summary>
    /// <param name="innerClient">The client that calls the model.</param>
    /// <param name="meter">The budget meter (policy and store).</param>
    /// <param name="options">The options; <see cref="TokenBudgetChatClientOptions.KeyResolver"/> is required.</param>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is missing or out of range.</exception>
    public TokenBudgetChatClient(IChatClient innerClient, BudgetMeter meter, TokenBudgetChatClientOptions options)
        : base(innerClient)
    {
        ArgumentNullException.ThrowIfNull(meter);
        ArgumentNullException.ThrowIfNull(options);
        _options = options.Validate();
        _meter = meter;
        _logger = (ILogger?)_options.LoggerFactory?.CreateLogger<TokenBudgetChatClient>() ?? NullLogger.Instance;
        ChatClientMetadata? metadata = innerClient.GetService<ChatClientMetadata>();
        _provider = _options.ProviderName ?? metadata?.ProviderName;
        _defaultModel = metadata?.DefaultModelId;
        _usage = new GenAITokenUsage(_options.MeterFactory);
    }

    /// <inheritdoc/>
    /// <exception cref="TokenBudgetExceededException">The budget rejected the call; the inner client was not called.</exception>
    /// <exception cref="BudgetStoreUnavailableException">The store cannot decide; the inner client was not called.</exception>
    /// <exception cref="InvalidOperationException">The key resolver gave no key, or the prompt estimator a negative
    /// estimate; the inner client was not called.</exception>
    public override async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        (BudgetLease lease, options) = await ReserveAsync(messages, options, cancellationToken).ConfigureAwait(false);
        ChatResponse response;
        try
        {
            response = await base.GetResponseAsync(messages, options, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await ChargeHoldAsync(lease, e is OperationCanceledException ? "cancelled" : "failed").ConfigureAwait(false);
            throw;
        }

        await SettleAsync(lease, response.Usage, options, response.ModelId).ConfigureAwait(false);
        return response;
    }

    /// <inheritdoc/>
    /// <remarks>The reservation is made when the enumeration starts, so a rejection is thrown by the first
    /// <c>MoveNextAsync</c>; the settlement is made when the enumeration ends or its enumerator is disposed.</remarks>
    /// <exception cref="TokenBudgetExceededException">The budget rejected the call; the inner client was not called.</exception>
    /// <exception cref="BudgetStoreUnavailableException">The store cannot decide; the inner client was not called.</exception>
    /// <exception cref="InvalidOperationException">The key resolver gave no key, or the prompt estimator a negative
    /// estimate; the inner client was not called.</exception>
    public override IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(messages);
        return StreamAsync(messages, options, cancellationToken);
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _usage.Dispose();
        }

        base.Dispose(disposing);
    }

    private async IAsyncEnumerable<ChatResponseUpdate> StreamAsync(IEnumerable<ChatMessage> messages, ChatOptions? options, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        (BudgetLease lease, options) = await ReserveAsync(messages, options, cancellationToken).ConfigureAwait(false);
        UsageDetails? usage = null;
        string? responseModel = null;
        bool completed = false;
        try
        {
            await foreach (ChatResponseUpdate update in base.GetStreamingResponseAsync(messages, options, cancellationToken).ConfigureAwait(false))
            {
                foreach (AIContent content in update.Contents)
                {
                    if (content is UsageContent reported)
                    {
                        // Summed as ChatResponse.ToChatResponse sums them (a provider may report input and output apart).
                        usage ??= new UsageDetails();
                        usage.Add(reported.Details);
                    }
                }

                responseModel = update.ModelId ?? responseModel;
                yield return update;
            }

            completed = true;
        }
        finally
        {
            if (completed)
            {
                await SettleAsync(lease, usage, options, responseModel).ConfigureAwait(false);
            }
            else if (ChatUsage.TryRead(usage, out ChatUsage seen) && seen.Charged > lease.Tokens)
            {
                // Ended early (disposed, cancelled, failed) after the provider reported more than the hold (the hold's
                // prompt part is an estimate): charge what was reported, never less.
                await ChargeObservedAsync(lease, seen.Charged).ConfigureAwait(false);
            }
            else
            {
                await ChargeHoldAsync(lease, "stream ended early").ConfigureAwait(false);
            }
        }
    }

    /// <summary>Reserves, and returns the options to call the inner client with: when the caller set no
    /// <see cref="ChatOptions.MaxOutputTokens"/>, a copy bounded to the completion tokens the hold assumed, so the hold
    /// stays an upper bound for a call that ends without usage.</summary>
    private async ValueTask<(BudgetLease Lease, ChatOptions? Options)> ReserveAsync(IEnumerable<ChatMessage> messages, ChatOptions? options, CancellationToken cancellationToken)
    {
        string? key = _options.KeyResolver!(options);
        if (string.IsNullOrEmpty(key))
        {
            throw new InvalidOperationException("The budget key resolver gave no key for this chat call; the call was refused and the inner client was not called.");
        }

        long prompt = _options.PromptTokenEstimator is { } estimator
            ? estimator(messages, options)
            : PromptTokenEstimate.Estimate(messages, options, _options.NonTextContentTokens);
        if (prompt < 0)
        {
            throw new InvalidOperationException("The prompt token estimator returned a negative estimate; the call was refused and the inner client was not called.");
        }

        long promptTokens = Math.Min(prompt, BudgetStore.MaxTokens);
        long tokens = BudgetReservation.Compute(
            promptTokens,
            options?.MaxOutputTokens,
            maxCompletionTokens: null,
            _meter.Policy.PerRequestTokens,
            _options.DefaultCompletionTokens);
        BudgetDecision decision = await _meter.TryReserveAsync(key, tokens, at: null, cancellationToken).ConfigureAwait(false);
        if (!decision.IsAdmitted)
        {
            AILog.Rejected(_logger, decision.Reason, decision.Tokens);
            throw new TokenBudgetExceededException(decision);
        }

        long completionBound = tokens - promptTokens;
        if (options?.MaxOutputTokens is null && completionBound >= 1)
        {
            ChatOptions bounded = options?.Clone() ?? new ChatOptions();
            bounded.MaxOutputTokens = (int)Math.Min(completionBound, int.MaxValue);
            options = bounded;
        }

        return (decision.Lease, options);
    }

    private async ValueTask SettleAsync(BudgetLease lease, UsageDetails? reported, ChatOptions? options, string? responseModel)
    {
        if (!ChatUsage.TryRead(reported, out ChatUsage usage))
        {
            await ChargeHoldAsync(lease, "no usage").ConfigureAwait(false);
            return;
        }

        _usage.Record(usage, _provider, options?.ModelId ?? _defaultModel, responseModel);

        // An invalid lease is unmetered (the store failed open and holds nothing): CloseAsync does nothing then.
        await CloseAsync(lease, usage.Charged).ConfigureAwait(false);
    }

    private ValueTask ChargeObservedAsync(BudgetLease lease, long observed)
    {
        if (lease.IsValid)
        {
            AILog.ChargedObserved(_logger, observed, lease.Tokens);
        }

        return CloseAsync(lease, observed);
    }

    private ValueTask ChargeHoldAsync(BudgetLease lease, string outcome)
    {
        if (lease.IsValid)
        {
            AILog.ChargedHold(_logger, outcome, lease.Tokens);
        }

        return CloseAsync(lease, actual: null);
    }

    /// <summary>Settles the lease at <paramref name="actual"/>, or charges its whole hold when that is
    /// <see langword="null"/>; a store failing or disposed (host shutdown) must not replace the caller's result or
    /// exception.</summary>
    private async ValueTask CloseAsync(BudgetLease lease, long? actual)
    {
        if (!lease.IsValid)
        {
            return;
        }

        try
        {
            if (actual is { } tokens)
            {
                await lease.SettleAsync(tokens, CancellationToken.None).ConfigureAwait(false);
            }
            else
            {
                await lease.AbandonAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is BudgetException or ObjectDisposedException)
        {
            AILog.SettleFailed(_logger, e.GetType().Name);
        }
    }
}
