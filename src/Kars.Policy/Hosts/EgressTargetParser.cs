using System.Buffers;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Kars.Policy.Hosts;

namespace Kars.Policy.Egress;

/// <summary>
/// Turns URLs, CONNECT authorities and bare host names into normalised <see cref="EgressTarget"/> values.
/// </summary>
/// <remarks>
/// <para>Parsing never throws for bad input: it returns <see langword="false"/> and an
/// <see cref="EgressTargetError"/>. Every form where mainstream URL parsers (WHATWG, RFC 3986, <see cref="Uri"/>)
/// could disagree about the host is rejected. The rules are listed in <c>docs/hosts.md</c>:</para>
/// <list type="bullet">
/// <item><description>DNS names are mapped with UTS-46 (non-transitional) to lower-case ASCII, one trailing dot is
/// removed, labels are 1–63 characters of <c>[a-z0-9_-]</c>, the name is at most 253 characters.</description></item>
/// <item><description>Whitespace, control and format characters, <c>%</c>, <c>\</c> and a second <c>@</c> are
/// rejected; userinfo before a single <c>@</c> in a URL is dropped and never becomes the host.</description></item>
/// <item><description>Every IPv4 form that <see cref="IPAddress.TryParse(string?, out IPAddress?)"/> accepts
/// (<c>127.1</c>, <c>2130706433</c>, <c>0x7f.1</c>, <c>012.0.0.1</c>) becomes an IP target; a host whose last label
/// is numeric but which is not a valid address is rejected. IPv6 only in brackets, without a zone id.</description></item>
/// <item><description>Ports are 1–65535, leading zeros allowed; URLs default to 80 (http) or 443 (https).</description></item>
/// </list>
/// <para>This type is stateless and safe to use from any thread.</para>
/// </remarks>
public static class EgressTargetParser
{
    /// <summary>The port a bare host name gets: 443.</summary>
    public const int DefaultPort = 443;

    private const int HttpPort = 80;

    /// <summary>Characters that end the authority of a URL (RFC 3986 and WHATWG agree once <c>\</c> is rejected).</summary>
    private static readonly SearchValues<char> AuthorityTerminators = SearchValues.Create("/?#");

    /// <summary>Characters allowed between the brackets of an IPv6 literal.</summary>
    private static readonly SearchValues<char> Ipv6LiteralChars = SearchValues.Create("0123456789abcdefABCDEF:.");

    /// <summary>Characters of an RFC 3986 scheme after the first letter.</summary>
    private static readonly SearchValues<char> SchemeChars =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.");

