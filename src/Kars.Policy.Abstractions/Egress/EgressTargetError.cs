namespace Kars.Policy.Egress;

/// <summary>Why an input could not be turned into an <see cref="EgressTarget"/>.</summary>
/// <remarks>An input that produces any value other than <see cref="None"/> is denied with
/// <see cref="EgressReason.InvalidTarget"/>.</remarks>
public enum EgressTargetError
{
    /// <summary>The input is a valid target.</summary>
    None = 0,

    /// <summary>The input, or its host part, is empty.</summary>
    Empty = 1,

    /// <summary>The input is not a well-formed URL, authority or host.</summary>
    Malformed = 2,

    /// <summary>The URL uses a scheme other than <c>http</c> or <c>https</c> (or a scheme-relative form).</summary>
    UnsupportedScheme = 3,

    /// <summary>The input contains a character that mainstream URL parsers could read differently:
    /// whitespace, a control character, a <c>%</c>-escape, a backslash, or more than one <c>@</c>.</summary>
    AmbiguousCharacter = 4,

    /// <summary>The host is not a valid DNS name after UTS-46 mapping (bad label, bad length, bad character).</summary>
    InvalidHostName = 5,

    /// <summary>The host is a malformed IP literal (for example IPv6 without brackets or with a zone id).</summary>
    InvalidIPAddress = 6,

    /// <summary>The port is missing after a colon, not a number, or outside 1–65535.</summary>
    InvalidPort = 7,
}
