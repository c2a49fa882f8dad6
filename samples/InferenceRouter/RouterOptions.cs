namespace InferenceRouter;

/// <summary>The router's configuration (section <c>Router</c>).</summary>
public sealed class RouterOptions
{
    /// <summary>The configuration section.</summary>
    public const string Section = "Router";

    /// <summary>Gets or sets the egress policy file, relative to the application folder.</summary>
    public string PolicyPath { get; set; } = "policy.json";

    /// <summary>Gets or sets CIDR ranges the host trusts although they are non-public (the demo and the tests put
    /// <c>127.0.0.0/8</c> here because loopback plays the internet; a real deployment leaves it empty).</summary>
    public List<string> PrivateAllow { get; set; } = [];

    /// <summary>Gets or sets a hosts map in front of DNS (name to addresses), for the demo and the tests. Empty: the
    /// operating system resolves.</summary>
    public Dictionary<string, string[]> Hosts { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Gets or sets a value indicating whether the upstream client uses the system proxy (<c>HTTPS_PROXY</c>...).
    /// The connect callback checks the proxy hop too, so the policy must allow the proxy.</summary>
    public bool UseSystemProxy { get; set; } = true;

    /// <summary>Gets or sets the upstream every sandbox uses unless <see cref="SandboxUpstreams"/> names another.</summary>
    public UpstreamOptions Upstream { get; set; } = new();

    /// <summary>Gets or sets per-sandbox upstreams (sandbox name to upstream).</summary>
    public Dictionary<string, UpstreamOptions> SandboxUpstreams { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Gets or sets the clients: each API key the router accepts and the sandbox (budget key) it stands
    /// for. A list rather than a map, because configuration keys are case-insensitive and API keys are not.</summary>
    public List<ClientOptions> Clients { get; set; } = [];

    /// <summary>Gets or sets the token budget.</summary>
    public BudgetOptions Budget { get; set; } = new();

    /// <summary>Gets or sets the largest request body the router forwards (bytes).</summary>
    public int MaxRequestBodyBytes { get; set; } = 1024 * 1024;
}

/// <summary>An OpenAI-compatible upstream.</summary>
public sealed class UpstreamOptions
{
    /// <summary>Gets or sets the base URL, ending in <c>/v1/</c> (for example <c>https://api.openai.com/v1/</c>).</summary>
    public string BaseUrl { get; set; } = string.Empty;

    /// <summary>Gets or sets the router's own key for the upstream (the client's key is never forwarded).</summary>
    public string ApiKey { get; set; } = string.Empty;
}

/// <summary>A client of the router.</summary>
public sealed class ClientOptions
{
    /// <summary>Gets or sets the API key the client sends as <c>Authorization: Bearer</c>.</summary>
    public string ApiKey { get; set; } = string.Empty;

    /// <summary>Gets or sets the sandbox (budget key and egress sandbox) the key stands for.</summary>
    public string Sandbox { get; set; } = string.Empty;
}

/// <summary>Token budget settings: one daily limit for every sandbox, with per-sandbox overrides.</summary>
public sealed class BudgetOptions
{
    /// <summary>Gets or sets the largest reservation one request may make (a larger one is refused, not retryable).</summary>
    public long? PerRequestTokens { get; set; }

    /// <summary>Gets or sets the completion bound when a request names no <c>max_tokens</c>.</summary>
    public long DefaultCompletionTokens { get; set; } = 1024;

    /// <summary>Gets or sets the daily limit of every sandbox without an override.</summary>
    public long? Day { get; set; }

    /// <summary>Gets or sets per-sandbox daily limits.</summary>
    public List<SandboxBudgetOptions> Sandboxes { get; set; } = [];
}

/// <summary>A per-sandbox daily limit.</summary>
public sealed class SandboxBudgetOptions
{
    /// <summary>Gets or sets the sandbox.</summary>
    public string Sandbox { get; set; } = string.Empty;

    /// <summary>Gets or sets its daily limit.</summary>
    public long? Day { get; set; }
}
