namespace Kars.Policy.AspNetCore;

/// <summary>
/// Strict evidence of usage in a streamed response: usage counts only when the stream ends with a clean terminal
/// event of its API, with nothing after it and no error event before it.
/// <list type="bullet">
/// <item><description>Chat Completions and Completions: the <c>usage</c> of the chunks (the last one with
/// <c>stream_options.include_usage</c>), then <c>data: [DONE]</c>.</description></item>
/// <item><description>Responses: <c>response.completed</c> (or <c>response.incomplete</c>, which ends a response cut
/// at its output bound and still reports its usage) with <c>response.usage</c>.</description></item>
/// <item><description>Anthropic Messages: the <c>usage</c> of <c>message_start</c>'s message and of
/// <c>message_delta</c> (cumulative), then <c>message_stop</c>.</description></item>
/// </list>
/// Any event that is not well-formed JSON, an error event, or any event after the terminal one makes the stream
/// unclean, and the whole hold is charged.
/// </summary>
internal sealed class StreamedUsage
{
    private readonly InferenceApi _api;
    private UsageCounts _usage;
    private bool _terminal;
    private bool _broken;

    public StreamedUsage(InferenceApi api) => _api = api;

    /// <summary>Gets the usage when the stream ended cleanly with usage; otherwise <see langword="null"/>.</summary>
    public long? CleanUsage => _terminal && !_broken && _usage.Any ? _usage.Charge : null;

    /// <summary>Gets the usage the stream reported before it ended or broke (Anthropic's <c>message_start</c> input,
    /// the cumulative <c>message_delta</c>, a Chat usage chunk before <c>[DONE]</c>), or <see langword="null"/> when
    /// none was seen. Not evidence of the whole usage: a lower bound of what the upstream counted, which the gate
    /// charges when it exceeds the hold.</summary>
    public long? ObservedUsage => _usage.Any ? _usage.Charge : null;

    /// <summary>Handles one dispatched event's data.</summary>
    public void OnEvent(ReadOnlySpan<byte> data)
    {
        if (_broken)
        {
            return;
        }

        if (_terminal)
        {
            _broken = true;
            return;
        }

        if ((_api is InferenceApi.ChatCompletions or InferenceApi.Completions or InferenceApi.Embeddings)
            && data.SequenceEqual("[DONE]"u8))
        {
            _terminal = true;
            return;
        }

        if (!UsageJson.TryRead(data, out UsageFacts facts) || facts.HasError
            || facts.Type is UsageEventType.Error or UsageEventType.ResponseFailed)
        {
            _broken = true;
            return;
        }

        switch (_api)
        {
            case InferenceApi.Responses:
                if (facts.Type is UsageEventType.ResponseCompleted or UsageEventType.ResponseIncomplete)
                {
                    _usage.Merge(facts.NestedUsage);
                    _terminal = true;
                    _broken |= !facts.NestedUsage.Any;
                }

                break;
            case InferenceApi.AnthropicMessages:
                if (facts.Type == UsageEventType.MessageStart)
                {
                    _usage.Merge(facts.NestedUsage);
                }
                else if (facts.Type == UsageEventType.MessageDelta)
                {
                    _usage.Merge(facts.Usage);
                }
                else if (facts.Type == UsageEventType.MessageStop)
                {
                    _terminal = true;
                }

                break;
            default:
                _usage.Merge(facts.Usage);
                break;
        }
    }
}
