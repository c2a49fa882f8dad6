using System.Globalization;
using System.IO.Abstractions;
using System.Text;
using System.Text.Json;
using Kars.Policy.Budgets;
using NodaTime;
using NodaTime.Text;

namespace Kars.Policy.Cli;

/// <summary>
/// <c>budget replay</c>: replays timestamped events against a budget policy, one output line per event
/// (DESIGN §7). Every event's <c>at</c> is the clock for that event.
/// </summary>
internal sealed class BudgetReplay
{
    private static readonly string[] WindowNames = ["hour", "day", "week", "month", "year"];
    private readonly BudgetStore _store;
    private readonly BudgetMeter _meter;
    private readonly TextWriter _out;
    private readonly Dictionary<string, long> _leases = new(StringComparer.Ordinal);

    private BudgetReplay(BudgetStore store, BudgetPolicy policy, TextWriter output)
    {
        _store = store;
        _meter = new BudgetMeter(store, policy);
        _out = output;
    }

    /// <summary>Opens the store named by <paramref name="spec"/>: <c>memory</c>, <c>file:PATH</c> or <c>redis:CONN</c>.</summary>
    public static async ValueTask<BudgetStore> OpenStoreAsync(string spec, IFileSystem fileSystem, TimeProvider time)
    {
        if (spec == "memory")
        {
            return new InMemoryBudgetStore(time);
        }

        if (spec.StartsWith("file:", StringComparison.Ordinal) && spec.Length > 5)
        {
            return await FileBudgetStore.OpenAsync(spec[5..], fileSystem, time).ConfigureAwait(false);
        }

        if (spec.StartsWith("redis:", StringComparison.Ordinal))
        {
            string configuration = spec[6..];
            if (configuration.Length == 0)
            {
                throw new BudgetReplayException("--store redis: needs a connection string, e.g. redis:127.0.0.1:6379");
            }

            // Each replay writes under its own prefix, so it never mixes with live counters or an earlier replay.
            return new Kars.Policy.Redis.RedisBudgetStore(new Kars.Policy.Redis.RedisBudgetStoreOptions
            {
                Configuration = configuration,
                KeyPrefix = $"kars:replay:{Guid.NewGuid():N}:",
                TimeProvider = time,
            });
        }

        throw new BudgetReplayException($"--store '{spec}' is not one of memory, file:PATH, redis:CONN");
    }

    public static async Task<int> RunAsync(BudgetPolicy policy, BudgetStore store, TextReader input, TextWriter output)
    {
        var replay = new BudgetReplay(store, policy, output);
        int number = 0;
        while (await input.ReadLineAsync().ConfigureAwait(false) is { } line)
        {
            number++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            try
            {
                await replay.ApplyAsync(line).ConfigureAwait(false);
            }
            catch (BudgetReplayException ex)
            {
                throw new BudgetReplayException($"events line {number}: {ex.Message}");
            }
        }

        await output.FlushAsync().ConfigureAwait(false);
        return ExitCodes.Success;
    }

    private async Task ApplyAsync(string line)
    {
        using JsonDocument document = ParseLine(line);
        JsonElement e = document.RootElement;
        string op = String(e, "op");
        Instant at = ParseAt(String(e, "at"));
        switch (op)
        {
            case "request":
                await RequestAsync(String(e, "id"), Key(e), Count(e, "tokens"), at).ConfigureAwait(false);
                break;
            case "settle":
                await CloseAsync(String(e, "id"), Count(e, "actual"), at).ConfigureAwait(false);
                break;
            case "abandon":
                await CloseAsync(String(e, "id"), null, at).ConfigureAwait(false);
                break;
            case "status":
                await StatusAsync(Key(e), at).ConfigureAwait(false);
                break;
            default:
                throw new BudgetReplayException($"unknown op '{op}' (use request, settle, abandon, status)");
        }
    }

