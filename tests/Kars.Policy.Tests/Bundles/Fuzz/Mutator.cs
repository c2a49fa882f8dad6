using System.Buffers;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Kars.Policy.Tests.Bundles.Fuzz;

/// <summary>
/// How many cases the hostile-input tests run. Every case is deterministic: case <c>i</c> of a test uses
/// <c>new Random(seed + i)</c>, and a failure names the test's seed and the case, so it replays exactly. CI runs the
/// baseline; <c>KARS_FUZZ_SCALE=N</c> multiplies every count for a longer local run (the extra cases continue the
/// same seed sequence).
/// </summary>
internal static class FuzzRun
{
    private static readonly AsyncLocal<StrongBox<long>?> Progress = new();
    private static long _cases;

    public static int Scale { get; } =
        int.TryParse(Environment.GetEnvironmentVariable("KARS_FUZZ_SCALE"), NumberStyles.None, CultureInfo.InvariantCulture, out int scale) && scale > 0 ? scale : 1;

    /// <summary>Gets the number of cases run so far in this process (reported by the tests).</summary>
    public static long CasesRun => Interlocked.Read(ref _cases);

    /// <summary>Runs <paramref name="baseline"/> × <see cref="Scale"/> cases; returns how many ran.</summary>
    public static int Cases(int seed, int baseline, Action<int, Random> body)
    {
        int count = baseline * Scale;
        var progress = Progress.Value;
        for (int i = 0; i < count; i++)
        {
            body(i, new Random(seed + i));
            Interlocked.Increment(ref _cases);
            if (progress is not null)
            {
                Interlocked.Increment(ref progress.Value);
            }
        }

        return count;
    }

    /// <summary>A safety net against a hang, never the assertion and never a verdict on speed: runs
    /// <paramref name="body"/> on a worker and fails the test only when it made no progress for
    /// <paramref name="limit"/>, that is, when no case of <see cref="Cases"/> run by <paramref name="body"/> finished in
    /// that time (or, for a body that runs no cases, when the one call has not returned). However many cases a run has
    /// and however slow the machine is, a run that keeps finishing cases is waited for; only a blocked read (a FIFO that
    /// is opened, a device that is read forever) stops finishing them.</summary>
    public static T Bounded<T>(Func<T> body, TimeSpan limit, Action? unblock = null)
    {
        var progress = new StrongBox<long>();
        Task<T> run;
        Progress.Value = progress; // flows to the worker with the execution context
        try
        {
            run = Task.Run(body);
        }
        finally
        {
            Progress.Value = null;
        }

        long finished = 0;
        var done = ((IAsyncResult)run).AsyncWaitHandle;
        while (!done.WaitOne(limit))
        {
            long now = Interlocked.Read(ref progress.Value);
            if (now != finished)
            {
                finished = now;
                continue;
            }

            unblock?.Invoke();
            done.WaitOne(limit);
            throw new Xunit.Sdk.XunitException($"no progress for {limit.TotalSeconds} s after {finished} case(s) (a read that is not bounded, or a blocking open)");
        }

        return run.GetAwaiter().GetResult();
    }
}

/// <summary>Byte-level and JSON-structure-aware mutations of a valid vector; each describes itself for the failure message.</summary>
internal sealed class Mutator(Random random)
{
    private static readonly string[] Tokens =
    [
        "null", "true", "false", "0", "-1", "\"-1\"", "1.5", "\"\"", "{}", "[]", "\"AAAA\"",
        "9223372036854775807", "9223372036854775808", "-9223372036854775809", "1e400", "-0", "\"0\"",
        "\"9223372036854775807\"", "\"9223372036854775808\"", "\"18446744073709551616\"", "\"+1\"", "\" 1\"",
        "\"\\ud800\"", "\"x\\u0000y\"", "\"\\u2014 \"", "[null]", "[{}]", "{\"a\":{}}",
    ];

    private static readonly byte[] Interesting = [0x00, 0xff, 0x7f, 0x80, (byte)'"', (byte)'\\', (byte)'{', (byte)'}', (byte)'[', (byte)',', (byte)':', (byte)'\n', (byte)'=', 0x30, 0x02, 0x04, 0x05, 0x06, 0x0a, 0x31, 0xa0];

    public Random Random { get; } = random;

