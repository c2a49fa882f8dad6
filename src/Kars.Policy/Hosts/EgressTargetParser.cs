using System.Net;
using Kars.Policy.Hosts;

namespace Kars.Policy.Egress;

/// <summary>
/// Turns URLs, CONNECT authorities and bare host names into normalised <see cref="EgressTarget"/> values.
/// </summary>
/// <remarks>
/// Parsing never throws for bad input: it returns <see langword="false"/> and an
/// <see cref="EgressTargetError"/>. Every form where mainstream URL parsers could disagree about the host
/// is rejected. This type is stateless and safe to use from any thread.
/// </remarks>
public static class EgressTargetParser
{
    /// <summary>The port a bare host name gets: 443.</summary>
    public const int DefaultPort = 443;

    /// <summary>Parses an absolute <c>http</c>/<c>https</c> URL, a <c>host:port</c> authority, or a bare host (port 443).</summary>
    /// <param name="input">The text to parse.</param>
    /// <param name="target">The normalised target when parsing succeeds.</param>
    /// <param name="error">Why parsing failed, or <see cref="EgressTargetError.None"/>.</param>
    /// <returns><see langword="true"/> when <paramref name="input"/> is a valid target.</returns>
    public static bool TryParse(string? input, out EgressTarget target, out EgressTargetError error)
    {
        // STUB (replaced by the Hosts work): naive implementation.
        target = default;
        if (string.IsNullOrEmpty(input))
        {
            error = EgressTargetError.Empty;
            return false;
        }

        if (input.Contains("://", StringComparison.Ordinal))
        {
            return TryParseUrl(input, out target, out error);
        }

        return TryParseAuthority(input, DefaultPort, out target, out error);
    }

    /// <summary>Parses an absolute <c>http</c> or <c>https</c> URL; the port defaults to the scheme's.</summary>
    /// <param name="url">The URL text.</param>
    /// <param name="target">The normalised target when parsing succeeds.</param>
    /// <param name="error">Why parsing failed, or <see cref="EgressTargetError.None"/>.</param>
    /// <returns><see langword="true"/> when <paramref name="url"/> is a valid target.</returns>
    public static bool TryParseUrl(string? url, out EgressTarget target, out EgressTargetError error)
    {
        target = default;
        if (string.IsNullOrEmpty(url))
        {
            error = EgressTargetError.Empty;
            return false;
        }

        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri))
        {
            error = EgressTargetError.Malformed;
            return false;
        }

        return TryParseUri(uri, out target, out error);
    }

    /// <summary>Extracts the target of an absolute <see cref="Uri"/> with scheme <c>http</c> or <c>https</c>.</summary>
    /// <param name="uri">The URI.</param>
    /// <param name="target">The normalised target when parsing succeeds.</param>
    /// <param name="error">Why parsing failed, or <see cref="EgressTargetError.None"/>.</param>
    /// <returns><see langword="true"/> when <paramref name="uri"/> is a valid target.</returns>
    public static bool TryParseUri(Uri? uri, out EgressTarget target, out EgressTargetError error)
    {
        target = default;
        if (uri is null || !uri.IsAbsoluteUri)
        {
            error = EgressTargetError.Malformed;
            return false;
        }

        if (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)
        {
            error = EgressTargetError.UnsupportedScheme;
            return false;
        }

        return TryParseHost(uri.IdnHost, uri.Port, out target, out error);
    }

    /// <summary>Parses a CONNECT-style authority <c>host:port</c> (IPv6 in brackets). A missing port gives <paramref name="defaultPort"/>.</summary>
    /// <param name="authority">The authority text.</param>
    /// <param name="defaultPort">The port to use when the authority names none.</param>
    /// <param name="target">The normalised target when parsing succeeds.</param>
    /// <param name="error">Why parsing failed, or <see cref="EgressTargetError.None"/>.</param>
    /// <returns><see langword="true"/> when <paramref name="authority"/> is a valid target.</returns>
    public static bool TryParseAuthority(string? authority, int defaultPort, out EgressTarget target, out EgressTargetError error)
    {
        target = default;
        if (string.IsNullOrEmpty(authority))
        {
            error = EgressTargetError.Empty;
            return false;
        }

        int colon = authority.LastIndexOf(':');
        if (colon < 0 || authority.EndsWith(']'))
        {
            return TryParseHost(authority, defaultPort, out target, out error);
        }

        if (!int.TryParse(authority.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int port))
        {
            error = EgressTargetError.InvalidPort;
            return false;
        }

        return TryParseHost(authority[..colon], port, out target, out error);
    }

    /// <summary>Parses a bare host name or IP literal (IPv6 in brackets) with the given port.</summary>
    /// <param name="host">The host text.</param>
    /// <param name="port">The port, 1–65535.</param>
    /// <param name="target">The normalised target when parsing succeeds.</param>
    /// <param name="error">Why parsing failed, or <see cref="EgressTargetError.None"/>.</param>
    /// <returns><see langword="true"/> when the host and port are valid.</returns>
    public static bool TryParseHost(string? host, int port, out EgressTarget target, out EgressTargetError error)
    {
        target = default;
        if (port is < 1 or > 65535)
        {
            error = EgressTargetError.InvalidPort;
            return false;
        }

        if (string.IsNullOrEmpty(host))
        {
            error = EgressTargetError.Empty;
            return false;
        }

        if (host.StartsWith('[') && host.EndsWith(']') && IPAddress.TryParse(host.AsSpan(1, host.Length - 2), out var v6))
        {
            target = new EgressTarget(v6.ToString(), port, EgressTargetKind.IpAddress, v6);
            error = EgressTargetError.None;
            return true;
        }

        if (!host.Contains(':', StringComparison.Ordinal) && IPAddress.TryParse(host, out var v4))
        {
            target = new EgressTarget(v4.ToString(), port, EgressTargetKind.IpAddress, v4);
            error = EgressTargetError.None;
            return true;
        }

        if (!DnsNames.TryNormalize(host, out string? canonical, out error))
        {
            return false;
        }

        target = new EgressTarget(canonical, port, EgressTargetKind.DnsName, address: null);
        return true;
    }

    /// <summary>Creates a target from an already canonical DNS name without re-validating it. Internal fast path.</summary>
    internal static EgressTarget FromCanonicalDnsName(string canonicalName, int port) =>
        new(canonicalName, port, EgressTargetKind.DnsName, address: null);
}
