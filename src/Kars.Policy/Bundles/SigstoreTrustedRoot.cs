using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;

namespace Kars.Policy.Bundles;

/// <summary>
/// The trust material of keyless and log-backed verification, read from a Sigstore <c>trusted_root.json</c>
/// (<c>dev.sigstore.trustroot.v1.TrustedRoot</c>): Rekor logs, CT logs, Fulcio certificate authorities and timestamp
/// authorities, each with its validity window. Nothing inside a bundle is ever added to it.
/// </summary>
/// <remarks>
/// The file is parsed strictly: a validity window without <c>start</c>, an unknown media type, duplicate JSON
/// properties or bad base64 make the whole file malformed. An instance whose key the library cannot use (for
/// example a retired RSA CT log in a bare PKCS#1 encoding) is kept out, so it verifies nothing.
/// </remarks>
public sealed class SigstoreTrustedRoot
{
    private const long MaxBytes = 4 * 1024 * 1024;

    private SigstoreTrustedRoot(LogInstance[] logs, LogInstance[] ctLogs, TrustedAuthority[] certificateAuthorities, TrustedAuthority[] timestampAuthorities)
    {
        Logs = logs;
        CtLogs = ctLogs;
        CertificateAuthorities = certificateAuthorities;
        TimestampAuthorities = timestampAuthorities;
    }

    /// <summary>Gets a trusted root that trusts nothing: enough for key-based checks that need no log or certificate.</summary>
    public static SigstoreTrustedRoot Empty { get; } = new([], [], [], []);

    internal IReadOnlyList<LogInstance> Logs { get; }

    internal IReadOnlyList<LogInstance> CtLogs { get; }

    internal IReadOnlyList<TrustedAuthority> CertificateAuthorities { get; }

    internal IReadOnlyList<TrustedAuthority> TimestampAuthorities { get; }

    /// <summary>Reads a <c>trusted_root.json</c> document.</summary>
    /// <param name="utf8Json">The file's bytes.</param>
    /// <param name="root">The parsed root, when the document is well formed.</param>
    /// <param name="error">Why the document was refused, otherwise.</param>
    /// <returns><see langword="true"/> when the document was read.</returns>
    public static bool TryParse(ReadOnlyMemory<byte> utf8Json, [NotNullWhen(true)] out SigstoreTrustedRoot? root, [NotNullWhen(false)] out string? error)
    {
        root = null;
        try
        {
            if (utf8Json.Length > MaxBytes)
            {
                throw BundleException.Malformed("the trusted root is larger than 4 MiB");
            }

            using var document = Json.Parse(utf8Json, "the trusted root");
            var top = document.RootElement;
            if (top.ValueKind != JsonValueKind.Object)
            {
                throw BundleException.Malformed("the trusted root is not a JSON object");
            }

            string mediaType = Json.String(top, "mediaType", "trusted root");
            if (mediaType is not ("application/vnd.dev.sigstore.trustedroot+json;version=0.1" or "application/vnd.dev.sigstore.trustedroot.v0.2+json"))
            {
                throw BundleException.Malformed($"the trusted root media type \"{mediaType}\" is not supported");
            }

            root = new SigstoreTrustedRoot(
                ReadLogs(top, "tlogs"),
                ReadLogs(top, "ctlogs"),
                ReadAuthorities(top, "certificateAuthorities"),
                ReadAuthorities(top, "timestampAuthorities"));
            error = null;
            return true;
        }
        catch (BundleException ex)
        {
            error = ex.Message;
            return false;
        }
        catch (Exception ex) when (ex is FormatException or InvalidOperationException or ArgumentException or System.Security.Cryptography.CryptographicException)
        {
            error = $"the trusted root is malformed ({ex.Message})";
            return false;
        }
    }

