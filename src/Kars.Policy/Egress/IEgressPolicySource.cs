using Microsoft.Extensions.Primitives;

namespace Kars.Policy.Egress;

/// <summary>
/// Where an egress policy comes from (DESIGN §2.7): loads the document and its feeds, compiles them into a snapshot,
/// and says when they changed. An <see cref="EgressPolicyMonitor"/> owns a source and swaps in what it loads.
/// </summary>
/// <remarks>
/// <para>The engine provides <see cref="FileEgressPolicySource"/> (a native policy file, a kars <c>allowlist.json</c>
/// or a kars folder), <see cref="DirectoryEgressPolicySource"/> (the same, watched, including the Kubernetes ConfigMap
/// <c>..data</c> symlink swap) and <see cref="InMemoryEgressPolicySource"/> (documents a host or a test pushes).
/// The verified signed-bundle source (DESIGN §3), <see cref="Bundles.OciBundleEgressPolicySource"/>, plugs in the same way.</para>
/// <para>Implementations must be safe for concurrent use. <see cref="Load"/> reports bad content by throwing
/// <see cref="EgressPolicyLoadException"/> with every problem; a monitor treats any other exception the same way
/// (fail closed: the last good snapshot stays in force).</para>
/// </remarks>
public interface IEgressPolicySource
{
    /// <summary>Gets a short description of the source for logs and problems (a path, or a name). Never a secret.</summary>
    string Name { get; }

    /// <summary>Loads the current document and feeds and compiles them.</summary>
    /// <returns>The compiled snapshot (not yet bound to a monitor's clock and learned-host recorder).</returns>
    /// <exception cref="EgressPolicyLoadException">The policy cannot be loaded; every problem is listed.</exception>
    EgressPolicySnapshot Load();

    /// <summary>Returns a token that fires when the source may have changed since it was obtained. A consumer takes
    /// the token <em>before</em> it calls <see cref="Load"/>, so a change during a load is never missed (the
    /// <c>ChangeToken.OnChange</c> pattern). A source that never changes returns a token that never fires.</summary>
    /// <returns>The change token.</returns>
    IChangeToken GetChangeToken();
}
