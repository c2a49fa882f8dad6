using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http.Features;

namespace InferenceRouter;

/// <summary>What the fake upstream saw and answered for one call.</summary>
/// <param name="Path">The request path.</param>
/// <param name="Model">The requested model.</param>
/// <param name="Stream">Whether the client asked for a stream.</param>
/// <param name="IncludeUsage">Whether <c>stream_options.include_usage</c> was <see langword="true"/>.</param>
/// <param name="Usage">The usage the fake reported, or <see langword="null"/> when it sent none (a stream without
/// <c>include_usage</c>).</param>
public sealed record FakeUpstreamCall(string Path, string? Model, bool Stream, bool IncludeUsage, FakeUsage? Usage);

/// <summary>Token usage as the fake reported it.</summary>
/// <param name="PromptTokens">Prompt (input) tokens.</param>
/// <param name="CompletionTokens">Completion (output) tokens.</param>
public sealed record FakeUsage(int PromptTokens, int CompletionTokens)
{
    /// <summary>Gets the total.</summary>
    public int TotalTokens => PromptTokens + CompletionTokens;
}

/// <summary>
/// An OpenAI-compatible upstream on Kestrel, 127.0.0.1 and a free port, for the demo and the tests. It answers
/// <c>POST /v1/chat/completions</c> with <c>echo: &lt;last user message&gt;</c> (JSON with <c>usage</c>, or SSE whose
/// final usage chunk is sent only when the request asked for it with <c>stream_options.include_usage</c>) and
/// <c>POST /v1/responses</c> (JSON). It requires the router's upstream key and records every call.
/// </summary>
/// <remarks>Token counts are deterministic: one prompt token per word of every message plus 3 per message, one
/// completion token per word of the answer.</remarks>
public sealed class FakeUpstream : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<FakeUpstreamCall> _calls = new();
    private readonly string _apiKey;

    private FakeUpstream(WebApplication app, string apiKey)
    {
        _app = app;
        _apiKey = apiKey;
    }

    /// <summary>Gets the port it listens on (127.0.0.1).</summary>
    public int Port { get; private set; }

    /// <summary>Gets the calls it answered, in order.</summary>
    public IReadOnlyList<FakeUpstreamCall> Calls => [.. _calls];

    /// <summary>Gets or sets a gate: when set, a stream stops after its first content chunk until the gate completes
    /// (a test proves with it that the router passes events on without waiting for the end).</summary>
    public TaskCompletionSource? HoldStreamAfterFirstChunk { get; set; }

    /// <summary>Starts a fake upstream.</summary>
    /// <param name="apiKey">The key the router must present.</param>
    /// <returns>The running fake.</returns>
    public static async Task<FakeUpstream> StartAsync(string apiKey)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        var fake = new FakeUpstream(app, apiKey);
        app.MapPost("/v1/chat/completions", fake.ChatAsync);
        app.MapPost("/v1/responses", fake.ResponsesAsync);
        await app.StartAsync();
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        fake.Port = new Uri(address).Port;
        return fake;
    }

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        HoldStreamAfterFirstChunk?.TrySetResult();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private bool Authorized(HttpContext context) =>
        string.Equals(context.Request.Headers.Authorization.ToString(), "Bearer " + _apiKey, StringComparison.Ordinal);

    private async Task ChatAsync(HttpContext context)
    {
        if (!Authorized(context))
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            return;
        }

        using JsonDocument request = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
        JsonElement root = request.RootElement;
        string? model = root.TryGetProperty("model", out JsonElement m) ? m.GetString() : null;
        bool stream = root.TryGetProperty("stream", out JsonElement s) && s.ValueKind == JsonValueKind.True;
        bool includeUsage = root.TryGetProperty("stream_options", out JsonElement so) && so.ValueKind == JsonValueKind.Object
            && so.TryGetProperty("include_usage", out JsonElement iu) && iu.ValueKind == JsonValueKind.True;

        int promptTokens = 0;
        string lastUser = string.Empty;
        foreach (JsonElement message in root.GetProperty("messages").EnumerateArray())
        {
            string text = MessageText(message);
            promptTokens += 3 + Words(text).Length;
            if (message.TryGetProperty("role", out JsonElement role) && role.GetString() == "user")
            {
                lastUser = text;
            }
        }

        string[] answer = Words("echo: " + lastUser);
        var usage = new FakeUsage(promptTokens, answer.Length);
        if (!stream)
        {
            _calls.Enqueue(new FakeUpstreamCall("/v1/chat/completions", model, false, includeUsage, usage));
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(ChatCompletionJson(model, string.Join(' ', answer), usage), context.RequestAborted);
            return;
        }

        _calls.Enqueue(new FakeUpstreamCall("/v1/chat/completions", model, true, includeUsage, includeUsage ? usage : null));
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        context.Response.ContentType = "text/event-stream";
        await SendEventAsync(context, Chunk(model, w => w.WriteString("role", "assistant"), null));
        for (int i = 0; i < answer.Length; i++)
        {
            string piece = i == 0 ? answer[i] : " " + answer[i];
            await SendEventAsync(context, Chunk(model, w => w.WriteString("content", piece), null));
            if (i == 0 && HoldStreamAfterFirstChunk is { } gate)
            {
                await gate.Task.WaitAsync(context.RequestAborted);
            }
        }

        await SendEventAsync(context, Chunk(model, null, "stop"));
        if (includeUsage)
        {
            await SendEventAsync(context, UsageChunk(model, usage));
        }

        await SendEventAsync(context, "[DONE]");
    }

    private async Task ResponsesAsync(HttpContext context)
    {
        if (!Authorized(context))
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            return;
        }

        using JsonDocument request = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
        JsonElement root = request.RootElement;
        string? model = root.TryGetProperty("model", out JsonElement m) ? m.GetString() : null;
        string input = root.TryGetProperty("input", out JsonElement i) && i.ValueKind == JsonValueKind.String ? i.GetString()! : string.Empty;
        string[] answer = Words("echo: " + input);
        var usage = new FakeUsage(3 + Words(input).Length, answer.Length);
        _calls.Enqueue(new FakeUpstreamCall("/v1/responses", model, false, false, usage));

        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("id", "resp_fake");
            w.WriteString("object", "response");
            w.WriteNumber("created_at", 1_764_460_800);
            w.WriteString("status", "completed");
            w.WriteString("model", model);
            w.WriteStartArray("output");
            w.WriteStartObject();
            w.WriteString("type", "message");
            w.WriteString("id", "msg_fake");
            w.WriteString("status", "completed");
            w.WriteString("role", "assistant");
            w.WriteStartArray("content");
            w.WriteStartObject();
            w.WriteString("type", "output_text");
            w.WriteString("text", string.Join(' ', answer));
            w.WriteStartArray("annotations");
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndArray();
            w.WriteStartObject("usage");
            w.WriteNumber("input_tokens", usage.PromptTokens);
            w.WriteNumber("output_tokens", usage.CompletionTokens);
            w.WriteNumber("total_tokens", usage.TotalTokens);
            w.WriteEndObject();
            w.WriteEndObject();
        }

        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync(buffer.ToArray(), context.RequestAborted);
    }

    private static string MessageText(JsonElement message)
    {
        if (!message.TryGetProperty("content", out JsonElement content))
        {
            return string.Empty;
        }

        if (content.ValueKind == JsonValueKind.String)
        {
            return content.GetString()!;
        }

        var text = new StringBuilder();
        if (content.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement part in content.EnumerateArray())
            {
                if (part.TryGetProperty("text", out JsonElement t) && t.ValueKind == JsonValueKind.String)
                {
                    text.Append(t.GetString()).Append(' ');
                }
            }
        }

        return text.ToString();
    }

    private static string[] Words(string text) => text.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static async Task SendEventAsync(HttpContext context, string data)
    {
        await context.Response.WriteAsync("data: " + data + "\n\n", context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    private static string ChatCompletionJson(string? model, string answer, FakeUsage usage) => Json(w =>
    {
        Header(w, "chat.completion", model);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        w.WriteStartObject("message");
        w.WriteString("role", "assistant");
        w.WriteString("content", answer);
        w.WriteEndObject();
        w.WriteString("finish_reason", "stop");
        w.WriteEndObject();
        w.WriteEndArray();
        Usage(w, usage);
    });

    private static string Chunk(string? model, Action<Utf8JsonWriter>? delta, string? finishReason) => Json(w =>
    {
        Header(w, "chat.completion.chunk", model);
        w.WriteStartArray("choices");
        w.WriteStartObject();
        w.WriteNumber("index", 0);
        w.WriteStartObject("delta");
        delta?.Invoke(w);
        w.WriteEndObject();
        if (finishReason is null)
        {
            w.WriteNull("finish_reason");
        }
        else
        {
            w.WriteString("finish_reason", finishReason);
        }

        w.WriteEndObject();
        w.WriteEndArray();
    });

    private static string UsageChunk(string? model, FakeUsage usage) => Json(w =>
    {
        Header(w, "chat.completion.chunk", model);
        w.WriteStartArray("choices");
        w.WriteEndArray();
        Usage(w, usage);
    });

    private static void Header(Utf8JsonWriter w, string kind, string? model)
    {
        w.WriteString("id", "chatcmpl-fake");
        w.WriteString("object", kind);
        w.WriteNumber("created", 1_764_460_800);
        w.WriteString("model", model);
    }

    private static void Usage(Utf8JsonWriter w, FakeUsage usage)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", usage.PromptTokens);
        w.WriteNumber("completion_tokens", usage.CompletionTokens);
        w.WriteNumber("total_tokens", usage.TotalTokens);
        w.WriteEndObject();
    }

    private static string Json(Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            body(w);
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
