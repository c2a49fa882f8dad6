using System.IO.Abstractions.TestingHelpers;
using System.Security.Cryptography;
using Kars.Policy.Bundles;

namespace Kars.Policy.Tests.Bundles;

/// <summary>One read of an OCI layout keeps the blobs whose digest checked out, so a load reads each at most once, but
/// only up to a bound: a layout full of large unrelated blobs must not make one load hold all of them.</summary>
public class OciLayoutCacheTests
{
    private const int Cap = 1_000;
    private const string Root = "/layout";

    [Fact]
    public void ReadBlob_ManyLargeBlobs_KeepsAtMostTheLimitAndChecksEveryRereadAgain()
    {
        var fs = new MockFileSystem();
        fs.AddFile($"{Root}/oci-layout", new MockFileData("""{"imageLayoutVersion":"1.0.0"}"""));
        fs.AddFile($"{Root}/index.json", new MockFileData("""{"schemaVersion":2,"manifests":[]}"""));
        var blobs = Enumerable.Range(0, 12).Select(i => Enumerable.Repeat((byte)('a' + i), 900).ToArray()).ToList();
        foreach (byte[] blob in blobs)
        {
            fs.AddFile(PathOf(blob), new MockFileData(blob));
        }

        var layout = OciLayout.Open(fs, Root, Cap);
        foreach (byte[] blob in blobs)
        {
            layout.ReadBlob(SHA256.HashData(blob), blob.Length, "blob").Should().Equal(blob);
        }

        layout.CachedBytes.Should().BeGreaterThan(0).And.BeLessThanOrEqualTo(OciLayout.CacheLimitFactor * Cap);

        // The first blob was kept: it is handed out again without reading the file (which has changed meanwhile).
        byte[] first = blobs[0];
        fs.AddFile(PathOf(first), new MockFileData(Enumerable.Repeat((byte)'z', 900).ToArray()));
        layout.ReadBlob(SHA256.HashData(first), first.Length, "blob").Should().Equal(first);

        // The last one was not kept: it is read again, and its digest is checked again.
        byte[] last = blobs[^1];
        fs.AddFile(PathOf(last), new MockFileData(Enumerable.Repeat((byte)'z', 900).ToArray()));
        var reread = () => layout.ReadBlob(SHA256.HashData(last), last.Length, "blob");
        reread.Should().Throw<BundleException>().Which.Reason.Should().Be(BundleFailureReason.DigestMismatch);
    }

    private static string PathOf(byte[] blob) => $"{Root}/blobs/sha256/{Convert.ToHexStringLower(SHA256.HashData(blob))}";
}
