using System.Net.Http;

namespace Kars.Policy.Http;

/// <summary>Per-request settings read by <see cref="EgressPolicyHandler"/> and the connect callback.</summary>
public static class EgressRequestOptions
{
    /// <summary>
    /// Gets the key of the sandbox identity a request is attributed to
    /// (<c>request.Options.Set(EgressRequestOptions.Sandbox, "sandbox-a")</c>). When absent, the
    /// <see cref="EgressHttpOptions.Sandbox"/> of the handler or callback applies.
    /// </summary>
    public static HttpRequestOptionsKey<string> Sandbox { get; } = new("Kars.Policy.Sandbox");

    internal static string? GetSandbox(HttpRequestMessage? request, string? fallback) =>
        request is not null && request.Options.TryGetValue(Sandbox, out var sandbox) ? sandbox : fallback;
}
