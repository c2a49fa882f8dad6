using System.Collections.Concurrent;
using System.Globalization;
using System.IO.Abstractions;
using System.Text;
using System.Text.Json;
using Kars.Policy.Internal;
using NodaTime;

namespace Kars.Policy.Egress;

/// <summary>
/// Bounded, deduplicated record of learned (sandbox, host, port) destinations. Recording an already-seen destination
/// allocates nothing (a dictionary probe with a struct key and two interlocked updates). Thread-safe.
/// </summary>
internal sealed class LearnedHostStore
{
    public const string UnknownSandbox = "unknown";

    private readonly ConcurrentDictionary<Key, Slot> _entries = new(KeyComparer.Instance);
    private readonly int _capacity;
    private long _dropped;

    public LearnedHostStore(int capacity) => _capacity = capacity;

    public long Dropped => Interlocked.Read(ref _dropped);

    public int Count => _entries.Count;

    public void Record(string? sandbox, string host, int port, DateTimeOffset now)
    {
        var key = new Key(string.IsNullOrEmpty(sandbox) ? UnknownSandbox : sandbox, host, port);
        long ticks = now.UtcTicks;
        if (_entries.TryGetValue(key, out var slot))
        {
            slot.Touch(ticks);
            return;
        }

        RecordNew(key, ticks);
    }

    private void RecordNew(Key key, long ticks)
    {
        if (_entries.Count >= _capacity)
        {
            Interlocked.Increment(ref _dropped);
            return;
        }

        var slot = _entries.GetOrAdd(key, static (_, t) => new Slot(t), ticks);
        slot.Touch(ticks);
    }

    public List<LearnedHost> Snapshot() =>
    [
        .. _entries
            .Select(kv => new LearnedHost(kv.Key.Sandbox, kv.Key.Host, kv.Key.Port,
                Instant.FromDateTimeOffset(new DateTimeOffset(Interlocked.Read(ref kv.Value.FirstSeen), TimeSpan.Zero)),
                Instant.FromDateTimeOffset(new DateTimeOffset(Interlocked.Read(ref kv.Value.LastSeen), TimeSpan.Zero)),
                Interlocked.Read(ref kv.Value.Count)))
            .OrderBy(h => h.Sandbox, StringComparer.Ordinal)
            .ThenBy(h => h.Host, StringComparer.Ordinal)
            .ThenBy(h => h.Port),
    ];

    /// <summary>Writes <c>{"schemaVersion":1,"learned":[…]}</c> through the file system (temp file, then move).</summary>
    public static void Save(IFileSystem fileSystem, string path, IReadOnlyList<LearnedHost> hosts)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            writer.WriteNumber("schemaVersion", 1);
            writer.WriteStartArray("learned");
            foreach (var host in hosts)
            {
                writer.WriteStartObject();
                writer.WriteString("sandbox", host.Sandbox);
                writer.WriteString("host", host.Host);
                writer.WriteNumber("port", host.Port);
                writer.WriteString("firstSeen", FormatTime(host.FirstSeen));
                writer.WriteString("lastSeen", FormatTime(host.LastSeen));
                writer.WriteNumber("count", host.Count);
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        string? folder = fileSystem.Path.GetDirectoryName(fileSystem.Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(folder))
        {
            fileSystem.Directory.CreateDirectory(folder);
        }

        string temp = path + ".tmp";
        fileSystem.File.WriteAllBytes(temp, buffer.ToArray());
        fileSystem.File.Move(temp, path, overwrite: true);
    }

