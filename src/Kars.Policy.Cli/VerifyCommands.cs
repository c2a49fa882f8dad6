using System.CommandLine;
using System.IO.Abstractions;
using System.Text.Json;
using Kars.Policy.Bundles;
using Kars.Policy.Internal;

namespace Kars.Policy.Cli;

/// <summary>
/// <c>kars-policy verify-blob</c> and <c>kars-policy verify</c> (DESIGN §7), flags spelled as in cosign. Exit 0 verified,
/// 1 rejected (stderr names the <see cref="BundleFailureReason"/>), 2 usage or input error.
/// </summary>
internal static class VerifyCommands
{
    /// <summary>The largest artifact read (<c>verify-blob</c>'s blob).</summary>
    private const long MaxArtifactBytes = 256L * 1024 * 1024;

    /// <summary>The largest bundle, signature, key or trusted root read: well above the verifier's own bounds
    /// (<see cref="SigstoreVerifierOptions.MaxDocumentBytes"/>, 4 MiB for a trusted root).</summary>
    private const long MaxDocumentBytes = 16L * 1024 * 1024;

    public static Command CreateVerifyBlob(CliConsole console, IFileSystem fileSystem)
    {
        var artifact = new Argument<string>("artifact") { Description = "The signed file, or its digest as sha256:<hex>." };
        var common = new CommonOptions();
        var signature = new Option<string?>("--signature") { Description = "A cosign sign-blob signature file (base64 DER); --bundle is then the legacy cosign bundle." };
        var command = new Command("verify-blob", "Verify a blob's Sigstore bundle, or a cosign sign-blob signature.") { artifact, signature };
        common.AddTo(command);
        command.SetAction(parse => Guard(console, () => RunVerifyBlob(console, fileSystem, parse.GetValue(artifact)!, parse.GetValue(signature), common.Read(parse))));
        return command;
    }

    public static Command CreateVerify(CliConsole console, IFileSystem fileSystem)
    {
        var layout = new Option<string>("--oci-layout") { Description = "An OCI image layout directory.", Required = true };
        var digest = new Option<string>("--digest") { Description = "The manifest digest to verify, sha256:<hex>.", Required = true };
        var common = new CommonOptions();
        var command = new Command("verify", "Verify the cosign signature of a manifest in an OCI image layout (.sig tag or referrer bundle).") { layout, digest };
        common.AddTo(command);
        command.SetAction(parse => Guard(console, () => RunVerify(console, fileSystem, parse.GetValue(layout)!, parse.GetValue(digest)!, common.Read(parse))));
        return command;
    }

    private static int RunVerifyBlob(CliConsole console, IFileSystem fileSystem, string artifactText, string? signaturePath, CommonValues values)
    {
        if (!TryBuild(console, fileSystem, values.Signer, requireRoot: signaturePath is null, out var verifier, out var signer))
        {
            return ExitCodes.UsageError;
        }

        SigstoreArtifact artifact;
        byte[]? blob = null;
        if (artifactText.StartsWith("sha256:", StringComparison.Ordinal))
        {
            if (!SigstoreArtifact.TryFromDigest(artifactText, out var fromDigest))
            {
                return Usage(console, $"{BundleFailureReason.InvalidReference}: \"{artifactText}\" is not sha256:<64 lower-case hex digits>");
            }

            artifact = fromDigest;
        }
        else
        {
            if (!TryRead(console, fileSystem, artifactText, "the artifact", out blob, MaxArtifactBytes))
            {
                return ExitCodes.UsageError;
            }

            artifact = SigstoreArtifact.FromBytes(blob);
        }

        BundleVerificationResult result;
        if (signaturePath is not null)
        {
            if (blob is null)
            {
                return Usage(console, "--signature needs the blob itself, not a digest");
            }

            if (!TryRead(console, fileSystem, signaturePath, "the signature", out byte[]? signatureBytes))
            {
                return ExitCodes.UsageError;
            }

            byte[]? legacy = null;
            if (values.Bundle is not null && !TryRead(console, fileSystem, values.Bundle, "the bundle", out legacy))
            {
                return ExitCodes.UsageError;
            }

            string signatureText = new System.Text.UTF8Encoding(false, false).GetString(signatureBytes);
            result = verifier.VerifyCosignBlob(blob, signatureText, legacy is null ? (ReadOnlyMemory<byte>?)null : legacy, signer);
        }
        else
        {
            if (values.Bundle is null)
            {
                return Usage(console, "give --bundle (a Sigstore bundle), or --signature with --key");
            }

            if (!TryRead(console, fileSystem, values.Bundle, "the bundle", out byte[]? bundle))
            {
                return ExitCodes.UsageError;
            }

            result = verifier.VerifyBundle(bundle, artifact, signer);
        }

        return Report(console, result, values.Json);
    }

