using System.Net;

namespace Kars.Policy.Egress;

/// <summary>
/// A normalised network destination: a host (DNS name or IP address) and a port.
/// </summary>
/// <remarks>
/// <para>A target's <see cref="Host"/> is always in canonical form: for a DNS name, lower-case ASCII without a
/// trailing dot (the UTS-46 ASCII form, <c>xn--</c> punycode for internationalised labels); for an address, the
/// canonical text of <see cref="Address"/> (IPv6 without brackets). Text from anywhere else (URLs, authorities,
/// Unicode names, upper case) becomes a target only through the parser in <c>Kars.Policy</c>
/// (<c>EgressTargetParser</c>); the two factories here accept only what is already canonical:
/// <see cref="TryCreateDnsName"/> and <see cref="FromAddress"/>.</para>
/// <para>A target is still input to a policy, not a credential: the <c>xn--</c> labels of a DNS name are checked here
/// for their characters and length only (whether they are valid punycode that round-trips through UTS-46 needs the
/// engine's Unicode tables). The engine therefore decides every target it is handed exactly as it decides its
/// <see cref="Host"/> and <see cref="Port"/> given as text, so no target can obtain a decision the text would not.</para>
/// <para>This type is immutable and safe to share between threads. Its default value is not a valid target
/// (<see cref="IsValid"/> is <see langword="false"/>).</para>
/// </remarks>
public readonly struct EgressTarget : IEquatable<EgressTarget>
{
    private readonly IPAddress? _address;
    private readonly string? _host;

    private EgressTarget(string host, int port)
    {
        _host = host;
        Port = port;
        Kind = EgressTargetKind.DnsName;
    }

    /// <summary>An address target whose text is produced only when <see cref="Host"/> is read (the connect-time check
    /// decides resolved addresses without allocating).</summary>
    private EgressTarget(IPAddress address, int port)
    {
        Port = port;
        Kind = EgressTargetKind.IpAddress;
        _address = address;
    }

    /// <summary>Creates a target for a DNS name that is already in canonical form.</summary>
    /// <param name="host">The name: labels of 1–63 characters of <c>[a-z0-9_-]</c> separated by single dots, at most
    /// 253 characters, no trailing dot, and a last label that is not a number (which would be an IPv4 address).</param>
    /// <param name="port">The port, 1–65535.</param>
    /// <param name="target">The target, or the default value when the method returns <see langword="false"/>.</param>
    /// <returns><see langword="true"/> when <paramref name="host"/> is in canonical form and <paramref name="port"/> is
    /// in range; <see langword="false"/> for anything else (upper case, a trailing dot, Unicode, an IP literal,
    /// <see langword="null"/>): this method never canonicalises. Nothing is allocated; the target keeps
    /// <paramref name="host"/>.</returns>
    /// <remarks>An <c>xn--</c> label is checked for its characters and length only; the engine validates its punycode
    /// when it decides the target (see the type's remarks).</remarks>
    public static bool TryCreateDnsName(string? host, int port, out EgressTarget target)
    {
        if (host is null || port is < 1 or > 65535 || !CanonicalDnsName.HasCanonicalShape(host, out _))
        {
            target = default;
            return false;
        }

        target = new EgressTarget(host, port);
        return true;
    }

    /// <summary>Creates a target for a DNS name that is already in canonical form, as
    /// <see cref="TryCreateDnsName(string?, int, out EgressTarget)"/> does, and hands back where the name's labels are,
    /// which the check found on its way: a policy engine that walks the name's suffixes then need not read it again.</summary>
    /// <param name="host">The name (see <see cref="TryCreateDnsName(string?, int, out EgressTarget)"/>).</param>
    /// <param name="port">The port, 1–65535.</param>
    /// <param name="target">The target, or the default value when the method returns <see langword="false"/>.</param>
    /// <param name="labels">Where the labels of <paramref name="host"/> are, or the default value when the method returns
    /// <see langword="false"/>.</param>
    /// <returns>The same as <see cref="TryCreateDnsName(string?, int, out EgressTarget)"/> for the same arguments.</returns>
    public static bool TryCreateDnsName(string? host, int port, out EgressTarget target, out DnsNameLabels labels)
    {
        if (host is null || port is < 1 or > 65535 || !CanonicalDnsName.HasCanonicalShape(host, out bool hasAceLabel, out ulong dots))
        {
            target = default;
            labels = default;
            return false;
        }

        target = new EgressTarget(host, port);
        labels = new DnsNameLabels(dots, hasAceLabel);
        return true;
    }

    /// <summary>Creates a target for an IP address. Its <see cref="Host"/> text is produced only when read.</summary>
    /// <param name="address">The IPv4 or IPv6 address.</param>
    /// <param name="port">The port, 1–65535.</param>
    /// <returns>The target.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="address"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException"><paramref name="address"/> is neither IPv4 nor IPv6.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="port"/> is outside 1–65535.</exception>
    public static EgressTarget FromAddress(IPAddress address, int port)
    {
        ArgumentNullException.ThrowIfNull(address);
        if (address.AddressFamily is not (System.Net.Sockets.AddressFamily.InterNetwork or System.Net.Sockets.AddressFamily.InterNetworkV6))
        {
            throw new ArgumentException("The address must be IPv4 or IPv6.", nameof(address));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(port, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, 65535);
        return new EgressTarget(address, port);
    }

    /// <summary>Gets the canonical host: a lower-case ASCII DNS name, or the canonical text of an IP address.</summary>
    public string Host => _host ?? _address?.ToString()!;

    /// <summary>Gets the port, 1–65535.</summary>
    public int Port { get; }

    /// <summary>Gets whether <see cref="Host"/> is a DNS name or an IP address.</summary>
    public EgressTargetKind Kind { get; }

    /// <summary>Gets the address when <see cref="Kind"/> is <see cref="EgressTargetKind.IpAddress"/>; otherwise <see langword="null"/>.</summary>
    public IPAddress? Address => _address;

    /// <summary>Gets a value indicating whether this is a parsed target rather than the default value.</summary>
    public bool IsValid => _host is not null || _address is not null;

    /// <inheritdoc />
    public bool Equals(EgressTarget other) =>
        Port == other.Port && Kind == other.Kind && string.Equals(Host, other.Host, StringComparison.Ordinal);

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is EgressTarget other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(IsValid ? StringComparer.Ordinal.GetHashCode(Host) : 0, Port, Kind);

    /// <summary>Returns <c>host:port</c>, with brackets around an IPv6 address.</summary>
    /// <returns>The authority form of the target, or an empty string for the default value.</returns>
    public override string ToString()
    {
        if (!IsValid)
        {
            return string.Empty;
        }

        return _address is { AddressFamily: System.Net.Sockets.AddressFamily.InterNetworkV6 }
            ? $"[{Host}]:{Port}"
            : $"{Host}:{Port}";
    }

    /// <summary>Compares two targets for equality.</summary>
    /// <param name="left">The first target.</param>
    /// <param name="right">The second target.</param>
    /// <returns><see langword="true"/> when host, port and kind are equal.</returns>
    public static bool operator ==(EgressTarget left, EgressTarget right) => left.Equals(right);

    /// <summary>Compares two targets for inequality.</summary>
    /// <param name="left">The first target.</param>
    /// <param name="right">The second target.</param>
    /// <returns><see langword="true"/> when host, port or kind differ.</returns>
    public static bool operator !=(EgressTarget left, EgressTarget right) => !left.Equals(right);
}
