using System.IO.Abstractions;

namespace Kars.Policy.Egress;

/// <summary>
/// Reads the learned-hosts file that <see cref="LearnedHostRecorder.Save"/> and
/// <see cref="EgressPolicy.SaveLearnedHosts"/> write (<c>{"schemaVersion":1,"learned":[…]}</c>), and turns learned
/// hosts into a proposed policy document, so an operator tool (such as <c>kars-policy learned export</c>) can work on
/// a file a sandbox left behind.
/// </summary>
/// <remarks>Stateless and safe to use from any thread.</remarks>
public static class LearnedHostFile
{
    /// <summary>Reads a learned-hosts file: a regular file of at most 16 MiB whose every entry names a valid host,
    /// a port 1–65535, a count and two RFC 3339 instants.</summary>
    /// <param name="path">The file to read.</param>
    /// <param name="fileSystem">The file system to read from; <see langword="null"/> for the real one.</param>
    /// <returns>The learned destinations, in file order.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> is <see langword="null"/>.</exception>
    /// <exception cref="EgressPolicyLoadException">The file is missing, not a regular file, too large, malformed, or of
    /// another schema version; <see cref="EgressPolicyLoadException.Problems"/> lists every problem.</exception>
    public static IReadOnlyList<LearnedHost> Load(string path, IFileSystem? fileSystem = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        return LearnedHostStore.Load(fileSystem ?? new FileSystem(), path);
    }

    /// <summary>Builds a proposed native policy document (Strict mode, one exact rule per host with the ports seen)
    /// for an operator to review, sign and deploy. Only hosts that are valid allow rules are exported (Learn mode also
    /// learns names such as single labels, which no rule may name).</summary>
    /// <param name="hosts">The learned destinations (for example from <see cref="Load"/>).</param>
    /// <param name="generation">The generation the proposed document carries; values below 1 are written as 1.</param>
    /// <param name="skipped">When given, receives one problem per host that was left out, with the reason.</param>
    /// <param name="source">The name the problems in <paramref name="skipped"/> carry as their source (for example
    /// the file the hosts came from); <see langword="null"/> for <c>learned hosts</c>.</param>
    /// <returns>The JSON text of a document that loads.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="hosts"/> is <see langword="null"/>.</exception>
    public static string ExportPolicy(IEnumerable<LearnedHost> hosts, long generation = 1, ICollection<EgressPolicyProblem>? skipped = null, string? source = null)
    {
        ArgumentNullException.ThrowIfNull(hosts);
        return LearnedHostStore.ExportPolicy(hosts, generation, skipped, source ?? "learned hosts");
    }
}
