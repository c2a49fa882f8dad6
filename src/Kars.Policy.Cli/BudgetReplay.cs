using System.Globalization;
using System.IO.Abstractions;
using System.Text;
using System.Text.Json;
using Kars.Policy.Budgets;
using NodaTime;
using NodaTime.Text;

namespace Kars.Policy.Cli;

/// <summary>
/// <c>budget replay</c>: replays timestamped events against a budget policy, one output per event (DESIGN §7): a
/// readable table by default, one JSON line per event with <c>--json</c>. Every event's <c>at</c> is the clock for
/// that event: strict RFC 3339 (<c>uuuu-MM-ddTHH:mm:ss[.f…]</c>, 1–9 fraction digits, then <c>Z</c> or <c>±HH:mm</c>;
/// lower-case <c>t</c>/<c>z</c> accepted per RFC 3339 §5.6; no leap second).
/// </summary>
internal sealed class BudgetReplay
{
    private static readonly string[] StatusFields = ["used", "held", "remaining"];

    private static readonly string[] WindowNames = ["hour", "day", "week", "month", "year"];
    private static readonly string[] TableHeader = ["AT", "OP", "ID", "KEY", "RESULT", "DETAIL"];
    private static readonly JsonDocumentOptions EventOptions = new() { AllowDuplicateProperties = false };
    private readonly BudgetStore _store;
    private readonly BudgetMeter _meter;
    private readonly TextWriter _out;
    private readonly bool _json;
    private readonly List<string[]> _rows = [];
    private readonly Dictionary<string, (long Lease, string Key)> _leases = new(StringComparer.Ordinal);
    private readonly HashSet<string> _closed = new(StringComparer.Ordinal);
    private string _at = string.Empty;
    private Instant? _previous;