    private static int RunVerify(CliConsole console, IFileSystem fileSystem, string layout, string digest, CommonValues values)
    {
        if (!TryBuild(console, fileSystem, values.Signer, requireRoot: false, out var verifier, out var signer))
        {
            return ExitCodes.UsageError;
        }

        if (!SigstoreArtifact.TryFromDigest(digest, out _))
        {
            return Usage(console, $"{BundleFailureReason.InvalidReference}: --digest \"{digest}\" is not sha256:<64 lower-case hex digits>");
        }

        if (values.Bundle is not null)
        {
            return Usage(console, "verify reads signatures from the layout; --bundle is for verify-blob");
        }

        return Report(console, verifier.VerifyOciLayout(fileSystem, layout, digest, signer), values.Json);
    }

    internal static bool TryBuild(CliConsole console, IFileSystem fileSystem, SignerValues values, bool requireRoot, out SigstoreVerifier verifier, out SignerPolicy signer)
    {
        verifier = null!;
        signer = null!;
        int modes = (values.Key is null ? 0 : 1) + (values.Identity is null && values.IdentityRegexp is null ? 0 : 1);
        if (modes != 1)
        {
            Usage(console, "give either --key, or --certificate-identity (or --certificate-identity-regexp) with --certificate-oidc-issuer");
            return false;
        }

        if (values.Identity is not null && values.IdentityRegexp is not null)
        {
            Usage(console, "give --certificate-identity or --certificate-identity-regexp, not both");
            return false;
        }

        if (values.Key is not null)
        {
            if (values.Issuer is not null)
            {
                Usage(console, "--certificate-oidc-issuer goes with an identity, not with --key");
                return false;
            }

            if (!TryRead(console, fileSystem, values.Key, "the key", out byte[]? pem))
            {
                return false;
            }

            try
            {
                signer = SignerPolicy.ForPublicKey(new System.Text.UTF8Encoding(false, false).GetString(pem));
            }
            catch (FormatException ex)
            {
                Usage(console, $"{BundleFailureReason.CanonicalFormViolation}: --key {values.Key}: {ex.Message}");
                return false;
            }
        }
        else
        {
            if (string.IsNullOrEmpty(values.Issuer))
            {
                Usage(console, "an identity needs --certificate-oidc-issuer");
                return false;
            }

            if (string.IsNullOrEmpty(values.Identity ?? values.IdentityRegexp))
            {
                Usage(console, "the identity must not be empty");
                return false;
            }

            try
            {
                signer = values.Identity is not null
                    ? SignerPolicy.ForIdentity(values.Identity, values.Issuer)
                    : SignerPolicy.ForIdentityPattern(values.IdentityRegexp!, values.Issuer);
            }
            catch (ArgumentException ex)
            {
                Usage(console, $"--certificate-identity-regexp does not compile: {ex.Message}");
                return false;
            }
        }

        var root = SigstoreTrustedRoot.Empty;
        if (values.TrustedRoot is not null)
        {
            if (!TryRead(console, fileSystem, values.TrustedRoot, "the trusted root", out byte[]? rootBytes))
            {
                return false;
            }

            if (!SigstoreTrustedRoot.TryParse(rootBytes, out var parsed, out string? error))
            {
                Usage(console, $"{BundleFailureReason.UntrustedRoot}: --trusted-root {values.TrustedRoot}: {error}");
                return false;
            }

            root = parsed;
        }
        else if (requireRoot || values.Key is null)
        {
            Usage(console, "give --trusted-root (a Sigstore trusted_root.json)");
            return false;
        }

        verifier = new SigstoreVerifier(root, new SigstoreVerifierOptions { RequireTransparencyLog = !values.IgnoreTlog });
        return true;
    }