    /// <summary>Parses an absolute <c>http</c>/<c>https</c> URL, a <c>host:port</c> authority, or a bare host (port 443).</summary>
    /// <param name="input">The text to parse.</param>
    /// <param name="target">The normalised target when parsing succeeds.</param>
    /// <param name="error">Why parsing failed, or <see cref="EgressTargetError.None"/>.</param>
    /// <returns><see langword="true"/> when <paramref name="input"/> is a valid target.</returns>
    /// <remarks>
    /// <para>The form is detected from the text: <c>scheme://…</c> is a URL (only <c>http</c> and <c>https</c> are
    /// accepted, case-insensitively); <c>//…</c> is a scheme-relative URL and is rejected; <c>scheme:</c> followed by
    /// something that is not a port (for example <c>javascript:alert(1)</c>, <c>mailto:a@b</c>, <c>http:evil.com</c>)
    /// is rejected; anything else is an authority <c>[userinfo@]host[:port]</c> whose port defaults to 443.</para>
    /// <para>Unlike <see cref="TryParseAuthority"/>, a single <c>userinfo@</c> prefix is accepted and dropped here, as
    /// in a URL, so that recorded inputs such as <c>user@evil.com</c> are matched on <c>evil.com</c>.</para>
    /// </remarks>
    public static bool TryParse(string? input, out EgressTarget target, out EgressTargetError error)
    {
        target = default;
        if (string.IsNullOrEmpty(input))
        {
            error = EgressTargetError.Empty;
            return false;
        }

        if (ContainsAmbiguousUrlCharacter(input))
        {
            error = EgressTargetError.AmbiguousCharacter;
            return false;
        }

        if (input.StartsWith("//", StringComparison.Ordinal))
        {
            error = EgressTargetError.UnsupportedScheme;
            return false;
        }

        int colon = input.IndexOf(':', StringComparison.Ordinal);
        if (colon > 0 && IsSchemeToken(input.AsSpan(0, colon)))
        {
            ReadOnlySpan<char> afterColon = input.AsSpan(colon + 1);
            if (afterColon.StartsWith("//", StringComparison.Ordinal))
            {
                return TryParseUrl(input, out target, out error);
            }

            // "http:@host", "http:1@host", "HTTP::80@host": WHATWG reads a special-scheme URL without slashes (port
            // 80 for http), an authority reader reads userinfo and port 443. Never guess which.
            if (IsHttpScheme(input.AsSpan(0, colon), out _))
            {
                error = EgressTargetError.Malformed;
                return false;
            }

            // "host:443", "host:", "fe80::1" continue below as authorities (and fail or succeed there);
            // "scheme:opaque" (a letter or '/' after the colon) is a URL without an authority, as RFC 3986 reads it.
            if (!afterColon.IsEmpty && (char.IsAsciiLetter(afterColon[0]) || afterColon[0] == '/'))
            {
                error = IsHttpScheme(input.AsSpan(0, colon), out _)
                    ? EgressTargetError.Malformed
                    : EgressTargetError.UnsupportedScheme;
                return false;
            }
        }

        ReadOnlySpan<char> authority = input;
        if (authority.IndexOfAny(AuthorityTerminators) >= 0)
        {
            // A bare host with a path, query or fragment: not a URL, not an authority.
            error = EgressTargetError.Malformed;
            return false;
        }

        int at = authority.LastIndexOf('@');
        if (at >= 0 && authority[..at].Contains(':'))
        {
            // "foo:@host", "ws::80@host": a scheme to a URL parser, userinfo to an authority reader.
            error = authority[..at].Contains('@') ? EgressTargetError.AmbiguousCharacter : EgressTargetError.Malformed;
            return false;
        }

        if (!TryStripUserInfo(ref authority, out error))
        {
            return false;
        }

        return TryParseAuthorityCore(authority, authority.Length == input.Length ? input : null, DefaultPort, out target, out error);
    }

    /// <summary>Parses an absolute <c>http</c> or <c>https</c> URL; the port defaults to the scheme's.</summary>
    /// <param name="url">The URL text.</param>
    /// <param name="target">The normalised target when parsing succeeds.</param>
    /// <param name="error">Why parsing failed, or <see cref="EgressTargetError.None"/>.</param>
    /// <returns><see langword="true"/> when <paramref name="url"/> is a valid target.</returns>
    /// <remarks>
    /// The raw text is scanned before anything else: whitespace, control characters and <c>\</c> anywhere in the URL
    /// are rejected; the scheme must be <c>http</c> or <c>https</c> (any case) followed by exactly <c>//</c>; the
    /// authority ends at the first <c>/</c>, <c>?</c> or <c>#</c>; a single <c>userinfo@</c> is dropped, a second
    /// <c>@</c> is rejected; an empty port (<c>host:</c>) is rejected.
    /// </remarks>
    public static bool TryParseUrl(string? url, out EgressTarget target, out EgressTargetError error)
    {
        target = default;
        if (string.IsNullOrEmpty(url))
        {
            error = EgressTargetError.Empty;
            return false;
        }

        if (ContainsAmbiguousUrlCharacter(url))
        {
            error = EgressTargetError.AmbiguousCharacter;
            return false;
        }

        ReadOnlySpan<char> span = url;
        int colon = span.IndexOf(':');
        if (colon <= 0 || !IsSchemeToken(span[..colon]))
        {
            error = span.StartsWith("//", StringComparison.Ordinal) ? EgressTargetError.UnsupportedScheme : EgressTargetError.Malformed;
            return false;
        }

        if (!IsHttpScheme(span[..colon], out int defaultPort))
        {
            error = EgressTargetError.UnsupportedScheme;
            return false;
        }

        ReadOnlySpan<char> rest = span[(colon + 1)..];

        // Exactly two slashes: WHATWG skips any number of slashes for http(s), RFC 3986 does not.
        if (!rest.StartsWith("//", StringComparison.Ordinal) || rest[2..].StartsWith('/'))
        {
            error = EgressTargetError.Malformed;
            return false;
        }

        rest = rest[2..];
        int end = rest.IndexOfAny(AuthorityTerminators);
        ReadOnlySpan<char> authority = end < 0 ? rest : rest[..end];
        if (!TryStripUserInfo(ref authority, out error))
        {
            return false;
        }

        return TryParseAuthorityCore(authority, original: null, defaultPort, out target, out error);
    }

