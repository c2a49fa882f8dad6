using System.Net.Http;
using Kars.Policy.Egress;

namespace Kars.Policy.Http;

/// <summary>
/// Thrown when an egress policy refuses an HTTP request or a connection. It is an
/// <see cref="HttpRequestException"/>, so code that already handles failed requests handles it, and it carries
/// the <see cref="EgressDecision"/> that refused.
/// </summary>
/// <remarks>
/// The message names the reason and the checkpoint, never the host, URL or query string, so it is safe to log.
/// The host is available in <see cref="EgressDecision.Target"/> for a caller that decides to show it.
/// When only the connect callback is installed, <see cref="System.Net.Http.SocketsHttpHandler"/> wraps this
/// exception in its own <see cref="HttpRequestException"/>; <see cref="EgressPolicyHandler"/> unwraps it again.
/// </remarks>
public sealed class EgressDeniedException : HttpRequestException
{
    /// <summary>Initializes a new instance.</summary>
    /// <param name="decision">The decision that refused.</param>
    /// <param name="checkpoint">Where it refused.</param>
    public EgressDeniedException(EgressDecision decision, EgressCheckpoint checkpoint)
        : base(HttpRequestError.Unknown, BuildMessage(decision, checkpoint), inner: null, statusCode: null)
    {
        Decision = decision;
        Checkpoint = checkpoint;
    }

    /// <summary>Gets the decision that refused the destination.</summary>
    public EgressDecision Decision { get; }

    /// <summary>Gets where the destination was refused.</summary>
    public EgressCheckpoint Checkpoint { get; }

    private static string BuildMessage(EgressDecision decision, EgressCheckpoint checkpoint) =>
        $"Egress denied by policy ({decision.Reason}) at {checkpoint}.";
}
