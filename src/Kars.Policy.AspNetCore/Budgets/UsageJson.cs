using System.Text.Json;
using Kars.Policy.Budgets;

namespace Kars.Policy.AspNetCore;

/// <summary>Token counts read from one <c>usage</c> object. Each part keeps the largest value seen.</summary>
internal struct UsageCounts
{
    public long Total;
    public long Input;
    public long Output;
    public long CacheCreation;
    public long CacheRead;
    public bool Any;

    /// <summary>Gets the tokens to charge: the larger of <c>total_tokens</c> and the sum of the parts (input or
    /// prompt, output or completion, and Anthropic's separate cache-creation and cache-read input), at most
    /// <see cref="BudgetStore.MaxTokens"/>. OpenAI's nested <c>*_details</c> are parts of the input/output already
    /// and are not added.</summary>
    public readonly long Charge
    {
        get
        {
            long sum = SaturatingAdd(SaturatingAdd(Input, Output), SaturatingAdd(CacheCreation, CacheRead));
            return Math.Min(Math.Max(Total, sum), BudgetStore.MaxTokens);
        }
    }

    public void Merge(in UsageCounts other)
    {
        Total = Math.Max(Total, other.Total);
        Input = Math.Max(Input, other.Input);
        Output = Math.Max(Output, other.Output);
        CacheCreation = Math.Max(CacheCreation, other.CacheCreation);
        CacheRead = Math.Max(CacheRead, other.CacheRead);
        Any |= other.Any;
    }

    private static long SaturatingAdd(long a, long b) => a > long.MaxValue - b ? long.MaxValue : a + b;
}

/// <summary>The kinds of streamed events the gate tells apart (by the event's JSON <c>type</c>).</summary>
internal enum UsageEventType
{
    Other = 0,
    ResponseCompleted,
    ResponseIncomplete,
    ResponseFailed,
    Error,
    MessageStart,
    MessageDelta,
    MessageStop,
}

/// <summary>What one JSON document (a response body or one SSE event's data) says about usage.</summary>
internal struct UsageFacts
{
    /// <summary>The <c>type</c> member.</summary>
    public UsageEventType Type;

    /// <summary>The top-level <c>usage</c>.</summary>
    public UsageCounts Usage;

    /// <summary>The <c>usage</c> of the top-level <c>response</c> (OpenAI Responses) or <c>message</c> (Anthropic).</summary>
    public UsageCounts NestedUsage;

    /// <summary>Whether a top-level <c>error</c> member is present and not <c>null</c>.</summary>
    public bool HasError;
}

/// <summary>Reads <c>usage</c> objects with <see cref="Utf8JsonReader"/>: strict JSON, no allocation, ordinal names.</summary>
internal static class UsageJson
{
    private static readonly JsonReaderOptions ReaderOptions = new() { CommentHandling = JsonCommentHandling.Disallow, AllowTrailingCommas = false, MaxDepth = 256 };

    /// <summary>Reads one JSON object (a whole document).</summary>
    /// <returns><see langword="false"/> when it is not one well-formed JSON object, or a <c>usage</c> member holds
    /// anything but non-negative integers (or <c>null</c>) in its counted fields.</returns>
    public static bool TryRead(ReadOnlySpan<byte> json, out UsageFacts facts)
    {
        facts = default;
        try
        {
            var reader = new Utf8JsonReader(json, ReaderOptions);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("usage"u8))
                {
                    reader.Read();
                    if (!TryReadUsageValue(ref reader, ref facts.Usage))
                    {
                        return false;
                    }
                }
                else if (reader.ValueTextEquals("type"u8))
                {
                    reader.Read();
                    facts.Type = reader.TokenType == JsonTokenType.String ? Classify(ref reader) : UsageEventType.Other;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("error"u8))
                {
                    reader.Read();
                    facts.HasError |= reader.TokenType != JsonTokenType.Null;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("response"u8) || reader.ValueTextEquals("message"u8))
                {
                    reader.Read();
                    if (reader.TokenType != JsonTokenType.StartObject)
                    {
                        reader.Skip();
                        continue;
                    }

                    while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                    {
                        bool isUsage = reader.ValueTextEquals("usage"u8);
                        reader.Read();
                        if (!isUsage)
                        {
                            reader.Skip();
                        }
                        else if (!TryReadUsageValue(ref reader, ref facts.NestedUsage))
                        {
                            return false;
                        }
                    }
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }

            return !reader.Read();
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // ValueTextEquals throws InvalidOperationException on an escaped lone surrogate: no usage evidence.
            return false;
        }
    }

    private static UsageEventType Classify(ref Utf8JsonReader reader)
    {
        if (reader.ValueTextEquals("response.completed"u8))
        {
            return UsageEventType.ResponseCompleted;
        }

        if (reader.ValueTextEquals("response.incomplete"u8))
        {
            return UsageEventType.ResponseIncomplete;
        }

        if (reader.ValueTextEquals("response.failed"u8))
        {
            return UsageEventType.ResponseFailed;
        }

        if (reader.ValueTextEquals("error"u8))
        {
            return UsageEventType.Error;
        }

        if (reader.ValueTextEquals("message_start"u8))
        {
            return UsageEventType.MessageStart;
        }

        if (reader.ValueTextEquals("message_delta"u8))
        {
            return UsageEventType.MessageDelta;
        }

        return reader.ValueTextEquals("message_stop"u8) ? UsageEventType.MessageStop : UsageEventType.Other;
    }

    /// <summary>Reads a <c>usage</c> value (the reader is on its first token): <c>null</c> or an object.</summary>
    private static bool TryReadUsageValue(ref Utf8JsonReader reader, ref UsageCounts into)
    {
        if (reader.TokenType == JsonTokenType.Null)
        {
            return true;
        }

        if (reader.TokenType != JsonTokenType.StartObject)
        {
            return false;
        }

        UsageCounts counts = default;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            ref long field = ref Field(ref reader, ref counts, out bool counted);
            reader.Read();
            if (!counted)
            {
                reader.Skip();
                continue;
            }

            if (reader.TokenType == JsonTokenType.Null)
            {
                continue;
            }

            if (reader.TokenType != JsonTokenType.Number || reader.ValueSpan.IndexOfAny("-.eE"u8) >= 0
                || !reader.TryGetInt64(out long value) || value > BudgetStore.MaxTokens)
            {
                return false;
            }

            field = Math.Max(field, value);
            counts.Any = true;
        }

        into.Merge(counts);
        return true;
    }

    private static ref long Field(ref Utf8JsonReader reader, ref UsageCounts counts, out bool counted)
    {
        counted = true;
        if (reader.ValueTextEquals("total_tokens"u8))
        {
            return ref counts.Total;
        }

        if (reader.ValueTextEquals("prompt_tokens"u8) || reader.ValueTextEquals("input_tokens"u8))
        {
            return ref counts.Input;
        }

        if (reader.ValueTextEquals("completion_tokens"u8) || reader.ValueTextEquals("output_tokens"u8))
        {
            return ref counts.Output;
        }

        if (reader.ValueTextEquals("cache_creation_input_tokens"u8))
        {
            return ref counts.CacheCreation;
        }

        if (reader.ValueTextEquals("cache_read_input_tokens"u8))
        {
            return ref counts.CacheRead;
        }

        counted = false;
        return ref counts.Total;
    }
}
