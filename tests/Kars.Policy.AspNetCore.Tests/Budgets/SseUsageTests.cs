using System.Text;
using CsCheck;

namespace Kars.Policy.AspNetCore.Tests.Budgets;

/// <summary>The incremental SSE reader and the strict usage evidence, at every split of the stream.</summary>
public sealed class SseUsageTests
{
    private const string Chat =
        "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"h\u00e9llo \u4e16\u754c\"}}],\"usage\":null}\r\n\r\n" +
        ": keep-alive comment\n\n" +
        "data: {\"id\":\"c\",\"choices\":[],\r\ndata: \"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\r\r" +
        "data: [DONE]\n\n";

    private const string Responses =
        "\uFEFFevent: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\n" +
        "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":3,\"total_tokens\":10}}}\n\n";

    private const string Anthropic =
        "event: message_start\r\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"cache_read_input_tokens\":2,\"output_tokens\":1}}}\r\n\r\n" +
        "event: message_delta\r\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\r\n\r\n" +
        "event: message_stop\r\ndata: {\"type\":\"message_stop\"}\r\n\r\n";

    public static TheoryData<string, int, long> Streams => new()
    {
        { Chat, (int)InferenceApi.ChatCompletions, 13 },
        { Responses, (int)InferenceApi.Responses, 10 },
        { Anthropic, (int)InferenceApi.AnthropicMessages, 42 },
    };

    private static (List<string> Events, long? Usage, bool Overflowed) Run(byte[] bytes, InferenceApi api, IEnumerable<int> cuts, int max = 1 << 20)
    {
        var events = new List<string>();
        var usage = new StreamedUsage(api);
        using var reader = new SseEventReader(max, data =>
        {
            events.Add(Encoding.UTF8.GetString(data));
            usage.OnEvent(data);
        });
        int start = 0;
        foreach (int cut in cuts.Where(c => c > 0 && c < bytes.Length).Distinct().Order())
        {
            reader.Feed(bytes.AsSpan(start, cut - start));
            start = cut;
        }

        reader.Feed(bytes.AsSpan(start));
        return (events, usage.CleanUsage, reader.Overflowed);
    }

    [Theory]
    [MemberData(nameof(Streams))]
    public void WholeStream_SettlesExpectedUsage(string stream, int api, long expected)
    {
        var (events, usage, _) = Run(Encoding.UTF8.GetBytes(stream), (InferenceApi)api, []);

        usage.Should().Be(expected);
        events.Should().NotBeEmpty();
    }

    [Theory]
    [MemberData(nameof(Streams))]
    public void SplitAtEveryByteBoundary_SameEventsAndUsage(string stream, int api, long expected)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(stream);
        var whole = Run(bytes, (InferenceApi)api, []);

        for (int i = 0; i <= bytes.Length; i++)
        {
            var split = Run(bytes, (InferenceApi)api, [i]);
            split.Events.Should().Equal(whole.Events, "split at byte {0}", i);
            split.Usage.Should().Be(expected, "split at byte {0}", i);
        }