    /// <summary>One to three byte-level changes: bit flip, truncation, insertion, deletion, duplication of a range, overwrite.</summary>
    public (byte[] Bytes, string Description) Bytes(byte[] input)
    {
        var bytes = input.ToList();
        var what = new List<string>();
        int ops = Random.Next(1, 4);
        for (int n = 0; n < ops; n++)
        {
            int at = Random.Next(bytes.Count + 1);
            switch (Random.Next(7))
            {
                case 0 when bytes.Count > 0:
                    int flip = Math.Min(at, bytes.Count - 1);
                    int bit = Random.Next(8);
                    bytes[flip] ^= (byte)(1 << bit);
                    what.Add($"flip bit {bit} at {flip}");
                    break;
                case 1:
                    bytes.RemoveRange(at, bytes.Count - at);
                    what.Add($"truncate at {at}");
                    break;
                case 2:
                    var inserted = Enumerable.Range(0, Random.Next(1, 9)).Select(_ => Random.Next(3) == 0 ? (byte)Random.Next(256) : Interesting[Random.Next(Interesting.Length)]).ToArray();
                    bytes.InsertRange(at, inserted);
                    what.Add($"insert {Convert.ToHexString(inserted)} at {at}");
                    break;
                case 3 when bytes.Count > 0:
                    int start = Math.Min(at, bytes.Count - 1);
                    int length = Math.Min(Random.Next(1, 64), bytes.Count - start);
                    int to = Random.Next(bytes.Count + 1);
                    bytes.InsertRange(to, bytes.GetRange(start, length));
                    what.Add($"duplicate [{start},+{length}) at {to}");
                    break;
                case 4 when bytes.Count > 0:
                    int from = Math.Min(at, bytes.Count - 1);
                    int count = Math.Min(Random.Next(1, 16), bytes.Count - from);
                    bytes.RemoveRange(from, count);
                    what.Add($"delete [{from},+{count})");
                    break;
                case 5 when bytes.Count > 0:
                    int over = Math.Min(at, bytes.Count - 1);
                    byte value = Interesting[Random.Next(Interesting.Length)];
                    bytes[over] = value;
                    what.Add($"set {over} to {value:x2}");
                    break;
                default:
                    // Rarely: a large insertion (a long run of one byte).
                    int runLength = Random.Next(1, 4) * 4096;
                    bytes.InsertRange(at, Enumerable.Repeat(Interesting[Random.Next(Interesting.Length)], runLength));
                    what.Add($"insert a run of {runLength} bytes at {at}");
                    break;
            }
        }

        return (bytes.ToArray(), string.Join("; ", what));
    }

