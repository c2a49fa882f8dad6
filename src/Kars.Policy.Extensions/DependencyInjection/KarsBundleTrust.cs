using System.IO.Abstractions;
using System.Text;
using Kars.Policy.Bundles;
using Microsoft.Extensions.Options;

namespace Kars.Policy.DependencyInjection;

/// <summary>
/// The trust material of the configured signed bundle (<see cref="KarsEgressBundleOptions"/>), read once per container:
/// the public key file or the trusted root file, parsed into the verifier and signer policy the bundle source uses. The
/// options validator reads it at start-up, so a file that cannot be read or parsed fails the start (never a silent
/// NoPolicy), and the source is built from the very bytes that were validated.
/// </summary>
internal sealed class KarsBundleTrust
{
    private const long MaxKeyBytes = 64 * 1024;
    private const long MaxTrustedRootBytes = 4 * 1024 * 1024;

    private readonly IFileSystem _fileSystem;
    private readonly Lock _gate = new();
    private IReadOnlyList<string>? _problems;
    private SigstoreVerifier? _verifier;
    private SignerPolicy? _signer;

    public KarsBundleTrust(IFileSystem fileSystem) => _fileSystem = fileSystem;

    /// <summary>Reads the trust material of <paramref name="bundle"/> the first time (later calls return the first
    /// result: the bundle options take effect at the next start) and returns the problems found.</summary>
    public IReadOnlyList<string> Load(KarsEgressBundleOptions bundle)
    {
        lock (_gate)
        {
            return _problems ??= Read(bundle);
        }
    }

    /// <summary>The verifier and signer policy; the options were validated first (the caller resolved them).</summary>
    /// <exception cref="InvalidOperationException">The trust material did not load.</exception>
    public (SigstoreVerifier Verifier, SignerPolicy Signer) Get(KarsEgressBundleOptions bundle)
    {
        var problems = Load(bundle);
        lock (_gate)
        {
            if (problems.Count > 0 || _verifier is null || _signer is null)
            {
                throw new InvalidOperationException("The Kars.Policy bundle trust material is not usable: " + string.Join(" ", problems));
            }

            return (_verifier, _signer);
        }
    }

    private List<string> Read(KarsEgressBundleOptions bundle)
    {
        var problems = new List<string>();
        SigstoreTrustedRoot? root = null;
        if (!string.IsNullOrWhiteSpace(bundle.TrustedRootPath)
            && ReadFile(bundle.TrustedRootPath, "Kars:Egress:Bundle:TrustedRootPath", MaxTrustedRootBytes, problems) is { } rootBytes)
        {
            if (SigstoreTrustedRoot.TryParse(rootBytes, out var parsed, out string? error))
            {
                root = parsed;
            }
            else
            {
                problems.Add($"Kars:Egress:Bundle:TrustedRootPath: '{bundle.TrustedRootPath}' is not a Sigstore trusted root ({error}).");
            }
        }

        SignerPolicy? signer = null;
        if (!string.IsNullOrWhiteSpace(bundle.PublicKeyPath)
            && ReadFile(bundle.PublicKeyPath, "Kars:Egress:Bundle:PublicKeyPath", MaxKeyBytes, problems) is { } keyBytes)
        {
            try
            {
                signer = SignerPolicy.ForPublicKey(Encoding.UTF8.GetString(keyBytes));
            }
            catch (FormatException ex)
            {
                problems.Add($"Kars:Egress:Bundle:PublicKeyPath: '{bundle.PublicKeyPath}' is not a usable PEM public key ({ex.Message}).");
            }
        }
        else if (!string.IsNullOrEmpty(bundle.CertificateOidcIssuer))
        {
            // The shape (one identity form, an issuer) is the options validator's to report; here only what parses.
            try
            {
                signer = bundle.CertificateIdentity is { Length: > 0 } identity ? SignerPolicy.ForIdentity(identity, bundle.CertificateOidcIssuer)
                    : bundle.CertificateIdentityRegex is { Length: > 0 } pattern ? SignerPolicy.ForIdentityPattern(pattern, bundle.CertificateOidcIssuer)
                    : null;
            }
            catch (ArgumentException)
            {
                signer = null;
            }
        }

        if (problems.Count == 0)
        {
            _signer = signer;
            _verifier = new SigstoreVerifier(root ?? SigstoreTrustedRoot.Empty, new SigstoreVerifierOptions
            {
                RequireTransparencyLog = bundle.RequireTransparencyLog,
                RequireSignedCertificateTimestamp = bundle.RequireSignedCertificateTimestamp,
                // Empty: the bundle source narrows "any" to cosign sign's predicate type (docs/bundles.md).
                AllowedPredicateTypes = bundle.AllowedPredicateTypes.Count == 0 ? null : [.. bundle.AllowedPredicateTypes],
            });
        }

        return problems;
    }

    /// <summary>Reads a whole file of at most <paramref name="maxBytes"/>; a problem (with the exception type and message) otherwise.</summary>
    private byte[]? ReadFile(string path, string key, long maxBytes, List<string> problems)
    {
        try
        {
            using var stream = _fileSystem.FileStream.New(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            using var buffer = new MemoryStream();
            byte[] chunk = new byte[16 * 1024];
            int read;
            while ((read = stream.Read(chunk, 0, chunk.Length)) > 0)
            {
                buffer.Write(chunk, 0, read);
                if (buffer.Length > maxBytes)
                {
                    problems.Add($"{key}: '{path}' is larger than {maxBytes} bytes.");
                    return null;
                }
            }

            return buffer.ToArray();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            problems.Add($"{key}: '{path}' cannot be read ({ex.GetType().Name}: {ex.Message}).");
            return null;
        }
    }
}

/// <summary>Reads the bundle's trust material when the options are validated (start-up): unreadable or unparsable
/// trust files are start-up errors, reported with every other problem.</summary>
internal sealed class KarsBundleTrustValidator : IValidateOptions<KarsPolicyOptions>
{
    private readonly KarsBundleTrust _trust;

    public KarsBundleTrustValidator(KarsBundleTrust trust) => _trust = trust;

    public ValidateOptionsResult Validate(string? name, KarsPolicyOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (!options.Egress.Enabled || options.Egress.Bundle is not { } bundle)
        {
            return ValidateOptionsResult.Success;
        }

        var problems = _trust.Load(bundle);
        return problems.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(problems);
    }
}