        var bytewise = Run(bytes, (InferenceApi)api, Enumerable.Range(1, bytes.Length));
        bytewise.Events.Should().Equal(whole.Events);
        bytewise.Usage.Should().Be(expected);
    }

    [Theory]
    [MemberData(nameof(Streams))]
    public void RandomSplits_SameEventsAndUsage(string stream, int api, long expected)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(stream);
        var whole = Run(bytes, (InferenceApi)api, []);

        Gen.Int[0, bytes.Length].Array[0, 40].Sample(cuts =>
        {
            var split = Run(bytes, (InferenceApi)api, cuts);
            return split.Usage == expected && split.Events.SequenceEqual(whole.Events);
        }, iter: 2_000);
    }

    [Fact]
    public void SteadyState_ReaderAndUsageParse_AllocateNothing()
    {
        byte[] bytes = Encoding.UTF8.GetBytes(Chat + Chat);
        long charged = 0;
        using var reader = new SseEventReader(1 << 20, data =>
        {
            if (UsageJson.TryRead(data, out UsageFacts facts))
            {
                charged += facts.Usage.Charge;
            }
        });

        long allocated = Kars.Policy.Tests.SteadyStateAllocation.Measure(() =>
        {
            for (int i = 0; i < bytes.Length; i += 7)
            {
                reader.Feed(bytes.AsSpan(i, Math.Min(7, bytes.Length - i)));
            }
        });

        allocated.Should().Be(0);
        charged.Should().BeGreaterThan(0);
    }

    [Fact]
    public void CrAtChunkEndThenLf_IsOneLineEnd()
    {
        byte[] bytes = Encoding.UTF8.GetBytes("data: a\r\ndata: b\r\n\r\n");
        var whole = Run(bytes, InferenceApi.ChatCompletions, []);
        var split = Run(bytes, InferenceApi.ChatCompletions, [8]);

        whole.Events.Should().Equal("a\nb");
        split.Events.Should().Equal("a\nb");
    }

    [Fact]
    public void LineLongerThanCap_Overflows_NoUsage()
    {
        string stream = "data: {\"usage\":{\"total_tokens\":1},\"pad\":\"" + new string('x', 300) + "\"}\n\ndata: [DONE]\n\n";

        var result = Run(Encoding.UTF8.GetBytes(stream), InferenceApi.ChatCompletions, [5, 50, 100], max: 128);

        result.Overflowed.Should().BeTrue();
    }

    [Fact]
    public void EventLongerThanCap_OverManyLines_Overflows()
    {
        var builder = new StringBuilder();
        for (int i = 0; i < 100; i++)
        {
            builder.Append("data: 0123456789\n");
        }

        var result = Run(Encoding.UTF8.GetBytes(builder.Append('\n').ToString()), InferenceApi.ChatCompletions, [], max: 256);

        result.Overflowed.Should().BeTrue();
        result.Events.Should().BeEmpty();
    }

    [Theory]
    [InlineData("data: {\"choices\":[],\"usage\":{\"total_tokens\":5}}\n\n", "no [DONE]")]
    [InlineData("data: {\"choices\":[],\"usage\":{\"total_tokens\":5}}\n\ndata: [DONE]", "[DONE] not terminated by a blank line")]
    [InlineData("data: {\"choices\":[],\"usage\":{\"total_tokens\":5}}\n\ndata: [DONE]\n\ndata: {}\n\n", "an event after [DONE]")]
    [InlineData("data: {\"error\":{\"message\":\"x\"}}\n\ndata: {\"usage\":{\"total_tokens\":5}}\n\ndata: [DONE]\n\n", "an error event")]
    [InlineData("data: {\"usage\":{\"total_tokens\":-5}}\n\ndata: [DONE]\n\n", "negative usage")]
    [InlineData("data: {\"usage\":{\"total_tokens\":\"5\"}}\n\ndata: [DONE]\n\n", "usage as a string")]
    [InlineData("data: {\"choices\":[]}\n\ndata: [DONE]\n\n", "no usage at all")]
    [InlineData("data: {\"usage\":{\"total_tokens\":5}} trailing\n\ndata: [DONE]\n\n", "trailing bytes after the JSON")]
    public void UncleanChatStreams_GiveNoUsage(string stream, string because)
    {
        Run(Encoding.UTF8.GetBytes(stream), InferenceApi.ChatCompletions, []).Usage.Should().BeNull(because);
    }

    [Fact]
    public void ResponsesFailed_GivesNoUsage()
    {
        const string stream = "data: {\"type\":\"response.failed\",\"response\":{\"usage\":{\"total_tokens\":3}}}\n\n";

        Run(Encoding.UTF8.GetBytes(stream), InferenceApi.Responses, []).Usage.Should().BeNull();
    }

    [Fact]
    public void ResponsesCompletedWithoutUsage_GivesNoUsage()
    {
        const string stream = "data: {\"type\":\"response.completed\",\"response\":{\"usage\":null}}\n\n";

        Run(Encoding.UTF8.GetBytes(stream), InferenceApi.Responses, []).Usage.Should().BeNull();
    }

    [Fact]
    public void AnthropicWithoutStop_GivesNoUsage()
    {
        Run(Encoding.UTF8.GetBytes(Anthropic[..Anthropic.IndexOf("event: message_stop", StringComparison.Ordinal)]), InferenceApi.AnthropicMessages, []).Usage.Should().BeNull();
    }

    [Fact]
    public void TotalBelowParts_ChargesTheParts()
    {
        const string stream = "data: {\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":2}}\n\ndata: [DONE]\n\n";

        Run(Encoding.UTF8.GetBytes(stream), InferenceApi.ChatCompletions, []).Usage.Should().Be(13);
    }
}
