namespace Kars.Policy.AspNetCore;

/// <summary>The API shape of a metered route, decided by how its path ends.</summary>
internal enum InferenceApi
{
    /// <summary>OpenAI Chat Completions (also any path with an unknown ending).</summary>
    ChatCompletions = 0,

    /// <summary>OpenAI (legacy) Completions.</summary>
    Completions = 1,

    /// <summary>OpenAI Responses.</summary>
    Responses = 2,

    /// <summary>OpenAI Embeddings (no completion tokens, never streamed).</summary>
    Embeddings = 3,

    /// <summary>Anthropic Messages.</summary>
    AnthropicMessages = 4,
}

/// <summary>Maps a route to its <see cref="InferenceApi"/>.</summary>
internal static class InferenceApis
{
    public static InferenceApi FromPath(string path)
    {
        if (path.EndsWith("/chat/completions", StringComparison.OrdinalIgnoreCase))
        {
            return InferenceApi.ChatCompletions;
        }

        if (path.EndsWith("/completions", StringComparison.OrdinalIgnoreCase))
        {
            return InferenceApi.Completions;
        }

        if (path.EndsWith("/responses", StringComparison.OrdinalIgnoreCase))
        {
            return InferenceApi.Responses;
        }

        if (path.EndsWith("/embeddings", StringComparison.OrdinalIgnoreCase))
        {
            return InferenceApi.Embeddings;
        }

        return path.EndsWith("/messages", StringComparison.OrdinalIgnoreCase) ? InferenceApi.AnthropicMessages : InferenceApi.ChatCompletions;
    }

    /// <summary>The member the gate writes the reserved completion bound into when a request names none, so that the
    /// hold stays an upper bound for a response that ends without usage: <c>max_completion_tokens</c> for Chat
    /// Completions (the member every current OpenAI chat model takes), <c>max_output_tokens</c> for Responses,
    /// <c>max_tokens</c> for Completions and Anthropic Messages; none for Embeddings.</summary>
    public static ReadOnlySpan<byte> BoundMember(this InferenceApi api) => api switch
    {
        InferenceApi.ChatCompletions => "max_completion_tokens"u8,
        InferenceApi.Responses => "max_output_tokens"u8,
        InferenceApi.Completions or InferenceApi.AnthropicMessages => "max_tokens"u8,
        _ => default,
    };

    /// <summary>Whether a streamed request of this API takes <c>stream_options.include_usage</c>.</summary>
    public static bool TakesIncludeUsage(this InferenceApi api) => api is InferenceApi.ChatCompletions or InferenceApi.Completions;
}
