using System.Net;

namespace Kars.Policy.Egress;

/// <summary>
/// A normalised network destination: a host (DNS name or IP address) and a port.
/// </summary>
/// <remarks>
/// <para>Instances are only created by the parser in <c>Kars.Policy</c> (<c>EgressTargetParser</c>), so a
/// target's <see cref="Host"/> is always canonical: for a DNS name, the UTS-46 ASCII (punycode) form in
/// lower case without a trailing dot; for an address, the canonical text of <see cref="Address"/>
/// (IPv6 without brackets).</para>
/// <para>This type is immutable and safe to share between threads. Its default value is not a valid target
/// (<see cref="IsValid"/> is <see langword="false"/>).</para>
/// </remarks>
public readonly struct EgressTarget : IEquatable<EgressTarget>
{
    private readonly IPAddress? _address;
    private readonly string? _host;

    internal EgressTarget(string host, int port, EgressTargetKind kind, IPAddress? address)
    {
        _host = host;
        Port = port;
        Kind = kind;
        _address = address;
    }

    /// <summary>An address target whose text is produced only when <see cref="Host"/> is read (the connect-time check
    /// decides resolved addresses without allocating).</summary>
    internal EgressTarget(IPAddress address, int port)
    {
        Port = port;
        Kind = EgressTargetKind.IpAddress;
        _address = address;
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
