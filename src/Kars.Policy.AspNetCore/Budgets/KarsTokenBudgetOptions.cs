using Kars.Policy.Budgets;
using Microsoft.AspNetCore.Http;

namespace Kars.Policy.AspNetCore;

/// <summary>
/// Options of the token-budget gate added by <c>UseKarsTokenBudget()</c>. Validated and copied when the middleware
/// is built: changing them afterwards has no effect.
/// </summary>
public sealed class KarsTokenBudgetOptions
{
    /// <summary>The default of <see cref="MaxRequestBodyBytes"/>: 4 MiB.</summary>
    public const int DefaultMaxRequestBodyBytes = 4 * 1024 * 1024;

    /// <summary>The default of <see cref="MaxResponseBodyBytes"/>: 8 MiB.</summary>
    public const int DefaultMaxResponseBodyBytes = 8 * 1024 * 1024;

    /// <summary>The default of <see cref="MaxEventBytes"/>: 1 MiB.</summary>
    public const int DefaultMaxEventBytes = 1024 * 1024;

    /// <summary>The default of <see cref="DefaultCompletionTokens"/>: 4,096.</summary>
    public const long DefaultDefaultCompletionTokens = 4096;

    /// <summary>The largest value of <see cref="MaxRequestBodyBytes"/>, <see cref="MaxResponseBodyBytes"/> and
    /// <see cref="MaxEventBytes"/>: 256 MiB.</summary>
    public const int MaxBufferBytes = 256 * 1024 * 1024;

    /// <summary>Gets or sets the meter that decides. When <see langword="null"/>, the <see cref="BudgetMeter"/>
    /// registered in the application's services is used (a host or <c>AddKarsPolicy</c> registers it), resolved again
    /// for every metered request so that a meter rebuilt on a configuration reload is followed; start-up fails when
    /// there is none.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public BudgetMeter? Meter { get; set; }

    /// <summary>Gets the request paths the gate meters (exact match, ASCII case-insensitive, <c>POST</c> only; other
    /// paths and methods pass through unmetered). What a path ends with decides how its usage is read:
    /// <c>/chat/completions</c>, <c>/completions</c>, <c>/responses</c>, <c>/embeddings</c> or <c>/messages</c>
    /// (Anthropic); any other path is read like Chat Completions.</summary>
    /// <value>The default value is <c>/v1/chat/completions</c>, <c>/v1/responses</c>, <c>/v1/completions</c>,
    /// <c>/v1/embeddings</c> and <c>/v1/messages</c>. To meter other paths only, clear the list first.</value>
    public IList<string> Routes { get; } = new List<string>
    {
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/messages",
    };

    /// <summary>Gets or sets how the budget key of a request is found (for example the authenticated sandbox from
    /// the client certificate or the user principal). Required. The key never comes from a client header unless
    /// this resolver reads one. When it returns <see langword="null"/> the request is refused with 403
    /// (<c>budget_key_missing</c>) and nothing is reserved: a gate that let unkeyed requests through would meter
    /// nothing for exactly the callers it cannot identify.</summary>
    /// <value>The default value is <see langword="null"/> (start-up fails until it is set).</value>
    public Func<HttpContext, string?>? KeyResolver { get; set; }

    /// <summary>Gets or sets the largest request body read (1 byte to <see cref="MaxBufferBytes"/>). A larger body
    /// is answered 413 with a JSON error before anything is reserved.</summary>
    /// <value>The default value is <see cref="DefaultMaxRequestBodyBytes"/> (4 MiB).</value>
    public int MaxRequestBodyBytes { get; set; } = DefaultMaxRequestBodyBytes;

    /// <summary>Gets or sets the largest non-streamed (JSON) response body the gate keeps a copy of to read its
    /// <c>usage</c> (1 byte to <see cref="MaxBufferBytes"/>). A larger response still reaches the client in full,
    /// but its usage is not read and the whole hold is charged.</summary>
    /// <value>The default value is <see cref="DefaultMaxResponseBodyBytes"/> (8 MiB).</value>
    public int MaxResponseBodyBytes { get; set; } = DefaultMaxResponseBodyBytes;

    /// <summary>Gets or sets the longest server-sent-events line and event (the joined <c>data</c> lines) the gate
    /// reads, in bytes (1 byte to <see cref="MaxBufferBytes"/>). A longer one still reaches the client, but the
    /// stream's usage is then not trusted and the whole hold is charged.</summary>
    /// <value>The default value is <see cref="DefaultMaxEventBytes"/> (1 MiB).</value>
    public int MaxEventBytes { get; set; } = DefaultMaxEventBytes;

    /// <summary>Gets or sets the completion bound of a request that names none (no <c>max_tokens</c>,
    /// <c>max_completion_tokens</c> or <c>max_output_tokens</c>) when the policy has no per-request cap
    /// (0 to <see cref="BudgetStore.MaxTokens"/>). Embeddings requests always use 0.</summary>
    /// <value>The default value is <see cref="DefaultDefaultCompletionTokens"/> (4,096).</value>
    public long DefaultCompletionTokens { get; set; } = DefaultDefaultCompletionTokens;

    /// <summary>Gets or sets how long a request's hold lives before the store charges it in full if the gate has not
    /// settled it (positive, at most 365 days). Set it above the longest response the upstream may stream: a lease
    /// that expires first is charged its whole hold, whatever the usage.</summary>
    /// <value>The default value is <see langword="null"/>: the meter policy's <see cref="BudgetPolicy.LeaseDuration"/>
    /// (10 minutes unless configured).</value>
    public TimeSpan? LeaseDuration { get; set; }

    /// <summary>Gets or sets how the prompt tokens of a request body are estimated (the result must be 0 or more).
    /// Only admission and the charge for a response without usage depend on it: a settled response is charged its
    /// reported usage.</summary>
    /// <value>The default value is <see langword="null"/>: the UTF-8 length of the whole body divided by 4, rounded
    /// up (see <c>docs/integration.md</c> for why this leans towards an overestimate).</value>
    public Func<ReadOnlyMemory<byte>, long>? PromptTokenEstimator { get; set; }
}