    /// <summary>Extracts the target of an absolute <see cref="Uri"/> with scheme <c>http</c> or <c>https</c>.</summary>
    /// <param name="uri">The URI.</param>
    /// <param name="target">The normalised target when parsing succeeds.</param>
    /// <param name="error">Why parsing failed, or <see cref="EgressTargetError.None"/>.</param>
    /// <returns><see langword="true"/> when <paramref name="uri"/> is a valid target.</returns>
    /// <remarks>
    /// The URI's original text is parsed with the same rules as <see cref="TryParseUrl"/>, and the result must agree
    /// with what <see cref="Uri"/> itself will connect to (<see cref="Uri.IdnHost"/> and <see cref="Uri.Port"/>);
    /// any disagreement is rejected as <see cref="EgressTargetError.Malformed"/>.
    /// </remarks>
    public static bool TryParseUri(Uri? uri, out EgressTarget target, out EgressTargetError error)
    {
        target = default;
        if (uri is null || !uri.IsAbsoluteUri)
        {
            error = EgressTargetError.Malformed;
            return false;
        }

        if (!string.Equals(uri.Scheme, Uri.UriSchemeHttp, StringComparison.Ordinal)
            && !string.Equals(uri.Scheme, Uri.UriSchemeHttps, StringComparison.Ordinal))
        {
            error = EgressTargetError.UnsupportedScheme;
            return false;
        }

        if (!TryParseUrl(uri.OriginalString, out var parsed, out error))
        {
            return false;
        }

        // What System.Uri (and so HttpClient) will actually connect to.
        bool agrees;
        try
        {
            string idnHost = uri.IdnHost;
            agrees = uri.Port == parsed.Port && (uri.HostNameType == UriHostNameType.IPv6
                ? TryParseIPv6Literal(idnHost, out var v6, out _) && v6.Equals(parsed.Address)
                : TryParseHostCore(idnHost, idnHost, parsed.Port, out var viaUri, out _) && viaUri == parsed);
        }
        catch (Exception ex) when (ex is InvalidOperationException or UriFormatException or ArgumentException)
        {
            // Never let a Uri property getter turn a bad input into a crash: treat it as a disagreement.
            agrees = false;
        }

        if (!agrees)
        {
            error = EgressTargetError.Malformed;
            return false;
        }

        target = parsed;
        error = EgressTargetError.None;
        return true;
    }

