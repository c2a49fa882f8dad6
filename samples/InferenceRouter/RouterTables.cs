using System.Net;
using System.Security.Cryptography;
using System.Text;
using Kars.Policy.Budgets;
using Kars.Policy.Http;

namespace InferenceRouter;

/// <summary>Maps a client's API key to its sandbox. The host decides: the client presents a key, never a sandbox name.</summary>
/// <remarks>Keys are looked up by their SHA-256, so the lookup's timing says nothing useful about a stored key.</remarks>
public sealed class ClientTable
{
    private readonly Dictionary<string, string> _sandboxByKeyHash;

    private ClientTable(Dictionary<string, string> sandboxByKeyHash) => _sandboxByKeyHash = sandboxByKeyHash;

    /// <summary>Builds the table, adding every problem to <paramref name="problems"/>.</summary>
    internal static ClientTable Create(RouterOptions options, List<string> problems)
    {
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < options.Clients.Count; i++)
        {
            ClientOptions client = options.Clients[i];
            if (string.IsNullOrWhiteSpace(client.ApiKey))
            {
                problems.Add($"Router:Clients:{i}:ApiKey is empty.");
                continue;
            }

            if (string.IsNullOrWhiteSpace(client.Sandbox))
            {
                problems.Add($"Router:Clients:{i}:Sandbox is empty.");
                continue;
            }

            if (!map.TryAdd(Hash(client.ApiKey), client.Sandbox))
            {
                problems.Add($"Router:Clients:{i}:ApiKey repeats an earlier client's key.");
            }
        }

        return new ClientTable(map);
    }

    /// <summary>Finds the sandbox of an API key.</summary>
    /// <param name="apiKey">The key the client presented.</param>
    /// <param name="sandbox">The sandbox, when the key is known.</param>
    /// <returns>Whether the key is known.</returns>
    public bool TryResolve(string apiKey, out string sandbox)
    {
        if (_sandboxByKeyHash.TryGetValue(Hash(apiKey), out string? found))
        {
            sandbox = found;
            return true;
        }

        sandbox = string.Empty;
        return false;
    }

    private static string Hash(string apiKey) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(apiKey)));
}

/// <summary>An upstream resolved from configuration.</summary>
/// <param name="BaseUri">The absolute base URI, ending in a slash.</param>
/// <param name="ApiKey">The router's key for it (empty: none is sent).</param>
public sealed record Upstream(Uri BaseUri, string ApiKey);

/// <summary>The upstream of each sandbox.</summary>
public sealed class UpstreamTable
{
    private readonly Upstream _default;
    private readonly Dictionary<string, Upstream> _bySandbox;

    private UpstreamTable(Upstream @default, Dictionary<string, Upstream> bySandbox)
    {
        _default = @default;
        _bySandbox = bySandbox;
    }

    /// <summary>Gets the upstream of a sandbox.</summary>
    /// <param name="sandbox">The sandbox.</param>
    /// <returns>Its upstream, or the default one.</returns>
    public Upstream For(string sandbox) => _bySandbox.TryGetValue(sandbox, out Upstream? u) ? u : _default;

    /// <summary>Builds the table, adding every problem to <paramref name="problems"/>.</summary>
    internal static UpstreamTable Create(RouterOptions options, List<string> problems)
    {
        Upstream fallback = Parse("Router:Upstream", options.Upstream, problems);
        var bySandbox = new Dictionary<string, Upstream>(StringComparer.Ordinal);
        foreach ((string sandbox, UpstreamOptions upstream) in options.SandboxUpstreams)
        {
            bySandbox[sandbox] = Parse($"Router:SandboxUpstreams:{sandbox}", upstream, problems);
        }

        return new UpstreamTable(fallback, bySandbox);
    }

    private static Upstream Parse(string path, UpstreamOptions options, List<string> problems)
    {
        string text = options.BaseUrl.EndsWith('/') ? options.BaseUrl : options.BaseUrl + "/";
        if (!Uri.TryCreate(text, UriKind.Absolute, out Uri? uri) || (uri.Scheme != Uri.UriSchemeHttps && uri.Scheme != Uri.UriSchemeHttp)
            || !string.IsNullOrEmpty(uri.UserInfo) || !string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment))
        {
            problems.Add($"{path}:BaseUrl must be an absolute http or https URL without user info, query or fragment.");
            return new Upstream(new Uri("http://invalid.invalid/"), string.Empty);
        }

        return new Upstream(uri, options.ApiKey);
    }
}

/// <summary>Builds the budget policy from <see cref="BudgetOptions"/>.</summary>
internal static class BudgetPolicies
{
    public static BudgetPolicy Create(BudgetOptions options, List<string> problems)
    {
        var keys = new Dictionary<string, BudgetKeyPolicy>(StringComparer.Ordinal);
        foreach (SandboxBudgetOptions sandbox in options.Sandboxes)
        {
            if (string.IsNullOrWhiteSpace(sandbox.Sandbox) || !keys.TryAdd(sandbox.Sandbox, new BudgetKeyPolicy(new BudgetLimits(day: sandbox.Day))))
            {
                problems.Add("Router:Budget:Sandboxes: every entry needs a distinct, non-empty Sandbox.");
            }
        }

        try
        {
            return new BudgetPolicy(new BudgetLimits(day: options.Day), keys, perRequestTokens: options.PerRequestTokens);
        }
        catch (ArgumentException e)
        {
            problems.Add($"Router:Budget: {e.Message}");
            return new BudgetPolicy();
        }
    }
}

/// <summary>A hosts map in front of the operating system's resolver (the demo and the tests map names to loopback).</summary>
internal sealed class HostsResolver(IReadOnlyDictionary<string, IPAddress[]> map) : EgressNameResolver
{
    protected override ValueTask<IPAddress[]> ResolveCoreAsync(string host, CancellationToken cancellationToken) =>
        map.TryGetValue(host, out IPAddress[]? addresses) ? ValueTask.FromResult(addresses) : EgressNameResolver.System.ResolveAsync(host, cancellationToken);

    public static HostsResolver? Create(Dictionary<string, string[]> hosts, List<string> problems)
    {
        if (hosts.Count == 0)
        {
            return null;
        }

        var map = new Dictionary<string, IPAddress[]>(StringComparer.OrdinalIgnoreCase);
        foreach ((string name, string[] addresses) in hosts)
        {
            var parsed = new List<IPAddress>();
            foreach (string a in addresses)
            {
                if (IPAddress.TryParse(a, out IPAddress? ip))
                {
                    parsed.Add(ip);
                }
                else
                {
                    problems.Add($"Router:Hosts:{name}: '{a}' is not an IP address.");
                }
            }

            map[name] = [.. parsed];
        }

        return new HostsResolver(map);
    }
}
