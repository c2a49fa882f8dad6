using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Kars.Policy.Redis.Tests.Infrastructure;

/// <summary>A <c>redis-server</c> child process on a free loopback port, owned by one test or fixture.</summary>
/// <remarks>The binary is <c>$KARS_REDIS_SERVER</c>, else <c>redis-server</c> on the PATH. A missing binary is a
/// test failure, never a skip.</remarks>
internal sealed class RedisServer : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(20);
    private readonly string[] _extraArgs;
    private Process? _process;

    private RedisServer(string binary, string directory, int port, string[] extraArgs)
    {
        Binary = binary;
        Directory = directory;
        Port = port;
        _extraArgs = extraArgs;
    }

    /// <summary>The redis-server binary in use.</summary>
    public string Binary { get; }

    /// <summary>The working directory of the server (AOF files live here).</summary>
    public string Directory { get; }

    /// <summary>The loopback port.</summary>
    public int Port { get; private set; }

    /// <summary>A StackExchange.Redis configuration string for this server.</summary>
    public string ConnectionString => string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{Port},abortConnect=false,connectTimeout=2000,syncTimeout=2000,asyncTimeout=2000");

    /// <summary>Whether the child process is running.</summary>
    public bool IsRunning => _process is { HasExited: false };

    /// <summary>Starts a server without persistence (or with the given extra arguments) and waits for PING.</summary>
    public static async Task<RedisServer> StartAsync(params string[] extraArgs)
    {
        string binary = FindBinary();
        string dir = Path.Combine(Path.GetTempPath(), "kars-redis-" + Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(dir);
        var server = new RedisServer(binary, dir, FreePort(), extraArgs);
        await server.StartProcessAsync().ConfigureAwait(false);
        return server;
    }

    /// <summary>Locates the binary: <c>$KARS_REDIS_SERVER</c>, else <c>redis-server</c> on the PATH.</summary>
    /// <exception cref="InvalidOperationException">No binary: the message says how to install one.</exception>
    public static string FindBinary()
    {
        string? configured = Environment.GetEnvironmentVariable("KARS_REDIS_SERVER");
        if (!string.IsNullOrEmpty(configured))
        {
            if (System.IO.File.Exists(configured))
            {
                return configured;
            }

            throw new InvalidOperationException(
                $"KARS_REDIS_SERVER is '{configured}' but no file is there: install redis-server (apt-get install -y redis-server)");
        }

        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator))
        {
            if (dir.Length == 0)
            {
                continue;
            }

            string candidate = Path.Combine(dir, "redis-server");
            if (System.IO.File.Exists(candidate))
            {
                return candidate;
            }
        }

        string required = Environment.GetEnvironmentVariable("KARS_REQUIRE_REDIS") == "1"
            ? " (KARS_REQUIRE_REDIS=1: the Redis tests must run)"
            : string.Empty;
        throw new InvalidOperationException(
            "redis-server was not found on the PATH: install redis-server (apt-get install -y redis-server)" + required);
    }

    /// <summary>Kills the server at once (SIGKILL): no shutdown save, no goodbye to clients.</summary>
    public async Task KillAsync()
    {
        Process? p = _process;
        if (p is null)
        {
            return;
        }

        if (!p.HasExited)
        {
            p.Kill();
        }

        await p.WaitForExitAsync().ConfigureAwait(false);
        p.Dispose();
        _process = null;
    }

    /// <summary>Starts the server again on the same port and directory (after <see cref="KillAsync"/>).</summary>
    public Task RestartAsync() => StartProcessAsync();

    /// <summary>Sends one command in RESP and returns the raw first reply line (used for PING and CLIENT PAUSE).</summary>
    public async Task<string> SendRawAsync(params string[] command)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, Port).ConfigureAwait(false);
        NetworkStream stream = client.GetStream();
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"*{command.Length}\r\n");
        foreach (string part in command)
        {
            sb.Append(CultureInfo.InvariantCulture, $"${Encoding.UTF8.GetByteCount(part)}\r\n{part}\r\n");
        }

        byte[] bytes = Encoding.UTF8.GetBytes(sb.ToString());
        await stream.WriteAsync(bytes).ConfigureAwait(false);
        var buffer = new byte[4096];
        int read = await stream.ReadAsync(buffer).ConfigureAwait(false);
        string reply = Encoding.UTF8.GetString(buffer, 0, read);
        int eol = reply.IndexOf("\r\n", StringComparison.Ordinal);
        return eol < 0 ? reply : reply[..eol];
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync().ConfigureAwait(false);
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // Leave the temp folder; it is only AOF files.
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private async Task StartProcessAsync()
    {
        for (int attempt = 0; ; attempt++)
        {
            var psi = new ProcessStartInfo(Binary)
            {
                WorkingDirectory = Directory,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (string arg in new[] { "--port", Port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", string.Empty, "--dir", Directory })
            {
                psi.ArgumentList.Add(arg);
            }

            string[] extra = _extraArgs.Length == 0 ? ["--appendonly", "no"] : _extraArgs;
            foreach (string arg in extra)
            {
                psi.ArgumentList.Add(arg);
            }

            var output = new StringBuilder();
            var p = new Process { StartInfo = psi };
            p.OutputDataReceived += (_, e) =>
            {
                lock (output)
                {
                    output.AppendLine(e.Data);
                }
            };
            p.ErrorDataReceived += (_, e) =>
            {
                lock (output)
                {
                    output.AppendLine(e.Data);
                }
            };
            p.Start();
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();
            _process = p;

            if (await WaitForPingAsync(p).ConfigureAwait(false))
            {
                return;
            }

            string log;
            lock (output)
            {
                log = output.ToString();
            }

            await KillAsync().ConfigureAwait(false);
            if (attempt < 3 && log.Contains("Address already in use", StringComparison.Ordinal))
            {
                Port = FreePort();
                continue;
            }

            throw new InvalidOperationException($"redis-server on port {Port} did not answer PING within {StartTimeout}:\n{log}");
        }
    }

    private async Task<bool> WaitForPingAsync(Process p)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < StartTimeout)
        {
            if (p.HasExited)
            {
                return false;
            }

            try
            {
                string reply = await SendRawAsync("PING").ConfigureAwait(false);
                if (reply == "+PONG")
                {
                    return true;
                }
            }
            catch (SocketException)
            {
            }
            catch (IOException)
            {
            }

            await Task.Delay(20).ConfigureAwait(false);
        }

        return false;
    }
}
