using System.Net;
using System.Text.Json;
using Kars.Policy.Tests.Egress;
using Xunit.Abstractions;

namespace Kars.Policy.Tests.Hosts;

/// <summary>Differential test against the WHATWG URL Standard: for every URL a WHATWG parser reads as host H and
/// port P (schemes http, https, ws, wss), the policy's decision is a deny or is made on exactly H and P. Cases:
/// a selection of web-platform-tests <c>url/resources/urltestdata.json</c> plus the inputs of issue 6
/// (<c>TestData/wpt-url/README.md</c>). The policy runs in Learn mode, which allows every valid DNS-name target, so
/// that any host the parser gets wrong would be allowed and seen.</summary>
public sealed class WhatwgDifferentialTests(ITestOutputHelper output)
{
    private const string LearnEverything = """
        { "schemaVersion": 1, "generation": 1, "mode": "Learn", "allow": [ { "cidr": "203.0.113.0/24" } ] }
        """;

    [Fact]
    public void Decision_IsDenyOrMadeOnTheWhatwgHostAndPort()
    {
        var policy = EgressTestHelpers.Load(LearnEverything);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "TestData", "wpt-url", "urltestdata-selected.json")));
        var failures = new List<string>();
        int allowedOnSameTarget = 0;
        int denied = 0;
        int whatwgFailures = 0;
        int whatwgFailuresDenied = 0;
        foreach (JsonElement c in doc.RootElement.EnumerateArray())
        {
            string input = c.GetProperty("input").GetString()!;
            var decision = policy.Evaluate(input);
            if (c.TryGetProperty("failure", out _))
            {
                // No connection is made by a WHATWG client; denying is still expected here.
                whatwgFailures++;
                whatwgFailuresDenied += decision.IsAllowed ? 0 : 1;
                if (decision.IsAllowed)
                {
                    failures.Add($"{Show(input)}: WHATWG fails, but the policy allows {decision.Target}");
                }

                continue;
            }

            string host = c.GetProperty("hostname").GetString()!;
            string portText = c.GetProperty("port").GetString()!;
            int port = portText.Length > 0 ? int.Parse(portText, System.Globalization.CultureInfo.InvariantCulture) : DefaultPort(input, c.GetProperty("base").GetString()!);
            if (!decision.IsAllowed)
            {
                denied++;
                continue;
            }

            bool sameHost = host.StartsWith('[')
                ? decision.Target.Address is { } a && a.Equals(IPAddress.Parse(host.Trim('[', ']')))
                : string.Equals(decision.Target.Host, host, StringComparison.Ordinal);
            if (sameHost && decision.Target.Port == port)
            {
                allowedOnSameTarget++;
            }
            else
            {
                failures.Add($"{Show(input)}: WHATWG connects to {host}:{port}, the policy allowed {decision.Target}");
            }
        }

        output.WriteLine($"{allowedOnSameTarget} allowed on exactly the WHATWG host and port, {denied} denied; "
            + $"{whatwgFailuresDenied} of {whatwgFailures} WHATWG failures denied");
        failures.Should().BeEmpty();
        allowedOnSameTarget.Should().BeGreaterThanOrEqualTo(15, "plain URLs must still be decided, not all denied");
    }

    private static int DefaultPort(string input, string baseUrl)
    {
        string trimmed = input.TrimStart('\0', '\u001b', '\u0004', '\u0012', ' ');
        int colon = trimmed.IndexOf(':', StringComparison.Ordinal);
        string scheme = colon > 0 ? trimmed[..colon].ToLowerInvariant() : baseUrl[..baseUrl.IndexOf(':', StringComparison.Ordinal)];
        return scheme is "https" or "wss" ? 443 : 80;
    }

    private static string Show(string text) =>
        string.Concat(text.Select(ch => ch is >= ' ' and < (char)0x7F ? ch.ToString() : $"\\u{(int)ch:X4}"));
}
