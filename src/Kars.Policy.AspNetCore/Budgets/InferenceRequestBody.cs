using System.Buffers;
using System.Text.Json;

namespace Kars.Policy.AspNetCore;

/// <summary>What the gate reads from an inference request body.</summary>
/// <param name="MaxTokens">The largest <c>max_tokens</c> (every occurrence counts: parsers that keep the last
/// duplicate and parsers that keep the first must both be covered).</param>
/// <param name="MaxCompletionTokens">The largest <c>max_completion_tokens</c>.</param>
/// <param name="Stream">Whether any <c>stream</c> member is <see langword="true"/>.</param>
/// <param name="MaxOutputTokens">The largest <c>max_output_tokens</c>.</param>
/// <param name="Choices">The largest <c>n</c> or <c>best_of</c> (completions generated per request).</param>
/// <param name="Background">Whether any <c>background</c> member is <see langword="true"/>.</param>
internal readonly record struct InferenceRequestFacts(long? MaxTokens, long? MaxCompletionTokens, bool Stream, long? MaxOutputTokens = null, long? Choices = null, bool Background = false)
{
    /// <summary>What this gate cannot bound for the API, or <see langword="null"/>: more than one completion per
    /// request (Chat Completions <c>n</c>, Completions <c>n</c>/<c>best_of</c>) and a Responses
    /// <c>background</c> run (its output is fetched later, where the gate never sees its usage).</summary>
    public string? UnboundedFor(InferenceApi api) => api switch
    {
        InferenceApi.ChatCompletions or InferenceApi.Completions when Choices > 1 =>
            "Metered routes accept one completion per request: n (and best_of) must be 1 or absent.",
        InferenceApi.Responses when Background =>
            "Metered routes do not accept background responses (background: true).",
        _ => null,
    };

    /// <summary>
    /// The completion bounds the API honours (a member the API ignores must not lower the reservation): Chat
    /// Completions <c>max_tokens</c> and <c>max_completion_tokens</c>; Completions and Anthropic Messages
    /// <c>max_tokens</c>; Responses <c>max_output_tokens</c>; Embeddings none.
    /// </summary>
    public (long? First, long? Second) BoundsFor(InferenceApi api) => api switch
    {
        InferenceApi.ChatCompletions => (MaxTokens, MaxCompletionTokens),
        InferenceApi.Completions or InferenceApi.AnthropicMessages => (MaxTokens, null),
        InferenceApi.Responses => (null, MaxOutputTokens),
        _ => (null, null),
    };
}

/// <summary>
/// Reads and rewrites OpenAI-compatible request bodies. Strict JSON (RFC 8259: no comments, no trailing commas),
/// a top-level object, and completion bounds that are non-negative integers or <c>null</c>; anything else is refused
/// before anything is reserved (an upstream that coerced <c>"9999"</c> or <c>9999.0</c> would otherwise run with a
/// bound the gate never held). Ordinal, culture-free.
/// </summary>
internal static class InferenceRequestBody
{
    private static readonly JsonReaderOptions ReaderOptions = new() { CommentHandling = JsonCommentHandling.Disallow, AllowTrailingCommas = false, MaxDepth = 256 };

