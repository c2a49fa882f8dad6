using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using InferenceRouter;
using Microsoft.Extensions.DependencyInjection;

namespace Kars.Policy.Samples.Tests.InferenceRouter;

/// <summary>Security review findings on the router sample.</summary>
public sealed partial class InferenceRouterTests
{
    [Theory]
    [InlineData("/V1/chat/completions/")]
    [InlineData("/V1/chat/completions")]
    [InlineData("/v1/CHAT/Completions")]
    public async Task PathInAnotherCase_WithoutKey_Is401_NeverForwarded(string path)
    {
        using var http = new HttpClient();
        using HttpResponseMessage response = await http.PostAsync(new Uri(_address, path),
            new StringContent("""{"model":"m","messages":[{"role":"user","content":"hi"}]}""", Encoding.UTF8, "application/json"));

        response.StatusCode.Should().Be(HttpStatusCode.Unauthorized);
        using JsonDocument body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        body.RootElement.GetProperty("error").GetProperty("code").GetString().Should().Be("invalid_api_key");
        _upstream.Calls.Should().BeEmpty();
    }

    [Fact]
    public async Task BodyAtTheLimit_StreamRewrittenByTheGate_IsForwardedNot413()
    {
        const int Limit = 2000;
        var (router, address) = await StartRouterAsync(_upstream.Port, b => b.Configuration["Router:MaxRequestBodyBytes"] = Limit.ToString(System.Globalization.CultureInfo.InvariantCulture));
        await using (router)
        {
            string head = """{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":" """;
            const string Tail = "\"}]}";
            string json = head + new string('a', Limit - Encoding.UTF8.GetByteCount(head) - Tail.Length) + Tail;
            Encoding.UTF8.GetByteCount(json).Should().Be(Limit);

            using var http = new HttpClient();
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(address, "/v1/chat/completions")) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Demo.AliceKey);
            using HttpResponseMessage response = await http.SendAsync(request);
            string text = await response.Content.ReadAsStringAsync();

            response.StatusCode.Should().Be(HttpStatusCode.OK, text);
            text.Should().Contain("data: [DONE]");
            _upstream.Calls.Should().ContainSingle().Which.IncludeUsage.Should().BeTrue();
            await router.StopAsync();
        }
    }

    [Fact]
    public async Task UpstreamSilentPastTheClientTimeout_Is504Json()
    {
        using var silent = new TcpListener(IPAddress.Loopback, 0);
        silent.Start();
        int port = ((IPEndPoint)silent.LocalEndpoint).Port;
        var accepted = new List<Socket>();
        Task acceptLoop = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    accepted.Add(await silent.AcceptSocketAsync());   // accept, read nothing, answer nothing
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
        });

        var (router, address) = await StartRouterAsync(port, b => b.Services.AddHttpClient(RouterApp.UpstreamClient).ConfigureHttpClient(c => c.Timeout = TimeSpan.FromMilliseconds(300)));
        await using (router)
        {
            using var http = new HttpClient();
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(address, "/v1/chat/completions"))
            {
                Content = new StringContent("""{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":10}""", Encoding.UTF8, "application/json"),
            };
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Demo.AliceKey);
            using HttpResponseMessage response = await http.SendAsync(request);

            response.StatusCode.Should().Be(HttpStatusCode.GatewayTimeout);
            using JsonDocument body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            body.RootElement.GetProperty("error").GetProperty("code").GetString().Should().Be("gateway_timeout");
            await router.StopAsync();
        }

        silent.Stop();
        await acceptLoop;
        foreach (Socket socket in accepted)
        {
            socket.Dispose();
        }
    }
}
