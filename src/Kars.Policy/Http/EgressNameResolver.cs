using System.Net;
using System.Net.Sockets;

namespace Kars.Policy.Http;

/// <summary>
/// Resolves the host name of a connection to the addresses the connect callback vets and then connects to.
/// The default, <see cref="System"/>, asks the operating system (<see cref="Dns"/>); tests and hosts with their
/// own resolution (a hosts map, a DNS-over-HTTPS client) derive from this class.
/// </summary>
/// <remarks>Implementations are thread-safe. An empty result means the name did not resolve.</remarks>
public abstract class EgressNameResolver
{
    /// <summary>Gets the resolver that asks the operating system.</summary>
    public static EgressNameResolver System { get; } = new DnsResolver();

    /// <summary>Resolves a host name to its addresses, in the order they should be tried.</summary>
    /// <param name="host">The DNS host name (never an IP literal: those are not resolved).</param>
    /// <param name="cancellationToken">Cancels the resolution.</param>
    /// <returns>The addresses; empty when the name does not resolve.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="host"/> is <see langword="null"/>.</exception>
    public ValueTask<IPAddress[]> ResolveAsync(string host, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(host);
        cancellationToken.ThrowIfCancellationRequested();
        return ResolveCoreAsync(host, cancellationToken);
    }

    /// <summary>Resolves a host name; called by <see cref="ResolveAsync"/> after it validated its arguments.</summary>
    /// <param name="host">The DNS host name.</param>
    /// <param name="cancellationToken">Cancels the resolution.</param>
    /// <returns>The addresses; empty when the name does not resolve.</returns>
    protected abstract ValueTask<IPAddress[]> ResolveCoreAsync(string host, CancellationToken cancellationToken);

    private sealed class DnsResolver : EgressNameResolver
    {
        protected override async ValueTask<IPAddress[]> ResolveCoreAsync(string host, CancellationToken cancellationToken)
        {
            try
            {
                return await Dns.GetHostAddressesAsync(host, cancellationToken).ConfigureAwait(false);
            }
            catch (SocketException)
            {
                return [];
            }
        }
    }
}