    /// <summary>Reads the facts the reservation needs.</summary>
    /// <returns><see langword="null"/> on success, else what is wrong (for the 400 body; names only the member).</returns>
    public static string? TryRead(ReadOnlySpan<byte> json, out InferenceRequestFacts facts)
    {
        facts = default;
        long? maxTokens = null;
        long? maxCompletion = null;
        long? maxOutput = null;
        long? choices = null;
        bool background = false;
        bool stream = false;
        try
        {
            var reader = new Utf8JsonReader(json, ReaderOptions);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return "The request body must be a JSON object.";
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("max_tokens"u8))
                {
                    if (!TryReadBound(ref reader, ref maxTokens))
                    {
                        return "max_tokens must be a non-negative integer.";
                    }
                }
                else if (reader.ValueTextEquals("max_completion_tokens"u8))
                {
                    if (!TryReadBound(ref reader, ref maxCompletion))
                    {
                        return "max_completion_tokens must be a non-negative integer.";
                    }
                }
                else if (reader.ValueTextEquals("max_output_tokens"u8))
                {
                    if (!TryReadBound(ref reader, ref maxOutput))
                    {
                        return "max_output_tokens must be a non-negative integer.";
                    }
                }
                else if (reader.ValueTextEquals("stream"u8))
                {
                    reader.Read();
                    stream |= reader.TokenType == JsonTokenType.True;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("n"u8) || reader.ValueTextEquals("best_of"u8))
                {
                    if (!TryReadBound(ref reader, ref choices))
                    {
                        return "n and best_of must be non-negative integers.";
                    }
                }
                else if (reader.ValueTextEquals("background"u8))
                {
                    reader.Read();
                    background |= reader.TokenType == JsonTokenType.True;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("stream_options"u8))
                {
                    // WriteWithIncludeUsage compares these member names after the reservation: compare them here
                    // first, so a name it cannot compare (an escaped lone surrogate) is refused before anything is held.
                    reader.Read();
                    if (reader.TokenType == JsonTokenType.StartObject)
                    {
                        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                        {
                            _ = reader.ValueTextEquals("include_usage"u8);
                            reader.Read();
                            reader.Skip();
                        }
                    }
                    else
                    {
                        reader.Skip();
                    }
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }

            // The object is closed; anything after it (other than whitespace) throws here.
            if (reader.Read())
            {
                return "The request body must be one JSON object.";
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // Utf8JsonReader.ValueTextEquals throws InvalidOperationException for an escaped name that does not
            // unescape to valid UTF-16 (a lone surrogate such as "\uD800"): invalid JSON text for this gate.
            return "The request body is not valid JSON.";
        }

        facts = new InferenceRequestFacts(maxTokens, maxCompletion, stream, maxOutput, choices, background);
        return null;
    }

    /// <summary>Reads a completion bound: an integer (a huge one saturates at <see cref="Budgets.BudgetStore.MaxTokens"/>)
    /// or <c>null</c> (absent); keeps the largest over duplicates.</summary>
    private static bool TryReadBound(ref Utf8JsonReader reader, ref long? bound)
    {
        reader.Read();
        if (reader.TokenType == JsonTokenType.Null)
        {
            return true;
        }

        if (reader.TokenType != JsonTokenType.Number)
        {
            reader.Skip();
            return false;
        }

        if (reader.ValueSpan.IndexOfAny("-.eE"u8) >= 0)
        {
            return false;
        }

        long value = reader.TryGetInt64(out long parsed) && parsed <= Budgets.BudgetStore.MaxTokens ? parsed : Budgets.BudgetStore.MaxTokens;
        bound = bound is { } existing ? Math.Max(existing, value) : value;
        return true;
    }