    /// <summary>Reads a file written by <see cref="Save"/> (a regular file of at most <paramref name="maxBytes"/> bytes).</summary>
    /// <exception cref="EgressPolicyLoadException">The file is missing, not a regular file, too large, malformed, or of
    /// another schema version; <see cref="EgressPolicyLoadException.Problems"/> lists every problem.</exception>
    public static List<LearnedHost> Load(IFileSystem fileSystem, string path, long maxBytes = BoundedFile.DefaultDocumentCap)
    {
        var read = BoundedFile.Read(fileSystem, path, maxBytes);
        if (!read.IsSuccess)
        {
            throw new EgressPolicyLoadException([new EgressPolicyProblem(path, "$", $"cannot read the learned-hosts file: the file {read.Message}")]);
        }

        byte[] bytes = read.Bytes!;
        var json = new JsonReading(path);
        var result = new List<LearnedHost>();
        using (var document = json.Parse(bytes))
        {
            if (document is not null && json.CheckObject(document.RootElement, "$", "schemaVersion", "learned"))
            {
                // A file of another schema version may mean something else: refuse it rather than guess.
                if (!document.RootElement.TryGetProperty("schemaVersion", out var version))
                {
                    json.Add("$.schemaVersion", "required field is missing", "use \"schemaVersion\": 1");
                }
                else if (json.TryGetInt64(version, "$.schemaVersion", 1, long.MaxValue, out long v) && v != 1)
                {
                    json.Add("$.schemaVersion", $"schema version {v.ToString(CultureInfo.InvariantCulture)} is not supported", "this version reads schemaVersion 1");
                }

                if (!document.RootElement.TryGetProperty("learned", out var learned) || learned.ValueKind != JsonValueKind.Array)
                {
                    json.Add("$.learned", "expected an array");
                }
                else
                {
                    int i = 0;
                    foreach (var item in learned.EnumerateArray())
                    {
                        string p = $"$.learned[{i.ToString(CultureInfo.InvariantCulture)}]";
                        i++;
                        if (!json.CheckObject(item, p, "sandbox", "host", "port", "firstSeen", "lastSeen", "count"))
                        {
                            continue;
                        }

                        int before = json.Problems.Count;
                        json.TryGetString(item, "sandbox", p, true, out string? sandbox);
                        json.TryGetString(item, "host", p, true, out string? host);
                        long port = 0, count = 0;
                        if (item.TryGetProperty("port", out var portElement))
                        {
                            json.TryGetInt64(portElement, p + ".port", 1, 65535, out port);
                        }
                        else
                        {
                            json.Add(p + ".port", "required field is missing");
                        }

                        if (item.TryGetProperty("count", out var countElement))
                        {
                            json.TryGetInt64(countElement, p + ".count", 0, long.MaxValue, out count);
                        }

                        json.TryGetInstant(item, "firstSeen", p, out var first);
                        json.TryGetInstant(item, "lastSeen", p, out var last);
                        if (host is not null && !HostPatterns.TryValidateName(host, out string? error, out _))
                        {
                            json.Add(p + ".host", error!);
                        }

                        if (json.Problems.Count == before)
                        {
                            result.Add(new LearnedHost(sandbox!, host!, (int)port, Instant.FromDateTimeOffset(first), Instant.FromDateTimeOffset(last), count));
                        }
                    }
                }
            }
        }

        if (json.Problems.Count > 0)
        {
            throw new EgressPolicyLoadException(json.Problems);
        }

        return result;
    }

    /// <summary>Builds a proposed native policy document (Strict) from learned hosts: one exact rule per host with its
    /// ports. Only hosts that are valid allow rules are exported (Learn mode also learns names such as single labels,
    /// which no rule may name); each skipped host is reported in <paramref name="skipped"/> when given.</summary>
    /// <returns>The JSON text of a document that loads.</returns>
    public static string ExportPolicy(IEnumerable<LearnedHost> hosts, long generation = 1, ICollection<EgressPolicyProblem>? skipped = null, string source = "learned hosts")
    {
        var byHost = hosts
            .GroupBy(h => h.Host, StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal);
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            writer.WriteNumber("schemaVersion", 1);
            writer.WriteNumber("generation", Math.Max(1, generation));
            writer.WriteString("mode", "Strict");
            writer.WriteStartArray("allow");
            foreach (var group in byHost)
            {
                if (!HostPatterns.TryParseRuleHost(group.Key, out _, out var scope, out string? error, out string? suggestion) || scope != NameScope.Exact)
                {
                    skipped?.Add(new EgressPolicyProblem(source, $"host \"{group.Key}\"", $"not exported: {error ?? "not an exact host name"}", suggestion));
                    continue;
                }

                writer.WriteStartObject();
                writer.WriteString("host", group.Key);
                writer.WriteStartArray("ports");
                foreach (int port in group.Select(h => h.Port).Where(p => p is >= 1 and <= 65535).Distinct().Order())
                {
                    writer.WriteNumberValue(port);
                }

                writer.WriteEndArray();
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray()) + "\n";
    }

    private static string FormatTime(Instant time) =>
        time.ToDateTimeUtc().ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFFF'Z'", CultureInfo.InvariantCulture);

    private readonly record struct Key(string Sandbox, string Host, int Port);

    private sealed class KeyComparer : IEqualityComparer<Key>
    {
        public static readonly KeyComparer Instance = new();

        public bool Equals(Key x, Key y) =>
            x.Port == y.Port && string.Equals(x.Host, y.Host, StringComparison.Ordinal) && string.Equals(x.Sandbox, y.Sandbox, StringComparison.Ordinal);

        public int GetHashCode(Key obj) =>
            HashCode.Combine(StringComparer.Ordinal.GetHashCode(obj.Host), StringComparer.Ordinal.GetHashCode(obj.Sandbox), obj.Port);
    }

    private sealed class Slot(long ticks)
    {
        public long FirstSeen = ticks;
        public long LastSeen = ticks;
        public long Count;

        public void Touch(long ticks)
        {
            Interlocked.Increment(ref Count);
            long seen = Interlocked.Read(ref LastSeen);
            while (ticks > seen)
            {
                long previous = Interlocked.CompareExchange(ref LastSeen, ticks, seen);
                if (previous == seen)
                {
                    break;
                }

                seen = previous;
            }
        }
    }
}
