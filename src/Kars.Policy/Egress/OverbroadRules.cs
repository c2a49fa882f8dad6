using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Kars.Policy.Egress;

/// <summary>
/// Finds rules that load but open far more than an operator likely meant: a CIDR covering a whole address family or a
/// large share of it (<c>0.0.0.0/0</c>, <c>::/0</c>, <c>::ffff:0.0.0.0/96</c>, any IPv4 prefix of /8 or shorter, any
/// IPv6 prefix of /16 or shorter), and a wildcard (or a kars entry, which covers subdomains) on a public suffix
/// (<c>*.co.uk</c>, <c>*.github.io</c>) or above one (<c>*.amazonaws.com</c> covers <c>s3.amazonaws.com</c>).
/// Each finding names the rule and what it opens; the loader reports them as warnings, or as errors when
/// <see cref="KarsEgressOptions.TreatOverbroadRulesAsErrors"/> is set.
/// </summary>
internal static class OverbroadRules
{
    /// <summary>The longest IPv4 prefix length that is still reported (a /8 is 16,777,216 addresses).</summary>
    public const int Ipv4Threshold = 8;

    /// <summary>The longest IPv6 prefix length that is still reported.</summary>
    public const int Ipv6Threshold = 16;

    private static readonly IPNetwork Ipv4Mapped = new(IPAddress.Parse("::ffff:0.0.0.0"), 96);

    private const string NameSuggestion = "list the hosts you need, or put the wildcard under a domain you control (\"*.example.co.uk\")";

    /// <summary>Checks a DNS-name rule whose scope reaches below the name (a wildcard or a kars subtree entry).</summary>
    /// <returns>The finding, or <see langword="null"/>.</returns>
    public static string? CheckName(string name, NameScope scope)
    {
        if (scope == NameScope.Exact)
        {
            return null;
        }

        string shown = scope == NameScope.Wildcard ? "*." + name : name;
        string reach = scope == NameScope.Wildcard ? "opens every name under" : "covers every name under (kars entries include subdomains)";
        if (PublicSuffixes.IsPublicSuffix(name))
        {
            return $"\"{shown}\" {reach} the public suffix \"{name}\", below which names belong to unrelated owners (anyone can get one)";
        }

        if (PublicSuffixes.SuffixBelow(name) is { } below)
        {
            string others = below.Count > 1 ? $" and {(below.Count - 1).ToString(CultureInfo.InvariantCulture)} other public suffix{(below.Count > 2 ? "es" : string.Empty)}" : string.Empty;
            return $"\"{shown}\" also covers the public suffix \"{below.Example}\"{others}, below which names belong to unrelated owners";
        }

        return null;
    }

    /// <summary>Checks a CIDR rule.</summary>
    /// <returns>The finding, or <see langword="null"/>.</returns>
    public static string? CheckCidr(IPNetwork network)
    {
        string text = network.ToString();
        int prefix = network.PrefixLength;
        if (network.BaseAddress.AddressFamily == AddressFamily.InterNetwork)
        {
            if (prefix == 0)
            {
                return $"\"{text}\" opens every IPv4 address";
            }

            return prefix <= Ipv4Threshold
                ? $"\"{text}\" opens {Count(32 - prefix)} IPv4 addresses (a /{Ipv4Threshold.ToString(CultureInfo.InvariantCulture)} or larger)"
                : null;
        }

        if (prefix == 0)
        {
            return $"\"{text}\" opens every IPv6 address, and every IPv4 address through its IPv4-mapped form (::ffff:a.b.c.d)";
        }

        if (prefix <= 96 && Covers(network, Ipv4Mapped.BaseAddress))
        {
            return prefix <= Ipv6Threshold
                ? $"\"{text}\" opens 2^{(128 - prefix).ToString(CultureInfo.InvariantCulture)} IPv6 addresses, including every IPv4 address through its IPv4-mapped form (::ffff:a.b.c.d)"
                : $"\"{text}\" opens every IPv4 address through its IPv4-mapped form (::ffff:a.b.c.d)";
        }

        if (prefix >= 96 && Covers(Ipv4Mapped, network.BaseAddress) && prefix <= 96 + Ipv4Threshold)
        {
            return $"\"{text}\" opens {Count(128 - prefix)} IPv4 addresses through their IPv4-mapped form (a /{Ipv4Threshold.ToString(CultureInfo.InvariantCulture)} or larger)";
        }

        return prefix <= Ipv6Threshold
            ? $"\"{text}\" opens 2^{(128 - prefix).ToString(CultureInfo.InvariantCulture)} IPv6 addresses (a /{Ipv6Threshold.ToString(CultureInfo.InvariantCulture)} or larger)"
            : null;
    }

    /// <summary>Adds a finding for a name rule to <paramref name="sink"/>.</summary>
    public static void ReportName(List<EgressPolicyProblem> sink, string source, string path, string name, NameScope scope)
    {
        if (CheckName(name, scope) is { } finding)
        {
            sink.Add(new EgressPolicyProblem(source, path, "overbroad rule: " + finding, NameSuggestion));
        }
    }

    /// <summary>Adds a finding for a CIDR rule to <paramref name="sink"/>.</summary>
    public static void ReportCidr(List<EgressPolicyProblem> sink, string source, string path, IPNetwork network)
    {
        if (CheckCidr(network) is { } finding)
        {
            sink.Add(new EgressPolicyProblem(source, path, "overbroad rule: " + finding, "allow the narrowest prefixes you need"));
        }
    }

    /// <summary>Whether the first <c>PrefixLength</c> bits of <paramref name="address"/> equal the network's (plain bit
    /// comparison; <see cref="IPNetwork.Contains"/> treats IPv4-mapped addresses specially).</summary>
    private static bool Covers(IPNetwork network, IPAddress address)
    {
        byte[] a = network.BaseAddress.GetAddressBytes();
        byte[] b = address.GetAddressBytes();
        if (a.Length != b.Length)
        {
            return false;
        }

        int bits = network.PrefixLength;
        for (int i = 0; i < a.Length && bits > 0; i++, bits -= 8)
        {
            int mask = bits >= 8 ? 0xFF : (0xFF << (8 - bits)) & 0xFF;
            if ((a[i] & mask) != (b[i] & mask))
            {
                return false;
            }
        }

        return true;
    }

    private static string Count(int bits) => (1L << bits).ToString("N0", CultureInfo.InvariantCulture);
}
