using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Kars.Policy.Tests.Shared.Egress;

/// <summary>A tiny HTTP/1.1 server on 127.0.0.1: one request per connection, answered by a callback with a raw
/// response head and body. Records every connection and request line. Good enough to stand for an upstream or a
/// recording proxy in tests; the real-server tests use Kestrel.</summary>
internal sealed class LoopbackHttpServer : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly Func<string, string> _respond;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _connections;

    public LoopbackHttpServer(Func<string, string>? respond = null)
    {
        _respond = respond ?? (_ => Ok("hello"));
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _loop = Task.Run(AcceptLoopAsync);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public int Connections => Volatile.Read(ref _connections);

    public ConcurrentQueue<string> RequestLines { get; } = new();

    public ConcurrentQueue<string> Bodies { get; } = new();

    public static string Json(string json) =>
        $"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {Encoding.UTF8.GetByteCount(json)}\r\nConnection: close\r\n\r\n{json}";

    public static string Ok(string body) =>
        $"HTTP/1.1 200 OK\r\nContent-Length: {Encoding.UTF8.GetByteCount(body)}\r\nConnection: close\r\n\r\n{body}";

    public static string Redirect(string location) =>
        $"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

    public static string Status(int code, string reason) =>
        $"HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception)
            {
                return;
            }

            Interlocked.Increment(ref _connections);
            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var head = new StringBuilder();
                var buffer = new byte[1];
                while (!head.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal) && head.Length < 16_384)
                {
                    int n = await stream.ReadAsync(buffer, _stop.Token);
                    if (n == 0)
                    {
                        return;
                    }

                    head.Append((char)buffer[0]);
                }

                string[] lines = head.ToString().Split("\r\n");
                string requestLine = lines[0];
                long length = 0;
                foreach (var line in lines)
                {
                    if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
                    {
                        length = long.Parse(line["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
                    }
                }

                var body = new byte[Math.Min(length, 1 << 20)];
                int read = 0;
                while (read < body.Length)
                {
                    int n = await stream.ReadAsync(body.AsMemory(read), _stop.Token);
                    if (n == 0)
                    {
                        break;
                    }

                    read += n;
                }

                Bodies.Enqueue(Encoding.UTF8.GetString(body, 0, read));
                RequestLines.Enqueue(requestLine);
                await stream.WriteAsync(Encoding.UTF8.GetBytes(_respond(requestLine)), _stop.Token);
                await stream.FlushAsync(_stop.Token);
            }
            catch (Exception)
            {
                // The client went away; nothing to record.
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _loop;
        _stop.Dispose();
    }
}
