using System.ClientModel.Primitives;
using Kars.Policy.Egress;
using Kars.Policy.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kars.Policy.Azure;

/// <summary>
/// A System.ClientModel <see cref="PipelinePolicy"/> that decides each request URI with an
/// <see cref="IEgressPolicy"/> and refuses denied ones with <see cref="EgressDeniedException"/> before they are sent.
/// Clients built on System.ClientModel (the official OpenAI .NET SDK's <c>OpenAIClient</c>, among others) take it
/// through their options: <c>options.AddPolicy(policy, PipelinePosition.PerCall)</c>.
/// </summary>
/// <remarks>Add it per call so a denial happens before the retry policy. Like
/// <see cref="EgressPolicyPipelinePolicy"/>, it sees URIs, not connections: for the connection-level check give the
/// client an <c>HttpClientPipelineTransport</c> over <see cref="EgressConnectCallback.CreateHandler"/>. Thread-safe.</remarks>
public sealed class EgressClientPipelinePolicy : PipelinePolicy
{
    private readonly IEgressPolicy _policy;
    private readonly string? _sandbox;
    private readonly ILogger _logger;

    /// <summary>Initializes a new policy.</summary>
    /// <param name="policy">The policy that decides.</param>
    /// <param name="options">Options (only <see cref="EgressHttpOptions.Sandbox"/> is used); <see langword="null"/> for the defaults.</param>
    /// <param name="loggerFactory">Where denials are logged; <see langword="null"/> for none.</param>
    /// <exception cref="ArgumentNullException"><paramref name="policy"/> is <see langword="null"/>.</exception>
    public EgressClientPipelinePolicy(IEgressPolicy policy, EgressHttpOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(policy);
        _policy = policy;
        _sandbox = options?.Sandbox;
        _logger = loggerFactory?.CreateLogger(typeof(EgressClientPipelinePolicy).FullName!) ?? NullLogger.Instance;
    }

    /// <inheritdoc />
    public override void Process(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
    {
        Check(message);
        ProcessNext(message, pipeline, currentIndex);
    }

    /// <inheritdoc />
    public override ValueTask ProcessAsync(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
    {
        Check(message);
        return ProcessNextAsync(message, pipeline, currentIndex);
    }

    private void Check(PipelineMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        var uri = message.Request.Uri;
        var decision = uri is null ? _policy.Evaluate(string.Empty, _sandbox) : _policy.Evaluate(uri, _sandbox);
        if (!decision.IsAllowed)
        {
            AzureEgressLog.Denied(_logger, "System.ClientModel", decision.Reason, decision.PolicyGeneration);
            throw new EgressDeniedException(decision, EgressCheckpoint.Request);
        }
    }
}
