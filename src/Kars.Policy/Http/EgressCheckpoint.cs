namespace Kars.Policy.Http;

/// <summary>Where an HTTP egress check refused a destination.</summary>
public enum EgressCheckpoint
{
    /// <summary>The request URI the caller sent, checked by <see cref="EgressPolicyHandler"/> before it was sent.</summary>
    Request = 0,

    /// <summary>The final URI of a response reached through redirects, checked by <see cref="EgressPolicyHandler"/>
    /// after the response arrived (a second line of defence; the connect callback refuses the hop before it is made).</summary>
    Redirect = 1,

    /// <summary>The host and port of a connection about to be opened, checked by the connect callback.</summary>
    Connect = 2,

    /// <summary>An address the connection's host name resolved to, checked by the connect callback before connecting.</summary>
    ResolvedAddress = 3,

    /// <summary>The destination of a request sent through a proxy (the <c>CONNECT</c> target for HTTPS, the
    /// absolute URI for plain HTTP), checked by the connect callback when it opens the connection to the proxy.</summary>
    ProxyTarget = 4,
}
