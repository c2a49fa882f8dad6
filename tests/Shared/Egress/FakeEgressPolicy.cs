using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Kars.Policy.Egress;

namespace Kars.Policy.Tests.Shared.Egress;

/// <summary>A fake <see cref="IEgressPolicy"/>: allows the listed host names (any port) and, at connect time,
/// every address except loopback/private ones unless <see cref="AllowLoopback"/>. Records what it was asked.</summary>
internal sealed class FakeEgressPolicy : IEgressPolicy
{
    public FakeEgressPolicy(params string[] allowedHosts)
    {
        foreach (var host in allowedHosts)
        {
            AllowedHosts.Add(host);
        }
    }

    public HashSet<string> AllowedHosts { get; } = new(StringComparer.OrdinalIgnoreCase);

    public bool AllowLoopback { get; set; }

    public ConcurrentQueue<string> Names { get; } = new();

    public ConcurrentQueue<IPAddress> Addresses { get; } = new();

    public ConcurrentQueue<string?> Sandboxes { get; } = new();

    public EgressDecision Evaluate(in EgressTarget target, string? sandbox) => Evaluate(target.Host ?? string.Empty, sandbox);

    public EgressDecision Evaluate(Uri uri, string? sandbox) =>
        uri.IsAbsoluteUri ? Name(uri.IdnHost, sandbox) : Decide(false, EgressReason.InvalidTarget);

    public EgressDecision Evaluate(string hostOrUrl, string? sandbox)
    {
        if (Uri.TryCreate(hostOrUrl, UriKind.Absolute, out var uri) && hostOrUrl.Contains("://", StringComparison.Ordinal))
        {
            return Evaluate(uri, sandbox);
        }

        // host:port or [v6]:port or bare host
        string host = hostOrUrl;
        if (host.StartsWith('['))
        {
            host = host[1..host.IndexOf(']', StringComparison.Ordinal)];
        }
        else if (host.LastIndexOf(':') is int colon and > 0)
        {
            host = host[..colon];
        }

        return Name(host, sandbox);
    }

    public EgressDecision EvaluateResolvedAddress(IPAddress address, int port, string? sandbox)
    {
        Addresses.Enqueue(address);
        Sandboxes.Enqueue(sandbox);
        bool nonPublic = IPAddress.IsLoopback(address) || IsPrivate(address);
        return nonPublic && !AllowLoopback
            ? Decide(false, EgressReason.NonPublicAddress)
            : Decide(true, EgressReason.Allowlisted);
    }

    private EgressDecision Name(string host, string? sandbox)
    {
        Names.Enqueue(host);
        Sandboxes.Enqueue(sandbox);
        if (IPAddress.TryParse(host, out var ip))
        {
            return EvaluateResolvedAddress(ip, 443, sandbox);
        }

        return AllowedHosts.Contains(host) ? Decide(true, EgressReason.Allowlisted) : Decide(false, EgressReason.NotAllowlisted);
    }

    private static bool IsPrivate(IPAddress address)
    {
        if (address.AddressFamily != AddressFamily.InterNetwork)
        {
            return address.IsIPv6LinkLocal || address.IsIPv6UniqueLocal;
        }

        var b = address.GetAddressBytes();
        return b[0] == 10 || (b[0] == 172 && (b[1] & 0xF0) == 16) || (b[0] == 192 && b[1] == 168) || (b[0] == 169 && b[1] == 254);
    }

    internal static EgressDecision Decide(bool allow, EgressReason reason) =>
        new(allow ? EgressVerdict.Allow : EgressVerdict.Deny, reason, default, EgressTargetError.None, null, EgressMode.Strict, "sha256:fake", 1, false);
}

/// <summary>A hosts map: names resolve to fixed addresses; counts every resolution.</summary>
internal sealed class MapResolver : Kars.Policy.Http.EgressNameResolver
{
    private readonly ConcurrentDictionary<string, IPAddress[]> _map = new(StringComparer.OrdinalIgnoreCase);
    private int _calls;

    public MapResolver Map(string host, params string[] addresses)
    {
        _map[host] = addresses.Select(IPAddress.Parse).ToArray();
        return this;
    }

    public int Calls => Volatile.Read(ref _calls);

    public ConcurrentQueue<string> Asked { get; } = new();

    protected override ValueTask<IPAddress[]> ResolveCoreAsync(string host, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _calls);
        Asked.Enqueue(host);
        return ValueTask.FromResult(_map.TryGetValue(host, out var a) ? a : []);
    }
}