    private async Task RequestAsync(string id, string key, long tokens, Instant at)
    {
        if (_leases.ContainsKey(id))
        {
            throw new BudgetReplayException($"request id '{id}' was already used");
        }

        BudgetDecision decision = await _meter.TryReserveAsync(key, tokens, at).ConfigureAwait(false);
        _leases[id] = decision.Lease.IsValid ? decision.Lease.Id : 0;
        BudgetWindowValues remaining = decision.Reason == BudgetReason.PerRequestTokensExceeded
            ? Remaining(await _meter.GetStatusAsync(key, at).ConfigureAwait(false))
            : decision.Remaining;
        WriteLine(w =>
        {
            w.WriteString("id", id);
            w.WriteBoolean("admitted", decision.IsAdmitted);
            w.WriteNumber("status", decision.IsAdmitted ? 200 : 429);
            w.WriteString("reason", decision.Reason switch
            {
                BudgetReason.Admitted => "admitted",
                BudgetReason.Observed => "observed",
                BudgetReason.PerRequestTokensExceeded => "perRequestTokensExceeded",
                _ => "budgetExceeded",
            });
            if (decision.RetryAfter is { } retry)
            {
                w.WriteNumber("retryAfter", (long)retry.TotalSeconds);
            }
            else
            {
                w.WriteNull("retryAfter");
            }

            WriteWindows(w, "remaining", remaining);
        });
    }

    private async Task CloseAsync(string id, long? actual, Instant at)
    {
        if (!_leases.TryGetValue(id, out long lease))
        {
            throw new BudgetReplayException($"no request with id '{id}' came before");
        }

        long charged = 0;
        if (lease != 0)
        {
            BudgetSettlement settlement = actual is { } tokens
                ? await _store.SettleAsync(lease, tokens, at).ConfigureAwait(false)
                : await _store.AbandonAsync(lease, at).ConfigureAwait(false);
            charged = settlement.Charged;
        }

        WriteLine(w =>
        {
            w.WriteString("id", id);
            w.WriteNumber("charged", charged);
        });
    }

    private async Task StatusAsync(string key, Instant at)
    {
        BudgetStatus status = await _meter.GetStatusAsync(key, at).ConfigureAwait(false);
        WriteLine(w =>
        {
            w.WriteString("key", key);
            foreach (string field in new[] { "used", "held", "remaining" })
            {
                w.WriteStartObject(field);
                foreach (BudgetWindowStatus window in status.Windows)
                {
                    w.WriteNumber(WindowNames[(int)window.Window], field switch
                    {
                        "used" => window.Used,
                        "held" => window.Held,
                        _ => window.Remaining,
                    });
                }

                w.WriteEndObject();
            }
        });
    }

    private static BudgetWindowValues Remaining(BudgetStatus status)
    {
        var values = default(BudgetWindowValues);
        foreach (BudgetWindowStatus window in status.Windows)
        {
            values = values.With(window.Window, window.Remaining);
        }

        return values;
    }

    private static void WriteWindows(Utf8JsonWriter w, string name, BudgetWindowValues values)
    {
        w.WriteStartObject(name);
        for (int i = 0; i < WindowNames.Length; i++)
        {
            if (values.TryGetValue((BudgetWindow)i, out long value))
            {
                w.WriteNumber(WindowNames[i], value);
            }
        }

        w.WriteEndObject();
    }

    private void WriteLine(Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            body(writer);
            writer.WriteEndObject();
        }

        _out.WriteLine(Encoding.UTF8.GetString(buffer.ToArray()));
    }

    private static JsonDocument ParseLine(string line)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(line);
        }
        catch (JsonException ex)
        {
            throw new BudgetReplayException($"not valid JSON ({ex.Message.Split(" Path:", 2)[0]})");
        }

        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            throw new BudgetReplayException("an event must be a JSON object");
        }

        return document;
    }

    private static string String(JsonElement e, string name)
        => e.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } text
            ? text
            : throw new BudgetReplayException($"'{name}' must be a non-empty string");

    private static string Key(JsonElement e)
    {
        string key = String(e, "key");
        return key.Length <= BudgetLevel.MaxKeyLength && !key.Any(char.IsControl)
            ? key
            : throw new BudgetReplayException($"'key' must have 1 to {BudgetLevel.MaxKeyLength} characters and no control characters");
    }

    private static long Count(JsonElement e, string name)
        => e.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out long count) && count >= 0
            ? count
            : throw new BudgetReplayException($"'{name}' must be a whole number ≥ 0");

    private static Instant ParseAt(string text)
    {
        ParseResult<OffsetDateTime> result = OffsetDateTimePattern.ExtendedIso.Parse(text);
        return result.Success
            ? result.Value.ToInstant()
            : throw new BudgetReplayException($"'at' must be an RFC 3339 timestamp such as 2030-01-31T23:59:59Z, not '{text}'");
    }
}
