using System.Net;
using System.Text;
using Kars.Policy.Hosts;

namespace Kars.Policy.Egress;

/// <summary>Validation of the host names and patterns that appear in policy documents (DESIGN §2.2).
/// Each check returns a message and, where one exists, a suggested fix.</summary>
internal static class HostPatterns
{
    /// <summary>Validates an allow-rule host: an exact name or a leading <c>*.</c> wildcard.</summary>
    public static bool TryParseRuleHost(string text, out string name, out NameScope scope, out string? error, out string? suggestion)
    {
        name = string.Empty;
        scope = NameScope.Exact;
        suggestion = null;
        if (text.Length == 0)
        {
            error = "the host is empty";
            return false;
        }

        if (text == "*")
        {
            error = "a lone \"*\" would allow every host";
            suggestion = "list each host, or use \"*.example.com\" for the subdomains of one domain";
            return false;
        }

        if (text == "*.")
        {
            error = "\"*.\" names no domain";
            suggestion = "use \"*.example.com\"";
            return false;
        }

        string body = text;
        if (text.StartsWith("*.", StringComparison.Ordinal))
        {
            scope = NameScope.Wildcard;
            body = text[2..];
        }

        if (body.Contains('*', StringComparison.Ordinal))
        {
            error = "only a leading \"*.\" wildcard is allowed";
            suggestion = SuggestWildcard(text);
            return false;
        }

        if (!TryValidateName(body, out error, out suggestion))
        {
            if (scope == NameScope.Wildcard && suggestion is not null && suggestion.StartsWith("use \"", StringComparison.Ordinal))
            {
                suggestion = "use \"*." + suggestion[5..];
            }

            return false;
        }

        if (!body.Contains('.', StringComparison.Ordinal))
        {
            error = scope == NameScope.Wildcard
                ? $"a wildcard over the single label \"{body}\" would allow a whole top-level domain"
                : $"single-label name \"{body}\" is not allowed";
            suggestion = "use a fully qualified name such as \"api.example.com\"";
            return false;
        }

        name = body;
        return true;
    }

    /// <summary>Validates an exact host (blocklist exception, native approval host): no wildcard.</summary>
    public static bool TryParseExactHost(string text, bool allowSingleLabel, out string name, out string? error, out string? suggestion)
    {
        name = string.Empty;
        if (text.Contains('*', StringComparison.Ordinal))
        {
            error = "wildcards are not allowed here";
            suggestion = text.StartsWith("*.", StringComparison.Ordinal) && text.Length > 2 ? $"use \"{text[2..]}\" (an entry covers its subdomains)" : null;
            return false;
        }

        if (!TryValidateName(text, out error, out suggestion))
        {
            return false;
        }

        if (!allowSingleLabel && !text.Contains('.', StringComparison.Ordinal))
        {
            error = $"single-label name \"{text}\" is not allowed";
            suggestion = "use a fully qualified name such as \"api.example.com\"";
            return false;
        }

        name = text;
        return true;
    }