    private static LogInstance[] ReadLogs(JsonElement top, string name)
    {
        if (!top.TryGetProperty(name, out var array))
        {
            return [];
        }

        if (array.ValueKind != JsonValueKind.Array)
        {
            throw BundleException.Malformed($"trusted root: \"{name}\" must be an array");
        }

        var logs = new List<LogInstance>();
        int index = 0;
        foreach (var item in array.EnumerateArray())
        {
            string what = $"trusted root {name}[{index++}]";
            string baseUrl = Json.String(item, "baseUrl", what);
            var publicKey = Json.Object(item, "publicKey", what);
            var validFor = ReadRange(publicKey, what + ".publicKey");
            byte[] logId = Json.Bytes(Json.Object(item, "logId", what), "keyId", what + ".logId");
            byte[]? raw = Json.OptionalString(publicKey, "rawBytes", what) is { } text ? Json.Base64(text, what + ".publicKey.rawBytes") : null;
            if (raw is null)
            {
                continue;
            }

            SigningKey key;
            try
            {
                key = SigningKey.FromSpki(raw, what);
            }
            catch (BundleException)
            {
                continue; // a key this library cannot use verifies nothing
            }

            logs.Add(new LogInstance(baseUrl, Host(baseUrl), logId, key, validFor));
        }

        return [.. logs];
    }

    private static TrustedAuthority[] ReadAuthorities(JsonElement top, string name)
    {
        if (!top.TryGetProperty(name, out var array))
        {
            return [];
        }

        if (array.ValueKind != JsonValueKind.Array)
        {
            throw BundleException.Malformed($"trusted root: \"{name}\" must be an array");
        }

        var result = new List<TrustedAuthority>();
        int index = 0;
        foreach (var item in array.EnumerateArray())
        {
            string what = $"trusted root {name}[{index++}]";
            var validFor = ReadRange(item, what);
            var certificates = Json.Array(Json.Object(item, "certChain", what), "certificates", what + ".certChain");
            var chain = new List<X509Certificate2>();
            foreach (var certificate in certificates.EnumerateArray())
            {
                chain.Add(Certificates.Load(Json.Bytes(certificate, "rawBytes", what), what + " certificate"));
            }

            if (chain.Count == 0)
            {
                throw BundleException.Malformed($"{what} has an empty certificate chain");
            }

            result.Add(new TrustedAuthority(Json.OptionalString(item, "uri", what) ?? string.Empty, [.. chain], validFor));
        }

        return [.. result];
    }

    private static TimeRange ReadRange(JsonElement parent, string what)
    {
        var validFor = Json.OptionalObject(parent, "validFor", what)
            ?? throw BundleException.Malformed($"{what} has no validFor window");
        string start = Json.OptionalString(validFor, "start", what + ".validFor")
            ?? throw BundleException.Malformed($"{what}.validFor has no start (a validity window must start)");
        var from = Json.Timestamp(start, what + ".validFor.start");
        DateTimeOffset? to = Json.OptionalString(validFor, "end", what + ".validFor") is { } end ? Json.Timestamp(end, what + ".validFor.end") : null;
        if (to < from)
        {
            throw BundleException.Malformed($"{what}.validFor ends before it starts");
        }

        return new TimeRange(from, to);
    }

    private static string Host(string baseUrl)
    {
        int scheme = baseUrl.IndexOf("://", StringComparison.Ordinal);
        string rest = scheme >= 0 ? baseUrl[(scheme + 3)..] : baseUrl;
        int slash = rest.IndexOf('/', StringComparison.Ordinal);
        return slash >= 0 ? rest[..slash] : rest;
    }
}

/// <summary>A closed validity interval [Start, End]; no End means open-ended.</summary>
internal sealed record TimeRange(DateTimeOffset Start, DateTimeOffset? End)
{
    public bool Contains(DateTimeOffset at) => at >= Start && (End is null || at <= End);
}

/// <summary>A transparency log or CT log of the trusted root.</summary>
internal sealed record LogInstance(string BaseUrl, string Origin, byte[] LogId, SigningKey Key, TimeRange ValidFor);

/// <summary>A Fulcio CA or timestamp authority: its chain in issuing order (last = trust anchor) and validity window.</summary>
internal sealed record TrustedAuthority(string Uri, X509Certificate2[] Chain, TimeRange ValidFor);
