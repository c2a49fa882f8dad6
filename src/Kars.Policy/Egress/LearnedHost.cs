using NodaTime;

namespace Kars.Policy.Egress;

/// <summary>A destination that Learn mode allowed although no rule covered it (DESIGN §2.5).</summary>
/// <remarks>Instances are immutable snapshots and safe to share between threads.</remarks>
public sealed class LearnedHost
{
    /// <summary>Initializes a new learned-host record.</summary>
    /// <param name="sandbox">The sandbox that made the request.</param>
    /// <param name="host">The canonical DNS name.</param>
    /// <param name="port">The port.</param>
    /// <param name="firstSeen">When it was first seen.</param>
    /// <param name="lastSeen">When it was last seen.</param>
    /// <param name="count">How many decisions recorded it.</param>
    public LearnedHost(string sandbox, string host, int port, Instant firstSeen, Instant lastSeen, long count)
    {
        ArgumentNullException.ThrowIfNull(sandbox);
        ArgumentNullException.ThrowIfNull(host);
        Sandbox = sandbox;
        Host = host;
        Port = port;
        FirstSeen = firstSeen;
        LastSeen = lastSeen;
        Count = count;
    }

    /// <summary>Gets the sandbox that made the request (<c>unknown</c> when the host passed none).</summary>
    public string Sandbox { get; }

    /// <summary>Gets the canonical DNS name; never an IP literal.</summary>
    public string Host { get; }

    /// <summary>Gets the port.</summary>
    public int Port { get; }

    /// <summary>Gets when the destination was first seen.</summary>
    public Instant FirstSeen { get; }

    /// <summary>Gets when the destination was last seen.</summary>
    public Instant LastSeen { get; }

    /// <summary>Gets how many decisions recorded the destination.</summary>
    public long Count { get; }
}
