using System.Globalization;
using System.Text;
using System.Text.Json;
using Kars.Policy.Budgets;
using Microsoft.Extensions.AI;

namespace Kars.Policy.AI;

/// <summary>The built-in prompt estimate (see <see cref="TokenBudgetChatClientOptions.PromptTokenEstimator"/>).</summary>
internal static class PromptTokenEstimate
{
    /// <summary>Tokens counted per message for the chat format around it (role, separators).</summary>
    internal const long PerMessage = 4;

    /// <summary>Estimates the prompt of a call, saturating at <see cref="BudgetStore.MaxTokens"/>.</summary>
    public static long Estimate(IEnumerable<ChatMessage> messages, ChatOptions? options, long nonTextContentTokens)
    {
        long tokens = 0;
        foreach (ChatMessage message in messages)
        {
            tokens = Add(tokens, PerMessage);
            tokens = Add(tokens, Bytes(message.AuthorName));
            foreach (AIContent content in message.Contents)
            {
                tokens = Add(tokens, content switch
                {
                    TextContent text => Bytes(text.Text),
                    TextReasoningContent reasoning => Bytes(reasoning.Text),
                    FunctionCallContent call => Add(Add(Bytes(call.Name), Bytes(call.CallId)), ArgumentBytes(call.Arguments)),
                    FunctionResultContent result => Add(Bytes(result.CallId), Bytes(Text(result.Result))),
                    UsageContent => 0,
                    _ => nonTextContentTokens,
                });
            }
        }

        if (options is not null)
        {
            tokens = Add(tokens, Bytes(options.Instructions));
            if (options.Tools is { } tools)
            {
                foreach (AITool tool in tools)
                {
                    tokens = Add(tokens, Add(Bytes(tool.Name), Bytes(tool.Description)));
                    if (tool is AIFunctionDeclaration function)
                    {
                        tokens = Add(tokens, Bytes(function.JsonSchema.GetRawText()));
                    }
                }
            }
        }

        return Math.Min(tokens, BudgetStore.MaxTokens);
    }

    private static long ArgumentBytes(IDictionary<string, object?>? arguments)
    {
        long bytes = 0;
        if (arguments is not null)
        {
            foreach (KeyValuePair<string, object?> pair in arguments)
            {
                bytes = Add(bytes, Add(Bytes(pair.Key), Bytes(Text(pair.Value))));
            }
        }

        return bytes;
    }

    /// <summary>The text of a value, the same on every machine (invariant culture, raw JSON).</summary>
    private static string? Text(object? value) => value switch
    {
        null => null,
        string s => s,
        JsonElement json => json.GetRawText(),
        IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString(),
    };

    private static long Bytes(string? text) => string.IsNullOrEmpty(text) ? 0 : Encoding.UTF8.GetByteCount(text);

    private static long Add(long a, long b) => ChatUsage.Add(a, b);
}
