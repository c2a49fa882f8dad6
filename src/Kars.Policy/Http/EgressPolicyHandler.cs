using System.Net;
using System.Net.Http;
using System.Runtime.ExceptionServices;
using Kars.Policy.Egress;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kars.Policy.Http;

/// <summary>
/// A <see cref="DelegatingHandler"/> that decides every request URI before it is sent and refuses denied ones
/// with <see cref="EgressDeniedException"/>.
/// </summary>
/// <remarks>
/// <para>The handler sees the requests the caller sends, not the redirect hops the primary handler follows or the
/// addresses a name resolves to: pair it with <see cref="EgressConnectCallback"/> on the primary
/// <see cref="SocketsHttpHandler"/> (as <c>AddKarsEgressPolicy()</c> in Kars.Policy.Extensions does). With both, a
/// refusal from the connect callback reaches the caller as the <see cref="EgressDeniedException"/> itself, not
/// wrapped. After a response arrives through redirects, the handler decides its final URI again and refuses
/// (disposing the response) when it is denied.</para>
/// <para>Requests that could use HTTP/3 are kept on HTTP/2 or lower, because QUIC connections bypass the connect
/// callback.</para>
/// </remarks>
public sealed class EgressPolicyHandler : DelegatingHandler
{
    private readonly IEgressPolicy _policy;
    private readonly string? _sandbox;
    private readonly ILogger _logger;

    /// <summary>Initializes a new handler.</summary>
    /// <param name="policy">The policy that decides.</param>
    /// <param name="options">Options (only <see cref="EgressHttpOptions.Sandbox"/> is used here); <see langword="null"/> for the defaults.</param>
    /// <param name="loggerFactory">Where denials are logged; <see langword="null"/> for none.</param>
    /// <exception cref="ArgumentNullException"><paramref name="policy"/> is <see langword="null"/>.</exception>
    public EgressPolicyHandler(IEgressPolicy policy, EgressHttpOptions? options = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(policy);
        _policy = policy;
        _sandbox = options?.Sandbox;
        _logger = loggerFactory?.CreateLogger(typeof(EgressPolicyHandler).FullName!) ?? NullLogger.Instance;
    }

    /// <inheritdoc />
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        Uri? sent = Before(request);
        HttpResponseMessage response;
        try
        {
            response = await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (HttpRequestException ex) when (FindDenial(ex) is { } denied && !ReferenceEquals(denied, ex))
        {
            ExceptionDispatchInfo.Throw(denied);
            throw;
        }

        return After(request, sent, response);
    }

    /// <inheritdoc />
    protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        Uri? sent = Before(request);
        HttpResponseMessage response;
        try
        {
            response = base.Send(request, cancellationToken);
        }
        catch (HttpRequestException ex) when (FindDenial(ex) is { } denied && !ReferenceEquals(denied, ex))
        {
            ExceptionDispatchInfo.Throw(denied);
            throw;
        }

        return After(request, sent, response);
    }

    private Uri? Before(HttpRequestMessage request)
    {
        ArgumentNullException.ThrowIfNull(request);
        Uri? uri = request.RequestUri;
        var decision = uri is { IsAbsoluteUri: true }
            ? _policy.Evaluate(uri, Sandbox(request))
            : _policy.Evaluate(string.Empty, Sandbox(request));
        Deny(decision, EgressCheckpoint.Request);

        if (request.Version.Major >= 3 || request.VersionPolicy == HttpVersionPolicy.RequestVersionOrHigher)
        {
            HttpEgressLog.Http3Downgraded(_logger);
            request.Version = HttpVersion.Version20;
            request.VersionPolicy = HttpVersionPolicy.RequestVersionOrLower;
        }

        return uri;
    }

    private HttpResponseMessage After(HttpRequestMessage request, Uri? sent, HttpResponseMessage response)
    {
        Uri? final = response.RequestMessage?.RequestUri ?? request.RequestUri;
        if (final is { IsAbsoluteUri: true } && final != sent)
        {
            var decision = _policy.Evaluate(final, Sandbox(request));
            if (!decision.IsAllowed)
            {
                response.Dispose();
                Deny(decision, EgressCheckpoint.Redirect);
            }
        }

        return response;
    }

    private string? Sandbox(HttpRequestMessage request) => EgressRequestOptions.GetSandbox(request, _sandbox);

    private void Deny(in EgressDecision decision, EgressCheckpoint checkpoint)
    {
        if (!decision.IsAllowed)
        {
            HttpEgressLog.Denied(_logger, checkpoint, decision.Reason, decision.PolicyGeneration);
            throw new EgressDeniedException(decision, checkpoint);
        }
    }

    private static EgressDeniedException? FindDenial(Exception? ex)
    {
        for (int depth = 0; ex is not null && depth < 8; depth++, ex = ex.InnerException)
        {
            if (ex is EgressDeniedException denied)
            {
                return denied;
            }
        }

        return null;
    }
}
