using System.Buffers;
using System.Text;

namespace Kars.Policy.AspNetCore.Tests.Budgets;

public sealed class InferenceRequestBodyTests
{
    private static string Rewrite(string json)
    {
        var writer = new ArrayBufferWriter<byte>();
        InferenceRequestBody.WriteWithIncludeUsage(Encoding.UTF8.GetBytes(json), writer);
        return Encoding.UTF8.GetString(writer.WrittenSpan);
    }

    [Theory]
    [InlineData("""{"stream":true}""", """{"stream":true,"stream_options":{"include_usage":true}}""")]
    [InlineData("""{ "stream" : true , "x" : [1, 2] }""", """{ "stream" : true , "x" : [1, 2] ,"stream_options":{"include_usage":true}}""")]
    [InlineData("""{"stream":true,"stream_options":null}""", """{"stream":true,"stream_options":{"include_usage":true}}""")]
    [InlineData("""{"stream":true,"stream_options":{}}""", """{"stream":true,"stream_options":{"include_usage":true}}""")]
    [InlineData("""{"stream":true,"stream_options":{"include_usage":false}}""", """{"stream":true,"stream_options":{"include_usage":true}}""")]
    [InlineData("""{"stream_options":{"x":1,"include_usage":null,"include_usage":false},"stream":true}""", """{"stream_options":{"x":1,"include_usage":true,"include_usage":true},"stream":true}""")]
    [InlineData("""{"stream_options":{"x":{"include_usage":false}},"stream":true}""", """{"stream_options":{"include_usage":true,"x":{"include_usage":false}},"stream":true}""")]
    [InlineData("""{"stream":true,"stream_options":{"include_usage":false},"stream_options":{"y":2}}""", """{"stream":true,"stream_options":{"include_usage":true},"stream_options":{"include_usage":true,"y":2}}""")]
    [InlineData("""{"stream":true,"stream_options":"x"}""", """{"stream":true,"stream_options":"x"}""")]
    [InlineData("""{"m":"\u00e9\"}","stream":true}""", """{"m":"\u00e9\"}","stream":true,"stream_options":{"include_usage":true}}""")]
    public void IncludeUsage_SetAndEveryOtherByteKept(string input, string expected)
    {
        Rewrite(input).Should().Be(expected);
    }

    [Fact]
    public void Facts_LargestBoundAndAnyStreamTrue()
    {
        InferenceRequestBody.TryRead("""{"max_tokens":5,"max_completion_tokens":null,"max_output_tokens":9,"stream":false,"stream":true}"""u8, out var facts).Should().BeNull();

        facts.Should().Be(new InferenceRequestFacts(5, null, true, 9));
    }

    [Fact]
    public void Facts_EscapedNamesAreRead()
    {
        InferenceRequestBody.TryRead("""{"max\u005ftokens":77}"""u8, out var facts).Should().BeNull();

        facts.MaxTokens.Should().Be(77);
    }

    [Fact]
    public void Facts_HugeIntegerSaturates()
    {
        InferenceRequestBody.TryRead("""{"max_tokens":123456789012345678901234567890}"""u8, out var facts).Should().BeNull();

        facts.MaxTokens.Should().Be(Kars.Policy.Budgets.BudgetStore.MaxTokens);
    }
}
