using System.Net;

namespace Kars.Policy.Egress;

/// <summary>How far a DNS-name rule reaches.</summary>
internal enum NameScope : byte
{
    /// <summary>Only the name itself (<c>api.github.com</c>).</summary>
    Exact = 0,

    /// <summary>Every name below it at any depth, never the apex (<c>*.example.com</c>).</summary>
    Wildcard = 1,

    /// <summary>The name and every name below it: kars compatibility for kars documents.</summary>
    Subtree = 2,
}

/// <summary>A set of ports: a short list, or any port.</summary>
internal readonly struct PortSet
{
    private readonly int[]? _ports;
    private readonly int _single;

    private PortSet(bool any, int[]? ports)
    {
        Any = any;
        _ports = ports;
        _single = ports is { Length: 1 } ? ports[0] : -1;
    }

    public static PortSet AnyPort { get; } = new(true, null);

    public static PortSet Default { get; } = new(false, [443]);

    public bool Any { get; }

    public IReadOnlyList<int> Ports => _ports ?? [];

    public static PortSet Of(IEnumerable<int> ports)
    {
        int[] sorted = [.. ports.Distinct().Order()];
        return new PortSet(false, sorted);
    }

    public bool Contains(int port)
    {
        if (Any || port == _single)
        {
            return true;
        }

        if (_single >= 0)
        {
            return false;
        }

        foreach (int p in _ports!)
        {
            if (p == port)
            {
                return true;
            }
        }

        return false;
    }

    public PortSet Union(PortSet other) =>
        Any || other.Any ? AnyPort : Of(Ports.Concat(other.Ports));

    public override string ToString() => Any ? "*" : string.Join(',', Ports);
}

/// <summary>A validated DNS-name allow rule.</summary>
internal sealed record NameRule(string Name, NameScope Scope, PortSet Ports, string Text);

/// <summary>A validated CIDR allow rule.</summary>
internal sealed record CidrRule(IPNetwork Network, PortSet Ports, string Text);

/// <summary>One host of an approval.</summary>
internal sealed record ApprovalHost(string Name, NameScope Scope, int Port);

/// <summary>A validated time-boxed approval, active on [EffectiveAt, ExpiresAt).</summary>
internal sealed record Approval(
    string Name,
    IReadOnlyList<ApprovalHost> Hosts,
    string? Reason,
    string? Ticket,
    DateTimeOffset EffectiveAt,
    DateTimeOffset ExpiresAt,
    string Source);

/// <summary>A parsed (not yet compiled) policy: what the readers produce and the compiler consumes.</summary>
internal sealed class PolicyModel
{
    public required string Digest { get; init; }

    public long Generation { get; init; }

    public EgressMode Mode { get; init; }

    public List<NameRule> NameRules { get; } = [];

    public List<CidrRule> CidrRules { get; } = [];

    /// <summary>Blocklist domains listed inline in the document.</summary>
    public List<string> BlockDomains { get; } = [];

    /// <summary>Blocklist feed files, as resolved paths, with the text the document used.</summary>
    public List<(string ResolvedPath, string Text)> FeedFiles { get; } = [];

    public List<string> BlocklistExceptions { get; } = [];

    public List<Approval> Approvals { get; } = [];

    /// <summary>Problems that did not stop loading (for example a broken kars approval file that was skipped).</summary>
    public List<EgressPolicyProblem> Warnings { get; } = [];
}
