using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Kars.Policy.AI;

/// <summary>
/// The OpenTelemetry GenAI client metric <c>gen_ai.client.token.usage</c> (semantic conventions v1.37+:
/// <c>gen_ai.provider.name</c> in place of the older <c>gen_ai.system</c>), on the <c>Kars.Policy</c> meter.
/// </summary>
/// <remarks>Tags carry only the operation, the provider name, the model names and the token type; model names that
/// do not look like model names (empty, longer than 128 characters, or with characters other than ASCII letters,
/// digits and <c>. _ - : /</c>) are recorded as <c>_OTHER</c>, so no prompt text or secret reaches a tag and
/// cardinality stays bounded by what the host's models are called. No host name, address or URI is ever a tag.</remarks>
internal sealed class GenAITokenUsage : IDisposable
{
    /// <summary>The meter name shared with the engine's instruments.</summary>
    internal const string MeterName = "Kars.Policy";

    /// <summary>The instrument name.</summary>
    internal const string InstrumentName = "gen_ai.client.token.usage";

    internal const string Other = "_OTHER";

    // The boundaries the semantic conventions recommend for this histogram.
    private static readonly long[] s_buckets = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];

    private readonly Meter? _ownMeter;
    private readonly Histogram<long> _histogram;

    public GenAITokenUsage(IMeterFactory? factory)
    {
        Meter meter;
        if (factory is null)
        {
            meter = _ownMeter = new Meter(MeterName);
        }
        else
        {
            meter = factory.Create(new MeterOptions(MeterName));
        }

        _histogram = meter.CreateHistogram(
            InstrumentName,
            unit: "{token}",
            description: "Number of input and output tokens used.",
            tags: null,
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = s_buckets });
    }

    /// <summary>Records the input and output counts that are known (a missing count is not recorded).</summary>
    public void Record(ChatUsage usage, string? provider, string? requestModel, string? responseModel)
    {
        if (!_histogram.Enabled)
        {
            return;
        }

        if (usage.Input is { } input)
        {
            _histogram.Record(input, Tags("input", provider, requestModel, responseModel));
        }

        if (usage.Output is { } output)
        {
            _histogram.Record(output, Tags("output", provider, requestModel, responseModel));
        }
    }

    public void Dispose() => _ownMeter?.Dispose();

    /// <summary>A model or provider name fit for a tag, or <see cref="Other"/>.</summary>
    internal static string Sanitize(string value)
    {
        if (value.Length is 0 or > 128)
        {
            return Other;
        }

        foreach (char c in value)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or ':' or '/'))
            {
                return Other;
            }
        }

        return value;
    }

    private static TagList Tags(string tokenType, string? provider, string? requestModel, string? responseModel)
    {
        var tags = new TagList
        {
            { "gen_ai.operation.name", "chat" },
            { "gen_ai.token.type", tokenType },
        };
        if (provider is not null)
        {
            tags.Add("gen_ai.provider.name", Sanitize(provider));
        }

        if (requestModel is not null)
        {
            tags.Add("gen_ai.request.model", Sanitize(requestModel));
        }

        if (responseModel is not null)
        {
            tags.Add("gen_ai.response.model", Sanitize(responseModel));
        }

        return tags;
    }
}
