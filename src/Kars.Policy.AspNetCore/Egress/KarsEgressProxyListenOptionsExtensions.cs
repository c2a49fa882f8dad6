using Kars.Policy.AspNetCore;
using Kars.Policy.Egress;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Microsoft.AspNetCore.Hosting;

/// <summary>Adds Kars.Policy egress tunnelling to a Kestrel listener.</summary>
public static class KarsEgressProxyListenOptionsExtensions
{
    /// <summary>
    /// Serves HTTP/1.1 <c>CONNECT host:port</c> requests on this listener as policy-gated tunnels: the target is decided
    /// by name with the <see cref="IEgressPolicy"/> from the container, resolved, every answer decided, and only a vetted
    /// address connected to before <c>200 Connection Established</c>; a denial is a 403 with the same JSON body as
    /// <see cref="KarsEgressProxyApplicationBuilderExtensions.UseKarsEgressProxy"/>. A CONNECT must be the first request
    /// of its connection (as HttpClient and curl send it); every other connection goes to Kestrel untouched. Use on a
    /// plain-HTTP listener, together with <c>app.UseKarsEgressProxy()</c> for absolute-form requests.
    /// </summary>
    /// <param name="listenOptions">The listener.</param>
    /// <param name="options">Options (<see cref="KarsEgressProxyOptions.Sandbox"/>, resolver, time-out); <see langword="null"/> for the defaults.</param>
    /// <returns>The same listener.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="listenOptions"/> is <see langword="null"/>.</exception>
    /// <exception cref="InvalidOperationException">No <see cref="IEgressPolicy"/> is registered.</exception>
    public static ListenOptions UseKarsEgressProxyTunnels(this ListenOptions listenOptions, KarsEgressProxyOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(listenOptions);
        var services = listenOptions.ApplicationServices;
        var policy = services.GetService<IEgressPolicy>()
            ?? throw new InvalidOperationException("UseKarsEgressProxyTunnels() needs an IEgressPolicy registered in the service container.");
        var handler = new EgressTunnelConnectionHandler(
            policy,
            KarsEgressProxyApplicationBuilderExtensions.Copy(options),
            services.GetService<TimeProvider>(),
            services.GetService<ILoggerFactory>());
        return (ListenOptions)listenOptions.Use(next => connection => handler.OnConnectionAsync(connection, next));
    }
}