    /// <summary>
    /// One structure-aware change of a JSON document: remove, duplicate (a duplicate key or array element), replace with
    /// another type, a huge or negative or overflowing number, deep nesting or a huge base64 string; or, for a string,
    /// decode it (base64) and mutate the bytes, or edit its text and lines.
    /// </summary>
    public (byte[] Bytes, string Description) Json(byte[] utf8)
    {
        var root = JsonNode.Parse(utf8, documentOptions: new JsonDocumentOptions { MaxDepth = 256 })!;
        var paths = new List<(string Path, JsonNode? Node, JsonNode? Parent)>();
        Collect(root, "$", null, paths);
        var (path, node, parent) = paths[Random.Next(paths.Count)];
        var edit = Choose(path, node, parent);
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { SkipValidation = true, MaxDepth = 100_000 }))
        {
            Write(writer, root, "$", edit);
        }

        return (buffer.WrittenSpan.ToArray(), $"{edit.Kind} {path}{(edit.Detail is null ? string.Empty : " " + edit.Detail)}");
    }

    /// <summary>A byte-level or a structure-aware mutation, at random.</summary>
    public (byte[] Bytes, string Description) Any(byte[] json) => Random.Next(2) == 0 ? Bytes(json) : Json(json);

    /// <summary>Changes a text by lines or characters (checkpoints, PEM, YAML).</summary>
    public string Text(string text)
    {
        var lines = text.Split('\n').ToList();
        switch (Random.Next(6))
        {
            case 0:
                lines.Insert(Random.Next(lines.Count + 1), Random.Next(2) == 0 ? string.Empty : "extra line " + Random.Next(1000).ToString(CultureInfo.InvariantCulture));
                break;
            case 1:
                int duplicate = Random.Next(lines.Count);
                lines.Insert(duplicate, lines[duplicate]);
                break;
            case 2 when lines.Count > 1:
                lines.RemoveAt(Random.Next(lines.Count));
                break;
            case 3:
                int line = Random.Next(lines.Count);
                lines[line] = lines[line] + (Random.Next(2) == 0 ? " " : "\r");
                break;
            default:
                var chars = text.ToList();
                int at = Random.Next(chars.Count + 1);
                if (Random.Next(2) == 0 && chars.Count > 0)
                {
                    chars.RemoveAt(Math.Min(at, chars.Count - 1));
                }
                else
                {
                    const string Inserted = "\n \t0-\u2014:\"\\ax";
                    chars.Insert(at, Inserted[Random.Next(Inserted.Length)]);
                }

                return new string([.. chars]);
        }

        return string.Join('\n', lines);
    }

    private Edit Choose(string path, JsonNode? node, JsonNode? parent)
    {
        int pick = Random.Next(10);
        if (pick == 0 && parent is not null)
        {
            return new Edit(path, EditKind.Remove);
        }

        if (pick == 1 && parent is not null)
        {
            return new Edit(path, EditKind.Duplicate);
        }

        if (pick == 2 && node is JsonObject)
        {
            return new Edit(path, EditKind.AddMember);
        }

        if (pick == 3 && node is JsonArray array)
        {
            return Random.Next(3) switch
            {
                0 => new Edit(path, EditKind.Raw, "[]"),
                1 when array.Count > 0 => new Edit(path, EditKind.Raw, "[" + string.Join(",", Enumerable.Repeat(array[0]?.ToJsonString() ?? "null", 100)) + "]", "100 copies of the first element"),
                _ => new Edit(path, EditKind.Raw, "[" + string.Join(",", array.Select(e => e?.ToJsonString() ?? "null").Reverse()) + "]", "reversed"),
            };
        }

        if (pick is 4 or 5 && node is JsonValue value && value.GetValueKind() == JsonValueKind.String)
        {
            string text = value.GetValue<string>();
            if (text.Length % 4 == 0 && text.Length > 0 && System.Buffers.Text.Base64.IsValid(text, out _))
            {
                var (bytes, description) = Bytes(Convert.FromBase64String(text));
                return new Edit(path, EditKind.String, Convert.ToBase64String(bytes), "base64 content: " + description);
            }

            return new Edit(path, EditKind.String, Text(text), "text");
        }

        if (pick == 6)
        {
            return Random.Next(4) switch
            {
                0 => new Edit(path, EditKind.Raw, new string('[', 5000) + new string(']', 5000), "nesting 5000 deep"),
                1 => new Edit(path, EditKind.Raw, new string('[', 70) + new string(']', 70), "nesting 70 deep"),
                2 => new Edit(path, EditKind.Raw, "\"" + new string('A', 4 * Random.Next(1, 300_000)) + "\"", "huge base64"),
                _ => new Edit(path, EditKind.Raw, "\"" + new string('A', 4 * 1024 * 1024 + 4) + "\"", "base64 beyond the document bound"),
            };
        }

        string token = Tokens[Random.Next(Tokens.Length)];
        return new Edit(path, EditKind.Raw, token);
    }

    private static void Collect(JsonNode? node, string path, JsonNode? parent, List<(string, JsonNode?, JsonNode?)> into)
    {
        into.Add((path, node, parent));
        switch (node)
        {
            case JsonObject o:
                foreach (var (key, child) in o)
                {
                    Collect(child, path + "." + key, node, into);
                }

                break;
            case JsonArray a:
                for (int i = 0; i < a.Count; i++)
                {
                    Collect(a[i], $"{path}[{i.ToString(CultureInfo.InvariantCulture)}]", node, into);
                }

                break;
        }
    }

    private static void Write(Utf8JsonWriter writer, JsonNode? node, string path, Edit edit)
    {
        if (path == edit.Path)
        {
            switch (edit.Kind)
            {
                case EditKind.Raw:
                    writer.WriteRawValue(edit.Value!, skipInputValidation: true);
                    return;
                case EditKind.String:
                    writer.WriteStringValue(edit.Value);
                    return;
            }
        }

        switch (node)
        {
            case JsonObject o:
                writer.WriteStartObject();
                foreach (var (key, child) in o)
                {
                    string childPath = path + "." + key;
                    if (childPath == edit.Path && edit.Kind == EditKind.Remove)
                    {
                        continue;
                    }

                    writer.WritePropertyName(key);
                    Write(writer, child, childPath, edit);
                    if (childPath == edit.Path && edit.Kind == EditKind.Duplicate)
                    {
                        writer.WritePropertyName(key);
                        Write(writer, child, childPath + "#", edit);
                    }
                }

                if (path == edit.Path && edit.Kind == EditKind.AddMember)
                {
                    writer.WriteNumber(UnknownMember, 1);
                }

                writer.WriteEndObject();
                break;
            case JsonArray a:
                writer.WriteStartArray();
                for (int i = 0; i < a.Count; i++)
                {
                    string childPath = $"{path}[{i.ToString(CultureInfo.InvariantCulture)}]";
                    if (childPath == edit.Path && edit.Kind == EditKind.Remove)
                    {
                        continue;
                    }

                    Write(writer, a[i], childPath, edit);
                    if (childPath == edit.Path && edit.Kind == EditKind.Duplicate)
                    {
                        Write(writer, a[i], childPath + "#", edit);
                    }
                }

                writer.WriteEndArray();
                break;
            case null:
                writer.WriteNullValue();
                break;
            default:
                node.WriteTo(writer);
                break;
        }
    }

    /// <summary>The name of the member <see cref="EditKind.AddMember"/> adds (unknown to every reader).</summary>
    public const string UnknownMember = "kars-fuzz-unknown";

    private enum EditKind
    {
        Remove,
        Duplicate,
        AddMember,
        Raw,
        String,
    }

    private sealed record Edit(string Path, EditKind Kind, string? Value = null, string? Detail = null);
}