    /// <summary>
    /// Returns the body with <c>stream_options.include_usage</c> set to <c>true</c>: every <c>include_usage</c> of
    /// every top-level <c>stream_options</c> object becomes <c>true</c>, one is added to an object without it, a
    /// <c>null</c> <c>stream_options</c> becomes <c>{"include_usage":true}</c>, and a body without one gets
    /// <c>"stream_options":{"include_usage":true}</c> appended. Every other byte is kept as sent. A
    /// <c>stream_options</c> of another type is left alone (the upstream refuses it).
    /// </summary>
    /// <param name="json">A body <see cref="TryRead"/> accepted.</param>
    /// <param name="output">Receives the rewritten body.</param>
    public static void WriteWithIncludeUsage(ReadOnlySpan<byte> json, IBufferWriter<byte> output)
    {
        var reader = new Utf8JsonReader(json, ReaderOptions);
        reader.Read();
        int copied = 0;
        bool sawStreamOptions = false;
        bool anyMember = false;
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            anyMember = true;
            bool isStreamOptions = reader.ValueTextEquals("stream_options"u8);
            reader.Read();
            if (!isStreamOptions)
            {
                reader.Skip();
                continue;
            }

            sawStreamOptions = true;
            int valueStart = (int)reader.TokenStartIndex;
            if (reader.TokenType == JsonTokenType.Null)
            {
                Copy(json, ref copied, valueStart, output);
                output.Write("{\"include_usage\":true}"u8);
                copied = (int)reader.BytesConsumed;
                continue;
            }

            if (reader.TokenType != JsonTokenType.StartObject)
            {
                reader.Skip();
                continue;
            }

            bool sawIncludeUsage = false;
            bool empty = true;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                empty = false;
                bool isIncludeUsage = reader.ValueTextEquals("include_usage"u8);
                reader.Read();
                if (isIncludeUsage)
                {
                    sawIncludeUsage = true;
                    int start = (int)reader.TokenStartIndex;
                    reader.Skip();
                    Copy(json, ref copied, start, output);
                    output.Write("true"u8);
                    copied = (int)reader.BytesConsumed;
                }
                else
                {
                    reader.Skip();
                }
            }

            if (!sawIncludeUsage)
            {
                // Right after the object's '{'.
                Copy(json, ref copied, valueStart + 1, output);
                output.Write(empty ? "\"include_usage\":true"u8 : "\"include_usage\":true,"u8);
            }
        }

        // reader is on the top-level EndObject.
        int end = (int)reader.TokenStartIndex;
        Copy(json, ref copied, end, output);
        if (!sawStreamOptions)
        {
            output.Write(anyMember ? ",\"stream_options\":{\"include_usage\":true}"u8 : "\"stream_options\":{\"include_usage\":true}"u8);
        }

        Copy(json, ref copied, json.Length, output);
    }

    /// <summary>
    /// Writes <paramref name="json"/> (a request <see cref="TryRead"/> accepted) with the top-level member
    /// <paramref name="name"/> set to <paramref name="value"/>: a <c>null</c> value of that member is replaced, and a
    /// missing member is appended; every other byte is kept as sent. The caller calls it only when the request names no
    /// bound (a numeric member of that name is left as it is).
    /// </summary>
    public static void WriteWithBound(ReadOnlySpan<byte> json, ReadOnlySpan<byte> name, long value, IBufferWriter<byte> output)
    {
        var reader = new Utf8JsonReader(json, ReaderOptions);
        reader.Read();
        int copied = 0;
        bool seen = false;
        bool anyMember = false;
        Span<byte> digits = stackalloc byte[20];
        bool formatted = System.Buffers.Text.Utf8Formatter.TryFormat(value, digits, out int written);
        System.Diagnostics.Debug.Assert(formatted, "a long always fits in 20 bytes");
        ReadOnlySpan<byte> number = digits[..written];
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            anyMember = true;
            bool isBound = reader.ValueTextEquals(name);
            reader.Read();
            if (isBound)
            {
                seen = true;
                if (reader.TokenType == JsonTokenType.Null)
                {
                    Copy(json, ref copied, (int)reader.TokenStartIndex, output);
                    output.Write(number);
                    copied = (int)reader.BytesConsumed;
                    continue;
                }
            }

            reader.Skip();
        }

        // reader is on the top-level EndObject.
        Copy(json, ref copied, (int)reader.TokenStartIndex, output);
        if (!seen)
        {
            if (anyMember)
            {
                output.Write(","u8);
            }

            output.Write("\""u8);
            output.Write(name);
            output.Write("\":"u8);
            output.Write(number);
        }

        Copy(json, ref copied, json.Length, output);
    }

    private static void Copy(ReadOnlySpan<byte> json, ref int copied, int upTo, IBufferWriter<byte> output)
    {
        if (upTo > copied)
        {
            output.Write(json[copied..upTo]);
            copied = upTo;
        }
    }
}