    /// <summary>Parses a CONNECT-style authority <c>host:port</c> (IPv6 in brackets). A missing port gives <paramref name="defaultPort"/>.</summary>
    /// <param name="authority">The authority text.</param>
    /// <param name="defaultPort">The port to use when the authority names none.</param>
    /// <param name="target">The normalised target when parsing succeeds.</param>
    /// <param name="error">Why parsing failed, or <see cref="EgressTargetError.None"/>.</param>
    /// <returns><see langword="true"/> when <paramref name="authority"/> is a valid target.</returns>
    /// <remarks>An authority-form request target has no userinfo, path, query or fragment: <c>@</c> is rejected as
    /// <see cref="EgressTargetError.AmbiguousCharacter"/>, <c>/</c>, <c>?</c> and <c>#</c> as
    /// <see cref="EgressTargetError.Malformed"/>. An empty port after <c>:</c> is invalid.</remarks>
    public static bool TryParseAuthority(string? authority, int defaultPort, out EgressTarget target, out EgressTargetError error)
    {
        target = default;
        if (string.IsNullOrEmpty(authority))
        {
            error = EgressTargetError.Empty;
            return false;
        }

        if (ContainsAmbiguousUrlCharacter(authority) || authority.Contains('@', StringComparison.Ordinal))
        {
            error = EgressTargetError.AmbiguousCharacter;
            return false;
        }

        if (authority.AsSpan().IndexOfAny(AuthorityTerminators) >= 0)
        {
            error = EgressTargetError.Malformed;
            return false;
        }

        return TryParseAuthorityCore(authority, authority, defaultPort, out target, out error);
    }

    /// <summary>Parses a bare host name or IP literal (IPv6 in brackets) with the given port.</summary>
    /// <param name="host">The host text.</param>
    /// <param name="port">The port, 1–65535.</param>
    /// <param name="target">The normalised target when parsing succeeds.</param>
    /// <param name="error">Why parsing failed, or <see cref="EgressTargetError.None"/>.</param>
    /// <returns><see langword="true"/> when the host and port are valid.</returns>
    /// <remarks>When <paramref name="host"/> already is a canonical DNS name, the target reuses the string and
    /// nothing is allocated.</remarks>
    public static bool TryParseHost(string? host, int port, out EgressTarget target, out EgressTargetError error)
    {
        if (port is < 1 or > 65535)
        {
            target = default;
            error = EgressTargetError.InvalidPort;
            return false;
        }

        return TryParseHostCore(host.AsSpan(), host, port, out target, out error);
    }

    /// <summary>Parses <c>host[:port]</c> (no userinfo).</summary>
    private static bool TryParseAuthorityCore(ReadOnlySpan<char> authority, string? original, int defaultPort, out EgressTarget target, out EgressTargetError error)
    {
        target = default;
        if (authority.IsEmpty)
        {
            error = EgressTargetError.Empty;
            return false;
        }

        ReadOnlySpan<char> host;
        ReadOnlySpan<char> portText = default;
        bool hasPort;
        if (authority[0] == '[')
        {
            int close = authority.IndexOf(']');
            if (close < 0)
            {
                error = EgressTargetError.InvalidIPAddress;
                return false;
            }

            host = authority[..(close + 1)];
            ReadOnlySpan<char> after = authority[(close + 1)..];
            hasPort = !after.IsEmpty;
            if (hasPort)
            {
                if (after[0] != ':')
                {
                    error = EgressTargetError.Malformed;
                    return false;
                }

                portText = after[1..];
            }
        }
        else
        {
            int colon = authority.IndexOf(':');
            hasPort = colon >= 0;
            if (!hasPort)
            {
                host = authority;
            }
            else
            {
                host = authority[..colon];
                portText = authority[(colon + 1)..];
                if (portText.Contains(':'))
                {
                    // "::1", "::1:443", "a:b:c": IPv6 must be bracketed, and a port has no colon.
                    error = EgressTargetError.InvalidIPAddress;
                    return false;
                }
            }
        }

        int port = defaultPort;
        if (hasPort && !TryParsePort(portText, out port))
        {
            error = EgressTargetError.InvalidPort;
            return false;
        }

        if (port is < 1 or > 65535)
        {
            error = EgressTargetError.InvalidPort;
            return false;
        }

        return TryParseHostCore(host, hasPort ? null : original, port, out target, out error);
    }

