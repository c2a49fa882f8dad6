namespace Kars.Policy.Http;

/// <summary>Options of the egress connect callback and <see cref="EgressPolicyHandler"/>. Copied when the
/// callback or handler is created.</summary>
public sealed class EgressHttpOptions
{
    /// <summary>Gets or sets the resolver for connection host names.</summary>
    /// <value>The default value is <see langword="null"/>: <see cref="EgressNameResolver.System"/>.</value>
    public EgressNameResolver? Resolver { get; set; }

    /// <summary>Gets or sets how long one connection attempt to one resolved address may take before the next
    /// address is tried. Between 1 millisecond and 5 minutes.</summary>
    /// <value>The default value is 10 seconds.</value>
    public TimeSpan ConnectAttemptTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Gets or sets the most addresses tried for one connection (the rest are still vetted). Between 1 and 64.</summary>
    /// <value>The default value is 8.</value>
    public int MaxConnectAttempts { get; set; } = 8;

    /// <summary>Gets or sets the sandbox identity decisions are attributed to when a request does not carry
    /// <see cref="EgressRequestOptions.Sandbox"/>.</summary>
    /// <value>The default value is <see langword="null"/>: no sandbox.</value>
    public string? Sandbox { get; set; }

    internal static readonly TimeSpan MaxTimeout = TimeSpan.FromMinutes(5);

    internal EgressHttpOptions Validate()
    {
        if (ConnectAttemptTimeout < TimeSpan.FromMilliseconds(1) || ConnectAttemptTimeout > MaxTimeout)
        {
            throw new ArgumentOutOfRangeException(nameof(ConnectAttemptTimeout), ConnectAttemptTimeout, "EgressHttpOptions.ConnectAttemptTimeout must be between 1 millisecond and 5 minutes.");
        }

        if (MaxConnectAttempts is < 1 or > 64)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxConnectAttempts), MaxConnectAttempts, "EgressHttpOptions.MaxConnectAttempts must be between 1 and 64.");
        }

        return new EgressHttpOptions
        {
            Resolver = Resolver ?? EgressNameResolver.System,
            ConnectAttemptTimeout = ConnectAttemptTimeout,
            MaxConnectAttempts = MaxConnectAttempts,
            Sandbox = Sandbox,
        };
    }
}