    private static int Report(CliConsole console, BundleVerificationResult result, bool json)
    {
        if (json)
        {
            console.Out.WriteLine(result.IsVerified
                ? JsonSerializer.Serialize(new Dictionary<string, object?> { ["verified"] = true, ["digest"] = result.ArtifactDigest, ["signer"] = result.Signer, ["signedAt"] = result.SignedAt?.ToString("O", System.Globalization.CultureInfo.InvariantCulture) })
                : JsonSerializer.Serialize(new Dictionary<string, object?> { ["verified"] = false, ["reason"] = JsonNamingPolicy.CamelCase.ConvertName(result.FailureReason!.Value.ToString()), ["message"] = result.Message }));
        }

        if (result.IsVerified)
        {
            if (!json)
            {
                console.Out.WriteLine($"Verified OK: {result.ArtifactDigest} signed by {result.Signer}" + (result.SignedAt is { } at ? $" at {at.ToString("O", System.Globalization.CultureInfo.InvariantCulture)}" : string.Empty));
            }

            return ExitCodes.Success;
        }

        console.Error.WriteLine($"kars-policy: verification failed: {result.FailureReason}: {OneLine(result.Message)}");
        return ExitCodes.VerificationFailed;
    }

    /// <summary>Reads an input named on the command line with the engine's capped reader
    /// (<see cref="BoundedFile.ReadCapped"/>, linked in): the cap is checked while reading, never trusted from the
    /// reported length, since a device such as <c>/dev/zero</c> (or a link to one) reports 0 bytes and never ends. A pipe
    /// (<c>--bundle &lt;(…)</c>) is still accepted.</summary>
    private static bool TryRead(CliConsole console, IFileSystem fileSystem, string path, string what, out byte[] bytes, long maxBytes = MaxDocumentBytes)
    {
        bytes = [];
        try
        {
            var info = fileSystem.FileInfo.New(path);
            if (!info.Exists)
            {
                Usage(console, $"{BundleFailureReason.NotFound}: {what} {path} does not exist");
                return false;
            }

            if (info.Length > maxBytes)
            {
                Usage(console, $"{what} {path} is larger than {maxBytes / (1024 * 1024)} MiB");
                return false;
            }

            using var stream = fileSystem.FileStream.New(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            var read = BoundedFile.ReadCapped(stream, maxBytes);
            if (!read.IsSuccess)
            {
                Usage(console, read.Error == FileReadError.TooLarge ? $"{what} {path} is larger than {maxBytes / (1024 * 1024)} MiB" : $"{what} {path} {read.Message}");
                return false;
            }

            bytes = read.Bytes!;
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            Usage(console, $"{BundleFailureReason.NotFound}: {what} {path} cannot be read ({ex.GetType().Name})");
            return false;
        }
    }

    private static int Guard(CliConsole console, Func<int> run)
    {
        try
        {
            return run();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The library turns every verification error into a result; this is only a last line of defence.
            return Usage(console, $"internal error ({ex.GetType().Name}): {OneLine(ex.Message)}");
        }
    }

    private static int Usage(CliConsole console, string message)
    {
        console.Error.WriteLine($"kars-policy: {OneLine(message)}");
        return ExitCodes.UsageError;
    }

    private static string OneLine(string text) => text.ReplaceLineEndings(" ");

    internal sealed record CommonValues(string? Bundle, SignerValues Signer, bool Json);

    /// <summary>Who must have signed, and what to trust: the values of <see cref="SignerOptions"/>.</summary>
    internal sealed record SignerValues(string? TrustedRoot, string? Key, string? Identity, string? IdentityRegexp, string? Issuer, bool IgnoreTlog)
    {
        /// <summary>Gets a value indicating whether any of the options was given.</summary>
        public bool Any => Key is not null || Identity is not null || IdentityRegexp is not null || Issuer is not null || TrustedRoot is not null || IgnoreTlog;
    }

    /// <summary>The signer and trust options, spelled as in cosign: one definition for <c>verify</c>, <c>verify-blob</c>
    /// and <c>eval</c> on an OCI layout (which reads them with <see cref="TryBuild"/> too).</summary>
    internal sealed class SignerOptions
    {
        private readonly Option<string?> _trustedRoot;
        private readonly Option<string?> _key;
        private readonly Option<string?> _identity;
        private readonly Option<string?> _identityRegexp;
        private readonly Option<string?> _issuer;
        private readonly Option<bool> _ignoreTlog;

        /// <param name="scope">When the options apply only to some inputs (eval: "OCI layout"), the help text says so first.</param>
        public SignerOptions(string? scope = null)
        {
            _trustedRoot = new("--trusted-root") { Description = Scoped(scope, "A Sigstore trusted_root.json: the only trust anchors.") };
            _key = new("--key") { Description = Scoped(scope, "A PEM public key (ECDSA P-256/384/521, RSA, Ed25519).") };
            _identity = new("--certificate-identity") { Description = Scoped(scope, "The exact certificate identity (SAN).") };
            _identityRegexp = new("--certificate-identity-regexp") { Description = Scoped(scope, "A regular expression the whole SAN must match.") };
            _issuer = new("--certificate-oidc-issuer") { Description = Scoped(scope, "The exact OIDC issuer URL.") };
            _ignoreTlog = new("--insecure-ignore-tlog") { Description = Scoped(scope, "Key mode: accept a signature without transparency-log evidence (evidence present must still verify).") };
        }

        public void AddTo(Command command)
        {
            command.Options.Add(_trustedRoot);
            command.Options.Add(_key);
            command.Options.Add(_identity);
            command.Options.Add(_identityRegexp);
            command.Options.Add(_issuer);
            command.Options.Add(_ignoreTlog);
        }

        public SignerValues Read(ParseResult parse) => new(
            parse.GetValue(_trustedRoot),
            parse.GetValue(_key),
            parse.GetValue(_identity),
            parse.GetValue(_identityRegexp),
            parse.GetValue(_issuer),
            parse.GetValue(_ignoreTlog));

        private static string Scoped(string? scope, string text) =>
            scope is null ? text : $"{scope}: {char.ToLowerInvariant(text[0])}{text[1..]}";
    }

    /// <summary>The options of <c>verify</c> and <c>verify-blob</c>: the signer options, <c>--bundle</c> and <c>--json</c>.</summary>
    private sealed class CommonOptions
    {
        private readonly Option<string?> _bundle = new("--bundle") { Description = "A Sigstore bundle (.sigstore.json), or with --signature a legacy cosign bundle." };
        private readonly SignerOptions _signer = new();
        private readonly Option<bool> _json = new("--json") { Description = "Print the result as one JSON object." };

        public void AddTo(Command command)
        {
            command.Options.Add(_bundle);
            _signer.AddTo(command);
            command.Options.Add(_json);
        }

        public CommonValues Read(ParseResult parse) => new(parse.GetValue(_bundle), _signer.Read(parse), parse.GetValue(_json));
    }
}
