using Kars.Policy.AspNetCore;
using Kars.Policy.Egress;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Adds the Kars.Policy egress forward proxy to an ASP.NET Core pipeline.</summary>
public static class KarsEgressProxyApplicationBuilderExtensions
{
    internal static KarsEgressProxyOptions Copy(KarsEgressProxyOptions? options)
    {
        options ??= new KarsEgressProxyOptions();
        return new KarsEgressProxyOptions
        {
            Resolver = options.Resolver,
            ConnectAttemptTimeout = options.ConnectAttemptTimeout,
            Sandbox = options.Sandbox,
            SandboxResolver = options.SandboxResolver,
            ForwardTimeout = options.ForwardTimeout,
        };
    }

    /// <summary>
    /// Turns this pipeline into a policy-gated forward proxy: <c>CONNECT host:port</c> (authority-form) and
    /// absolute-form requests are decided with the <see cref="IEgressPolicy"/> from the container; allowed CONNECTs
    /// are tunnelled to a vetted upstream address, allowed absolute-form requests forwarded; a denial is a 403 with a
    /// JSON body naming the reason (<c>{"error":"egress_denied","reason":"notAllowlisted"}</c>), and an absolute
    /// URI whose host differs from the <c>Host</c> header is denied (<c>hostMismatch</c>). Other requests go on to
    /// the next middleware.
    /// Kestrel does not hand an HTTP/1.1 <c>CONNECT</c> to middleware as an upgradable request, so to tunnel, also call
    /// <see cref="Microsoft.AspNetCore.Hosting.KarsEgressProxyListenOptionsExtensions.UseKarsEgressProxyTunnels"/> on the
    /// proxy's listener; without it an allowed CONNECT is answered 501 (<c>tunnel_unsupported</c>), a denied one 403.
    /// </summary>
    /// <param name="app">The application builder.</param>
    /// <param name="options">Options; <see langword="null"/> for the defaults. Copied when the middleware is built.</param>
    /// <returns>The same builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="app"/> is <see langword="null"/>.</exception>
    /// <exception cref="InvalidOperationException">No <see cref="IEgressPolicy"/> is registered.</exception>
    public static IApplicationBuilder UseKarsEgressProxy(this IApplicationBuilder app, KarsEgressProxyOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(app);
        var services = app.ApplicationServices;
        var policy = services.GetService<IEgressPolicy>()
            ?? throw new InvalidOperationException("UseKarsEgressProxy() needs an IEgressPolicy registered in the service container.");
        options ??= new KarsEgressProxyOptions();
        var copy = new KarsEgressProxyOptions
        {
            Resolver = options.Resolver,
            ConnectAttemptTimeout = options.ConnectAttemptTimeout,
            Sandbox = options.Sandbox,
            SandboxResolver = options.SandboxResolver,
            ForwardTimeout = options.ForwardTimeout,
        };
        return app.Use(next =>
        {
            var bound = new EgressProxyMiddleware(next, policy, copy, services.GetService<TimeProvider>(), services.GetService<ILoggerFactory>());
            return bound.InvokeAsync;
        });
    }
}