/// <summary>The oracle for "no mutation that changes a signed byte verifies": where two JSON documents differ.</summary>
internal static class JsonDiff
{
    /// <summary>The paths where <paramref name="mutated"/> differs from <paramref name="original"/>, or <see langword="null"/>
    /// when <paramref name="mutated"/> is not JSON a strict reader accepts (no duplicate keys, depth ≤ 64).
    /// Strings that are base64 of the same bytes, and an integer written as a number or a decimal string, are equal.</summary>
    public static List<string>? Differences(byte[] original, byte[] mutated)
    {
        JsonNode? a = JsonNode.Parse(original);
        JsonNode? b;
        if (!System.Text.Unicode.Utf8.IsValid(mutated))
        {
            return null;
        }

        try
        {
            using var strict = JsonDocument.Parse(mutated, new JsonDocumentOptions { AllowDuplicateProperties = false, MaxDepth = 64 });
            b = JsonNode.Parse(mutated, documentOptions: new JsonDocumentOptions { MaxDepth = 64 });
        }
        catch (Exception ex) when (ex is JsonException or ArgumentException or InvalidOperationException)
        {
            return null;
        }

        var into = new List<string>();
        Compare(a, b, "$", into);
        return into;
    }

    private static void Compare(JsonNode? a, JsonNode? b, string path, List<string> into)
    {
        switch (a, b)
        {
            case (JsonObject x, JsonObject y):
                foreach (var (key, value) in x)
                {
                    if (!y.TryGetPropertyValue(key, out var other))
                    {
                        into.Add(path + "." + key + " (removed)");
                    }
                    else
                    {
                        Compare(value, other, path + "." + key, into);
                    }
                }

                foreach (var (key, _) in y)
                {
                    if (!x.ContainsKey(key))
                    {
                        into.Add(path + "." + key + " (added)");
                    }
                }

                break;
            case (JsonArray x, JsonArray y):
                for (int i = 0; i < Math.Max(x.Count, y.Count); i++)
                {
                    string at = $"{path}[{i.ToString(CultureInfo.InvariantCulture)}]";
                    if (i >= x.Count)
                    {
                        into.Add(at + " (added)");
                    }
                    else if (i >= y.Count)
                    {
                        into.Add(at + " (removed)");
                    }
                    else
                    {
                        Compare(x[i], y[i], at, into);
                    }
                }

                break;
            default:
                if (!SameScalar(a, b))
                {
                    into.Add(path);
                }

                break;
        }
    }

    private static bool SameScalar(JsonNode? a, JsonNode? b)
    {
        try
        {
            return SameValue(a, b);
        }
        catch (InvalidOperationException)
        {
            return false; // a string with a lone surrogate escape: never the same as the vector's
        }
    }

    private static bool SameValue(JsonNode? a, JsonNode? b)
    {
        if (JsonNode.DeepEquals(a, b))
        {
            return true;
        }

        if (a is not JsonValue x || b is not JsonValue y)
        {
            return false;
        }

        string? sx = Scalar(x);
        string? sy = Scalar(y);
        if (sx is null || sy is null)
        {
            return false;
        }

        // An integer as a number or a decimal string, and -0 for 0, are the same value to a proto3 JSON reader.
        if (long.TryParse(sx, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long lx) && long.TryParse(sy, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long ly))
        {
            return lx == ly;
        }

        return sx.Length % 4 == 0 && sy.Length % 4 == 0 && sx.Length > 0
            && System.Buffers.Text.Base64.IsValid(sx, out _) && System.Buffers.Text.Base64.IsValid(sy, out _)
            && !sx.AsSpan().ContainsAny(" \t\r\n") && !sy.AsSpan().ContainsAny(" \t\r\n")
            && Convert.FromBase64String(sx).AsSpan().SequenceEqual(Convert.FromBase64String(sy));
    }

    private static string? Scalar(JsonValue value) => value.GetValueKind() switch
    {
        JsonValueKind.String => value.GetValue<string>(),
        JsonValueKind.Number => value.ToJsonString(),
        _ => null,
    };

    public static string Utf8(byte[] bytes) => Encoding.UTF8.GetString(bytes);
}
