using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Kars.Policy.Egress;

namespace Kars.Policy.Benchmarks;

/// <summary>
/// A lower bound for the policy's cold lookup with its present data structures: the same suffix hashes, filter, name
/// index and feed index that a decision reads, and nothing else: no decision value, no decision cache, no port, exception
/// or approval handling, no check of the name's characters, no API layers. It answers only allowed or not, for names of at most 64 characters and the
/// shape of <see cref="EgressData"/> (no single-label names listed). Used by <see cref="PairedColdLookup"/> to show how
/// much of a decision is the tables and how much the work around them.
/// </summary>
internal sealed class TablesOnlyDecider(EgressPolicySnapshot snapshot)
{
    private readonly NameIndex _index = snapshot.Compiled.Index;
    private readonly BlocklistIndex _blocklist = snapshot.Compiled.Blocklist;
    private readonly BinaryFuseFilter _filter = snapshot.Compiled.Filter;

    /// <summary>Decides every host; returns how many were allowed.</summary>
    public int Run(string[] hosts)
    {
        int allowed = 0;
        foreach (string host in hosts)
        {
            if (Decide(host))
            {
                allowed++;
            }
        }

        return allowed;
    }

    /// <summary>Denied when a suffix is in a feed or blocklisted in the index; allowed when the name has an exact rule or
    /// a parent a wildcard or subtree rule; otherwise denied.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public bool Decide(string host)
    {
        ReadOnlySpan<char> name = host;
        int length = name.Length;
        if (length is 0 or > 64)
        {
            return false;
        }

        // One vector pass for the label boundaries: the target factory's shape check, whose dot mask the policy walks
        // (the names are canonical, so its verdict is not needed here).
        EgressTarget.TryCreateDnsName(host, 443, out _, out DnsNameLabels labels);
        ulong dots = labels.DotMask;

        ref char first = ref MemoryMarshal.GetReference(name);
        ulong hash = NameIndex.StartHash;
        int pos = length;
        bool allowed = false;
        bool skipLastLabel = true;
        while (true)
        {
            int start = NameIndex.NextLabelStart(ref dots);
            hash = NameIndex.ConsumeWords(hash, ref first, ref pos, start);
            if (skipLastLabel)
            {
                skipLastLabel = false;
                if (start != 0)
                {
                    continue;
                }
            }

            ulong fingerprint = NameIndex.SuffixFingerprint(hash, ref first, pos, start, length - start);
            uint classes = _filter.Classes(BlocklistIndex.Key(fingerprint));
            if ((classes & CompiledPolicy.BlocklistClass) != 0 && _blocklist.Probe(fingerprint) >= 0)
            {
                return false;
            }

            if ((classes & CompiledPolicy.NameClass) != 0)
            {
                int record = _index.Probe(fingerprint, name[start..]);
                if (record >= 0)
                {
                    if (_index.IsBlocked(record))
                    {
                        return false;
                    }

                    var rules = _index.Rules(record);
                    allowed |= (start == 0 ? rules.AllowExact : rules.AllowWildcard) >= 0 || rules.AllowSubtree >= 0;
                }
            }

            if (start == 0)
            {
                return allowed;
            }
        }
    }
}
