using Azure.Core;
using Azure.Core.Pipeline;
using Kars.Policy.Egress;
using Kars.Policy.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kars.Policy.Azure;

/// <summary>
/// An Azure.Core <see cref="HttpPipelinePolicy"/> that decides each request URI with an <see cref="IEgressPolicy"/>
/// and refuses denied ones with <see cref="EgressDeniedException"/> before they are sent.
/// </summary>
/// <remarks>
/// Add it per call (<c>options.AddPolicy(policy, HttpPipelinePosition.PerCall)</c>) so a denial happens once, before
/// the retry policy, and is never retried. It sees the URI the client builds, not connections: for the
/// connection-level check (resolved addresses, redirects, proxies) give the client an
/// <c>HttpClientTransport</c> over <see cref="EgressConnectCallback.CreateHandler"/>. Thread-safe.
/// </remarks>
public sealed class EgressPolicyPipelinePolicy : HttpPipelinePolicy
{
    private readonly IEgressPolicy _policy;
    private readonly string? _sandbox;
    private readonly ILogger _logger;

    /// <summary>Initializes a new policy.</summary>
    /// <param name="policy">The policy that decides.</param>
    /// <param name="options">Options (only <see cref="EgressHttpOptions.Sandbox"/> is used); <see langword="null"/> for the defaults.</param>
    /// <param name="loggerFactory">Where denials are logged; <see langword="null"/> for none.</param>
    /// <exception cref="ArgumentNullException"><paramref name="policy"/> is <see langword="null"/>.</exception>
    public EgressPolicyPipelinePolicy(IEgressPolicy policy, EgressHttpOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(policy);
        _policy = policy;
        _sandbox = options?.Sandbox;
        _logger = loggerFactory?.CreateLogger(typeof(EgressPolicyPipelinePolicy).FullName!) ?? NullLogger.Instance;
    }

    /// <inheritdoc />
    public override ValueTask ProcessAsync(HttpMessage message, ReadOnlyMemory<HttpPipelinePolicy> pipeline)
    {
        Check(message);
        return ProcessNextAsync(message, pipeline);
    }

    /// <inheritdoc />
    public override void Process(HttpMessage message, ReadOnlyMemory<HttpPipelinePolicy> pipeline)
    {
        Check(message);
        ProcessNext(message, pipeline);
    }

    private void Check(HttpMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var decision = _policy.Evaluate(message.Request.Uri.ToUri(), _sandbox);
        if (!decision.IsAllowed)
        {
            AzureEgressLog.Denied(_logger, "Azure.Core", decision.Reason, decision.PolicyGeneration);
            throw new EgressDeniedException(decision, EgressCheckpoint.Request);
        }
    }
}