    /// <summary>Parses a host (DNS name, IPv4 in any form the platform accepts, or bracketed IPv6).</summary>
    /// <param name="host">The host text.</param>
    /// <param name="original">The same text as a string when the caller has one (reused when canonical), else <see langword="null"/>.</param>
    /// <param name="port">A port already validated to be 1–65535.</param>
    /// <param name="target">The target.</param>
    /// <param name="error">The error.</param>
    private static bool TryParseHostCore(ReadOnlySpan<char> host, string? original, int port, out EgressTarget target, out EgressTargetError error)
    {
        target = default;
        if (host.IsEmpty)
        {
            error = EgressTargetError.Empty;
            return false;
        }

        if (DnsNames.IsCanonical(host))
        {
            return TryCreateDnsName(original ?? host.ToString(), port, out target, out error);
        }

        return TryParseNonCanonicalHost(host, original, port, out target, out error);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool TryParseNonCanonicalHost(ReadOnlySpan<char> host, string? original, int port, out EgressTarget target, out EgressTargetError error)
    {
        target = default;
        if (host.Length > DnsNames.MaxInputLength)
        {
            error = EgressTargetError.InvalidHostName;
            return false;
        }

        if (host[0] == '[')
        {
            if (!TryParseIPv6Literal(host, out var v6, out error))
            {
                return false;
            }

            target = EgressTarget.FromAddress(v6, port);
            return true;
        }

        if (host.Contains(':'))
        {
            // An unbracketed IPv6 address is an address error; "name:port" passed as a host is a name error.
            error = IPAddress.TryParse(host, out _) ? EgressTargetError.InvalidIPAddress : EgressTargetError.InvalidHostName;
            return false;
        }

        if (host.ContainsAny('[', ']'))
        {
            error = EgressTargetError.InvalidHostName;
            return false;
        }

        error = DnsNames.ScanHostCharacters(host, out bool hasNonAscii);
        if (error != EgressTargetError.None)
        {
            return false;
        }

        if (!hasNonAscii)
        {
            // WHATWG "ends in a number": the host must be an IPv4 address or nothing.
            bool trailingDot = host[^1] == '.';
            ReadOnlySpan<char> withoutDot = trailingDot ? host[..^1] : host;
            if (DnsNames.EndsInNumber(withoutDot))
            {
                // "1.2.3.4." is an address for WHATWG and a (failing) DNS query for inet_aton: deny.
                if (trailingDot || !IPAddress.TryParse(withoutDot, out var v4) || v4.AddressFamily != AddressFamily.InterNetwork)
                {
                    error = EgressTargetError.InvalidHostName;
                    return false;
                }

                target = EgressTarget.FromAddress(v4, port);
                error = EgressTargetError.None;
                return true;
            }
        }

        // Non-ASCII names whose mapped form ends in a number (fullwidth digits) are rejected by DnsNames.
        bool ok = original is not null
            ? DnsNames.TryNormalize(original, out string? canonical, out error)
            : DnsNames.TryNormalize(host, out canonical, out error);
        if (!ok)
        {
            return false;
        }

        return TryCreateDnsName(canonical!, port, out target, out error);
    }

    /// <summary>Wraps a name the parser has made canonical. <see cref="EgressTarget.TryCreateDnsName"/> checks the
    /// shape again (one definition of "canonical", shared with the engine); should it ever refuse, the input is
    /// rejected rather than decided on a target that is not canonical.</summary>
    private static bool TryCreateDnsName(string canonical, int port, out EgressTarget target, out EgressTargetError error)
    {
        if (EgressTarget.TryCreateDnsName(canonical, port, out target))
        {
            error = EgressTargetError.None;
            return true;
        }

        error = EgressTargetError.InvalidHostName;
        return false;
    }

    /// <summary>Parses <c>[v6]</c> (or the bare text inside the brackets when it comes from <see cref="Uri.IdnHost"/>).</summary>
    private static bool TryParseIPv6Literal(ReadOnlySpan<char> literal, [NotNullWhen(true)] out IPAddress? address, out EgressTargetError error)
    {
        address = null;
        error = EgressTargetError.InvalidIPAddress;
        if (literal.StartsWith('['))
        {
            if (literal.Length < 2 || literal[^1] != ']')
            {
                return false;
            }

            literal = literal[1..^1];
        }

        // Rejects zone ids ('%'), IPvFuture ("v1.x"), whitespace and everything else TryParse might be lenient about.
        if (literal.IsEmpty || literal.ContainsAnyExcept(Ipv6LiteralChars))
        {
            return false;
        }

        if (!HasStrictEmbeddedIPv4(literal))
        {
            return false;
        }

        if (!IPAddress.TryParse(literal, out var parsed) || parsed.AddressFamily != AddressFamily.InterNetworkV6 || parsed.ScopeId != 0)
        {
            return false;
        }

        address = parsed;
        error = EgressTargetError.None;
        return true;
    }

    /// <summary>An IPv4 tail inside an IPv6 literal must be four plain decimal octets without leading zeros
    /// (WHATWG rejects <c>::ffff:1.2.3.04</c>, which <see cref="IPAddress"/> accepts).</summary>
    private static bool HasStrictEmbeddedIPv4(ReadOnlySpan<char> literal)
    {
        int firstDot = literal.IndexOf('.');
        if (firstDot < 0)
        {
            return true;
        }

        ReadOnlySpan<char> tail = literal[(literal.LastIndexOf(':') + 1)..];
        int parts = 0;
        foreach (Range r in tail.Split('.'))
        {
            ReadOnlySpan<char> part = tail[r];
            parts++;
            if (part.IsEmpty || part.Length > 3 || !IsAllAsciiDigits(part) || (part.Length > 1 && part[0] == '0'))
            {
                return false;
            }

            if (int.Parse(part, NumberStyles.None, CultureInfo.InvariantCulture) > 255)
            {
                return false;
            }
        }

        return parts == 4;
    }

    private static bool IsAllAsciiDigits(ReadOnlySpan<char> text)
    {
        foreach (char c in text)
        {
            if (!char.IsAsciiDigit(c))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Parses a port: one or more ASCII digits (leading zeros allowed), value 1–65535, no sign or space.</summary>
    private static bool TryParsePort(ReadOnlySpan<char> text, out int port)
    {
        port = 0;
        if (text.IsEmpty)
        {
            return false;
        }

        foreach (char c in text)
        {
            if (!char.IsAsciiDigit(c))
            {
                return false;
            }

            port = (port * 10) + (c - '0');
            if (port > 65535)
            {
                return false;
            }
        }

        return port >= 1;
    }

    /// <summary>Drops <c>userinfo@</c> when there is exactly one <c>@</c>; two or more are ambiguous.</summary>
    private static bool TryStripUserInfo(ref ReadOnlySpan<char> authority, out EgressTargetError error)
    {
        int at = authority.LastIndexOf('@');
        if (at >= 0)
        {
            if (authority[..at].Contains('@'))
            {
                error = EgressTargetError.AmbiguousCharacter;
                return false;
            }

            authority = authority[(at + 1)..];
        }

        error = EgressTargetError.None;
        return true;
    }

    /// <summary>Whitespace, control characters and <c>\</c> anywhere in a URL or authority: WHATWG strips or rewrites
    /// them, other parsers keep them, so no host read from such a text can be trusted.</summary>
    private static bool ContainsAmbiguousUrlCharacter(ReadOnlySpan<char> text)
    {
        foreach (char c in text)
        {
            if (c == '\\' || char.IsWhiteSpace(c) || char.IsControl(c))
            {
                return true;
            }
        }

        return false;
    }

    private static bool IsSchemeToken(ReadOnlySpan<char> text) =>
        !text.IsEmpty && char.IsAsciiLetter(text[0]) && !text[1..].ContainsAnyExcept(SchemeChars);

    private static bool IsHttpScheme(ReadOnlySpan<char> scheme, out int defaultPort)
    {
        if (scheme.Equals("https", StringComparison.OrdinalIgnoreCase))
        {
            defaultPort = DefaultPort;
            return true;
        }

        if (scheme.Equals("http", StringComparison.OrdinalIgnoreCase))
        {
            defaultPort = HttpPort;
            return true;
        }

        defaultPort = 0;
        return false;
    }
}