    /// <summary>Validates that <paramref name="text"/> is a canonical DNS name (lower-case ASCII, no leading/trailing dot,
    /// labels 1–63, ≤ 253, characters <c>[a-z0-9_-]</c>, not an IP literal).</summary>
    public static bool TryValidateName(string text, out string? error, out string? suggestion)
    {
        suggestion = null;
        if (text.Length == 0)
        {
            error = "the host is empty";
            return false;
        }

        if (!Ascii.IsValid(text))
        {
            error = "the host is not ASCII";
            suggestion = DnsNames.TryNormalize(text, out string? ascii, out _) ? $"use \"{ascii}\"" : "use the punycode (xn--) form";
            return false;
        }

        if (IPAddress.TryParse(text.AsSpan().Trim('[').Trim(']'), out var ip))
        {
            error = "an IP address is not a host name";
            suggestion = $"use {{\"cidr\": \"{ip}/{(ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128)}\"}}";
            return false;
        }

        string trimmed = text.Trim('.');
        if (text.StartsWith('.') || text.EndsWith('.'))
        {
            error = text.StartsWith('.') ? "the host has a leading dot" : "the host has a trailing dot";
            suggestion = trimmed.Length > 0 ? $"use \"{trimmed.ToLowerInvariant()}\"" : null;
            return false;
        }

        if (text.Contains("..", StringComparison.Ordinal))
        {
            error = "the host has an empty label";
            return false;
        }

        if (text.Any(char.IsAsciiLetterUpper))
        {
            error = "the host is not lower case";
            suggestion = $"use \"{text.ToLowerInvariant()}\"";
            return false;
        }

        foreach (char c in text)
        {
            if (!(c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-' or '_' or '.'))
            {
                error = $"the host contains the character '{(char.IsControl(c) ? '?' : c)}' (U+{(int)c:X4})";
                return false;
            }
        }

        string lastLabel = text[(text.LastIndexOf('.') + 1)..];
        if (lastLabel.Length > 0 && char.IsAsciiDigit(lastLabel[0]))
        {
            error = "the host ends in a numeric label, which resolvers may read as an IP address";
            suggestion = "use a \"cidr\" rule for addresses";
            return false;
        }

        // Full normalisation, not the cached fast check: an xn-- label must be validated (decode and re-encode) here,
        // whatever names this process has seen before, so a policy loads the same on a cold start and on a reload.
        if (!DnsNames.TryNormalize(text, out string? canonical, out _) || !string.Equals(canonical, text, StringComparison.Ordinal))
        {
            error = "the host is not a valid DNS name (labels 1–63 characters, at most 253 in all, valid punycode)";
            return false;
        }

        error = null;
        return true;
    }

    /// <summary>Parses a CIDR prefix; host bits set are an error with the corrected prefix as suggestion.</summary>
    public static bool TryParseCidr(string text, out IPNetwork network, out string? error, out string? suggestion)
    {
        network = default;
        suggestion = null;
        int slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0)
        {
            error = "a CIDR needs a prefix length";
            suggestion = IPAddress.TryParse(text, out var single)
                ? $"use \"{single}/{(single.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128)}\""
                : null;
            return false;
        }

        if (!IPAddress.TryParse(text.AsSpan(0, slash), out var address)
            || text.AsSpan(0, slash).Contains('%')
            || !int.TryParse(text.AsSpan(slash + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int prefix))
        {
            error = "not a CIDR prefix such as \"203.0.113.0/24\" or \"2001:db8::/32\"";
            return false;
        }

        int bits = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 32 : 128;
        if (prefix > bits)
        {
            error = $"the prefix length {prefix} is longer than {bits}";
            return false;
        }

        if (HasLeadingZeroOctet(text.AsSpan(0, slash)))
        {
            // The target parser reads "010" as octal 8 (as inet_aton does); humans read 10. Never guess: reject.
            error = "an IPv4 octet has a leading zero, which resolvers read as octal (010 is 8)";
            suggestion = $"write the octets in decimal without leading zeros, for example \"{address}/{prefix}\" if octal was meant";
            return false;
        }

        if (address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork && !IsDottedQuad(text.AsSpan(0, slash)))
        {
            error = "the address is not in dotted-quad form";
            suggestion = $"use \"{address}/{prefix}\"";
            return false;
        }

        byte[] bytes = address.GetAddressBytes();
        byte[] masked = (byte[])bytes.Clone();
        for (int i = 0; i < masked.Length; i++)
        {
            int keep = Math.Clamp(prefix - (i * 8), 0, 8);
            masked[i] &= (byte)(0xFF << (8 - keep));
        }

        if (!bytes.AsSpan().SequenceEqual(masked))
        {
            var fixedAddress = new IPAddress(masked);
            error = "the address has host bits set beyond the prefix length";
            suggestion = $"use \"{fixedAddress}/{prefix}\"";
            return false;
        }

        network = new IPNetwork(address, prefix);
        error = null;
        return true;
    }

    /// <summary>Whether the IPv4 part (the whole text, or the tail of an IPv6 address) has an octet such as <c>010</c>.</summary>
    private static bool HasLeadingZeroOctet(ReadOnlySpan<char> text)
    {
        ReadOnlySpan<char> tail = text[(text.LastIndexOf(':') + 1)..];
        foreach (Range r in tail.Split('.'))
        {
            ReadOnlySpan<char> octet = tail[r];
            if (octet.Length > 1 && octet[0] == '0')
            {
                return true;
            }
        }

        return false;
    }

    private static bool IsDottedQuad(ReadOnlySpan<char> text)
    {
        int dots = 0;
        foreach (char c in text)
        {
            if (c == '.')
            {
                dots++;
            }
            else if (!char.IsAsciiDigit(c))
            {
                return false;
            }
        }

        return dots == 3;
    }

    private static string SuggestWildcard(string text)
    {
        // "*example.com" almost always means "*.example.com".
        if (text.StartsWith('*') && text.IndexOf('*', 1) < 0 && text.Length > 1 && text[1] != '.')
        {
            string fixedText = "*." + text[1..];
            if (fixedText[2..].Contains('.', StringComparison.Ordinal))
            {
                return $"use \"{fixedText.ToLowerInvariant()}\"";
            }
        }

        string[] labels = text.Split('.');
        int last = Array.FindLastIndex(labels, l => l.Contains('*', StringComparison.Ordinal));
        if (labels.Length - last - 1 >= 2)
        {
            return $"use \"*.{string.Join('.', labels[(last + 1)..]).ToLowerInvariant()}\" or list each host";
        }

        return "list each host exactly";
    }
}
