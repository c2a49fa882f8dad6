using Kars.Policy.Http;
using Microsoft.AspNetCore.Http;

namespace Kars.Policy.AspNetCore;

/// <summary>Options of the forward proxy added by <c>UseKarsEgressProxy()</c>. Copied when the middleware is built.</summary>
public sealed class KarsEgressProxyOptions
{
    /// <summary>Gets or sets the resolver the proxy uses for upstream host names.</summary>
    /// <value>The default value is <see langword="null"/>: <see cref="EgressNameResolver.System"/>.</value>
    public EgressNameResolver? Resolver { get; set; }

    /// <summary>Gets or sets how long one upstream connection attempt may take. Between 1 millisecond and 5 minutes.</summary>
    /// <value>The default value is 10 seconds.</value>
    public TimeSpan ConnectAttemptTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Gets or sets the sandbox every request through this proxy is attributed to (for example one proxy
    /// listener per sandbox). Tunnels use only this; absolute-form requests use it when
    /// <see cref="SandboxResolver"/> is absent or returns <see langword="null"/>.</summary>
    /// <value>The default value is <see langword="null"/>: no sandbox.</value>
    public string? Sandbox { get; set; }

    /// <summary>Gets or sets how the sandbox of an absolute-form request is found (for example from the client
    /// certificate). Never read from a client header unless the host decides so.</summary>
    /// <value>The default value is <see langword="null"/>: <see cref="Sandbox"/>.</value>
    public Func<HttpContext, string?>? SandboxResolver { get; set; }

    /// <summary>Gets or sets how long an absolute-form request may take upstream, response included.</summary>
    /// <value>The default value is 100 seconds.</value>
    public TimeSpan ForwardTimeout { get; set; } = TimeSpan.FromSeconds(100);
}
