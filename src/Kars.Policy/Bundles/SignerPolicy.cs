using System.Text.RegularExpressions;

namespace Kars.Policy.Bundles;

/// <summary>
/// Who must have signed: a public key held by the verifier, or a keyless (Fulcio) identity — the certificate's
/// subject alternative name and OIDC issuer. A key-signed bundle never satisfies an identity policy, and a
/// certificate-signed one never satisfies a key policy.
/// </summary>
public sealed class SignerPolicy
{
    private static readonly TimeSpan RegexTimeout = TimeSpan.FromMilliseconds(200);

    private SignerPolicy(SigningKey? key, string? identity, Regex? identityPattern, string? issuer)
    {
        Key = key;
        Identity = identity;
        IdentityPattern = identityPattern;
        Issuer = issuer;
    }

    /// <summary>Gets a description of the expected signer, for messages.</summary>
    public string Description => Key is not null ? Key.Id : $"{Identity ?? "~" + IdentityPattern} from {Issuer}";

    internal SigningKey? Key { get; }

    internal string? Identity { get; }

    internal Regex? IdentityPattern { get; }

    internal string? Issuer { get; }

    /// <summary>A key policy from a PEM <c>PUBLIC KEY</c> (SubjectPublicKeyInfo: ECDSA P-256/384/521, RSA ≥ 2048 bits, Ed25519).</summary>
    /// <param name="pem">The PEM text.</param>
    /// <returns>The policy.</returns>
    /// <exception cref="FormatException">The text is not a usable PEM public key.</exception>
    public static SignerPolicy ForPublicKey(string pem)
    {
        ArgumentNullException.ThrowIfNull(pem);
        try
        {
            return new SignerPolicy(SigningKey.FromPem(pem, "the public key"), null, null, null);
        }
        catch (BundleException ex)
        {
            throw new FormatException(ex.Message);
        }
    }

    /// <summary>A keyless policy: the certificate must name exactly <paramref name="identity"/> (a SAN: e-mail, URI or Fulcio otherName) and <paramref name="issuer"/>.</summary>
    /// <param name="identity">The expected SAN, compared ordinally.</param>
    /// <param name="issuer">The expected OIDC issuer URL, compared ordinally.</param>
    /// <returns>The policy.</returns>
    public static SignerPolicy ForIdentity(string identity, string issuer)
    {
        ArgumentException.ThrowIfNullOrEmpty(identity);
        ArgumentException.ThrowIfNullOrEmpty(issuer);
        return new SignerPolicy(null, identity, null, issuer);
    }

    /// <summary>
    /// A keyless policy whose identity is a regular expression matched against the whole SAN (it is anchored with
    /// <c>\A(?:…)\z</c>; culture-invariant, 200 ms time-out), and whose issuer is exact.
    /// </summary>
    /// <param name="identityPattern">The pattern (.NET syntax).</param>
    /// <param name="issuer">The expected OIDC issuer URL, compared ordinally.</param>
    /// <returns>The policy.</returns>
    /// <exception cref="ArgumentException">The pattern does not compile.</exception>
    public static SignerPolicy ForIdentityPattern(string identityPattern, string issuer)
    {
        ArgumentException.ThrowIfNullOrEmpty(identityPattern);
        ArgumentException.ThrowIfNullOrEmpty(issuer);
        // Compile the pattern on its own first: a pattern such as "a)|(?:.*" does not compile alone but would close
        // the anchoring group early inside the wrapper and match anything.
        _ = new Regex(identityPattern, RegexOptions.CultureInvariant | RegexOptions.ExplicitCapture, RegexTimeout);
        var regex = new Regex($@"\A(?:{identityPattern})\z", RegexOptions.CultureInvariant | RegexOptions.ExplicitCapture, RegexTimeout);
        return new SignerPolicy(null, null, regex, issuer);
    }

    internal bool MatchesIdentity(IReadOnlyList<string> subjectAlternativeNames)
    {
        foreach (string name in subjectAlternativeNames)
        {
            if (Identity is not null ? string.Equals(name, Identity, StringComparison.Ordinal) : IdentityPattern!.IsMatch(name))
            {
                return true;
            }
        }

        return false;
    }
}
