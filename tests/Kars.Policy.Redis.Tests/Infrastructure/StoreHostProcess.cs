using System.Diagnostics;
using System.Threading.Channels;

namespace Kars.Policy.Redis.Tests.Infrastructure;

/// <summary>The <c>Kars.Policy.StoreHost</c> child process (built next to this test project), with its stdout lines
/// as a channel.</summary>
internal sealed class StoreHostProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();

    private StoreHostProcess(Process process)
    {
        _process = process;
    }

    /// <summary>Starts <c>dotnet Kars.Policy.StoreHost.dll</c> with the arguments.</summary>
    public static StoreHostProcess Start(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.ArgumentList.Add(HostDll());
        foreach (string arg in args)
        {
            psi.ArgumentList.Add(arg);
        }

        var process = new Process { StartInfo = psi };
        var host = new StoreHostProcess(process);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                host._lines.Writer.TryComplete();
            }
            else
            {
                host._lines.Writer.TryWrite(e.Data);
            }
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is not null)
            {
                host._lines.Writer.TryWrite("STDERR " + e.Data);
            }
        };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return host;
    }

    /// <summary>Reads the next stdout line, or null at end of output; fails after the timeout.</summary>
    public async Task<string?> ReadLineAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            return await _lines.Reader.ReadAsync(cts.Token).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            return null;
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"the store host wrote nothing for {timeout}");
        }
    }

    /// <summary>Kills the host at once (SIGKILL).</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        await _process.WaitForExitAsync().ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync().ConfigureAwait(false);
        _process.Dispose();
    }

    private static string HostDll()
    {
        // tests/Kars.Policy.Redis.Tests/bin/<Configuration>/net10.0/ → tests/Kars.Policy.StoreHost/bin/<Configuration>/net10.0/
        var dir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string tfm = dir.Name;
        string configuration = dir.Parent!.Name;
        DirectoryInfo testsDir = dir.Parent!.Parent!.Parent!.Parent!;
        string dll = Path.Combine(testsDir.FullName, "Kars.Policy.StoreHost", "bin", configuration, tfm, "Kars.Policy.StoreHost.dll");
        if (!System.IO.File.Exists(dll))
        {
            throw new InvalidOperationException($"The store host is not built at {dll}: build tests/Kars.Policy.StoreHost first.");
        }

        return dll;
    }
}