    private BudgetReplay(BudgetStore store, BudgetPolicy policy, TextWriter output, bool json)
    {
        _store = store;
        _meter = new BudgetMeter(store, policy);
        _out = output;
        _json = json;
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
            return await FileBudgetStore.OpenAsync(spec[5..], options: null, fileSystem, time).ConfigureAwait(false);
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
            }, connection: null, time);
        }

        throw new BudgetReplayException($"--store '{spec}' is not one of memory, file:PATH, redis:CONN");
    }

    public static async Task<int> RunAsync(BudgetPolicy policy, BudgetStore store, TextReader input, TextWriter output, bool json)
    {
        var replay = new BudgetReplay(store, policy, output, json);
        int number = 0;
        try
        {
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
        }
        finally
        {
            // The events replayed before a failure are still reported (the error goes to stderr).
            replay.WriteTable();
            await output.FlushAsync().ConfigureAwait(false);
        }

        return ExitCodes.Success;
    }

    private async Task ApplyAsync(string line)
    {
        using JsonDocument document = ParseLine(line);
        JsonElement e = document.RootElement;
        string op = String(e, "op");
        _at = String(e, "at");
        Instant at = ParseAt(_at);
        if (at < BudgetRequest.MinAt || at > BudgetRequest.MaxAt)
        {
            throw new BudgetReplayException($"'at' {_at} is outside the instants a budget store accepts (0001-01-01T00:00:00Z to 9998-12-31T23:59:59.999999999Z)");
        }

        if (_previous is { } previous && at < previous)
        {
            // Events are the clock: a store that has moved on may have pruned the period this one falls in.
            throw new BudgetReplayException($"'at' {_at} goes back in time: it is before the previous event ({InstantText(previous)}); events must be in time order");
        }

        _previous = at;
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
        _leases[id] = (decision.Lease.IsValid ? decision.Lease.Id : 0, key);
        BudgetWindowValues remaining = decision.Reason == BudgetReason.PerRequestTokensExceeded
            ? Remaining(await _meter.GetStatusAsync(key, at).ConfigureAwait(false))
            : decision.Remaining;
        string reason = decision.Reason switch
        {
            BudgetReason.Admitted => "admitted",
            BudgetReason.Observed => "observed",
            BudgetReason.PerRequestTokensExceeded => "perRequestTokensExceeded",
            _ => "budgetExceeded",
        };
        int status = decision.IsAdmitted ? 200 : 429;
        if (!_json)
        {
            string retry = decision.RetryAfter is { } r ? Invariant((long)r.TotalSeconds) + "s" : decision.IsAdmitted ? "-" : "never";
            Row("request", id, key, $"{Invariant(status)} {reason}", $"tokens {Invariant(tokens)}, retry after {retry}, remaining {Windows(remaining)}");
            return;
        }

        WriteLine(w =>
        {
            w.WriteString("id", id);
            w.WriteBoolean("admitted", decision.IsAdmitted);
            w.WriteNumber("status", status);
            w.WriteString("reason", reason);
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
        if (!_leases.TryGetValue(id, out var entry))
        {
            throw new BudgetReplayException($"no request with id '{id}' came before");
        }

        long lease = entry.Lease;
        long charged = 0;
        string status;
        if (lease == 0)
        {
            status = "notAdmitted";
        }
        else if (!_closed.Add(id))
        {
            // A repeat charges nothing: print what this event charged (0), not the first charge again.
            status = "alreadySettled";
        }
        else
        {
            BudgetSettlement settlement = actual is { } tokens
                ? await _store.SettleAsync(lease, tokens, at).ConfigureAwait(false)
                : await _store.AbandonAsync(lease, at).ConfigureAwait(false);
            charged = settlement.Charged;
            status = settlement.Status switch
            {
                BudgetSettlementStatus.Settled => "settled",
                BudgetSettlementStatus.Expired => "expired",
                BudgetSettlementStatus.AlreadySettled => "alreadySettled",
                _ => "unknownLease",
            };
            if (settlement.Status == BudgetSettlementStatus.AlreadySettled)
            {
                charged = 0;
            }
        }

        if (!_json)
        {
            Row(actual is null ? "abandon" : "settle", id, entry.Key, $"charged {Invariant(charged)} {status}", actual is { } a ? $"actual {Invariant(a)}" : "full hold");
            return;
        }

        WriteLine(w =>
        {
            w.WriteString("id", id);
            w.WriteString("status", status);
            w.WriteNumber("charged", charged);
        });
    }

    private async Task StatusAsync(string key, Instant at)
    {
        BudgetStatus status = await _meter.GetStatusAsync(key, at).ConfigureAwait(false);
        if (!_json)
        {
            string detail = status.Windows.Count == 0
                ? "no limits"
                : string.Join("; ", status.Windows.Select(w => $"{WindowNames[(int)w.Window]} used {Invariant(w.Used)} held {Invariant(w.Held)} remaining {Invariant(w.Remaining)}"));
            Row("status", "-", key, "-", detail);
            return;
        }

        WriteLine(w =>
        {
            w.WriteString("key", key);
            foreach (string field in StatusFields)
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

    private static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static string Windows(BudgetWindowValues values)
    {
        var parts = new List<string>(WindowNames.Length);
        for (int i = 0; i < WindowNames.Length; i++)
        {
            if (values.TryGetValue((BudgetWindow)i, out long value))
            {
                parts.Add($"{WindowNames[i]}={Invariant(value)}");
            }
        }

        return parts.Count == 0 ? "unlimited" : string.Join(' ', parts);
    }

    private void Row(string op, string id, string key, string result, string detail) => _rows.Add([_at, op, id, key, result, detail]);

    private void WriteTable()
    {
        if (_json || _rows.Count == 0)
        {
            return;
        }

        int[] widths = new int[TableHeader.Length];
        foreach (string[] row in _rows.Prepend(TableHeader))
        {
            for (int i = 0; i < row.Length; i++)
            {
                widths[i] = Math.Max(widths[i], row[i].Length);
            }
        }

        foreach (string[] row in _rows.Prepend(TableHeader))
        {
            _out.WriteLine(string.Join("  ", row.Select((cell, i) => i == row.Length - 1 ? cell : cell.PadRight(widths[i]))).TrimEnd());
        }
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
            document = JsonDocument.Parse(line, EventOptions);
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
    {
        string? text = null;
        if (e.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.String)
        {
            try
            {
                text = value.GetString();
            }
            catch (InvalidOperationException)
            {
                throw new BudgetReplayException($"'{name}' is not valid UTF-16 text");
            }
        }

        return text is { Length: > 0 } ? text : throw new BudgetReplayException($"'{name}' must be a non-empty string");
    }

    private static string Key(JsonElement e)
    {
        string key = String(e, "key");
        try
        {
            _ = new BudgetLevel(key, BudgetLimits.None);
        }
        catch (ArgumentException ex)
        {
            throw new BudgetReplayException("'key': " + ex.Message.Split(" (Parameter", 2)[0]);
        }

        return key;
    }

    private static long Count(JsonElement e, string name)
        => e.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out long count) && count is >= 0 and <= BudgetStore.MaxTokens
            ? count
            : throw new BudgetReplayException($"'{name}' must be a whole number from 0 to {BudgetStore.MaxTokens}");

    private static string InstantText(Instant instant) => NodaTime.Text.InstantPattern.ExtendedIso.Format(instant);

    private static Instant ParseAt(string text)
        => Rfc3339.TryParse(text, out Instant instant)
            ? instant
            : throw new BudgetReplayException($"'at' must be an RFC 3339 timestamp (YYYY-MM-DDThh:mm:ss[.fffffffff] then Z or ±hh:mm), such as 2030-01-31T23:59:59Z, not '{text}'");
}
