using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using System.Text;
using Azure.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kars.Policy.Azure;

/// <summary>
/// Wraps any <see cref="TokenCredential"/> with a per-scope token cache: scopes are normalised, tokens are refreshed
/// ahead of <see cref="AccessToken.RefreshOn"/> (or of expiry), one refresh per scope is in flight at a time, each
/// refresh is bounded by a time-out, and while a cached token is still valid it is served even when a refresh fails.
/// </summary>
/// <remarks>
/// <para>The cache key is the set of scopes, each normalised (trimmed; a trailing <c>/.default</c> and trailing
/// slashes removed; the scheme and host of a URI lower-cased, ASCII only), plus the tenant and the CAE flag. So
/// <c>https://x</c>, <c>https://X/</c> and <c>https://x/.default</c> share one entry. A request with claims (a CAE
/// challenge) always goes to the wrapped credential, bounded by the same time-out.</para>
/// <para>A cached token is served until <c>ExpiresOn - ExpiryMargin</c>. From <c>RefreshOn</c> (or
/// <c>ExpiresOn - RefreshMargin</c>) on, the first caller starts a background refresh and every caller still gets the
/// cached token. Without a usable token, callers wait for the one refresh in flight (each caller's cancellation
/// stops only its own wait). A failed refresh is remembered for <c>RetryAfterFailure</c>. Thread-safe; the
/// synchronous <see cref="GetToken"/> blocks on the same refresh. Tokens, scopes and tenants are never logged.</para>
/// </remarks>
public sealed class CachingTokenCredential : TokenCredential
{
    private readonly TokenCredential _inner;
    private readonly CachingTokenCredentialOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    /// <summary>Initializes a new caching credential.</summary>
    /// <param name="credential">The credential that issues tokens.</param>
    /// <param name="options">Options; <see langword="null"/> for the defaults. Copied on creation.</param>
    /// <param name="timeProvider">The clock; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <param name="loggerFactory">Where refresh failures are logged; <see langword="null"/> for none.</param>
    /// <exception cref="ArgumentNullException"><paramref name="credential"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public CachingTokenCredential(TokenCredential credential, CachingTokenCredentialOptions? options = null, TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(credential);
        _inner = credential;
        _options = (options ?? new CachingTokenCredentialOptions()).Validate();
        _timeProvider = timeProvider ?? TimeProvider.System;
        _logger = loggerFactory?.CreateLogger(typeof(CachingTokenCredential).FullName!) ?? NullLogger.Instance;
    }

    /// <inheritdoc />
    public override async ValueTask<AccessToken> GetTokenAsync(TokenRequestContext requestContext, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (TryGetCached(requestContext, out var token, out var refresh))
        {
            return token;
        }

        return await refresh!.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public override AccessToken GetToken(TokenRequestContext requestContext, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (TryGetCached(requestContext, out var token, out var refresh))
        {
            return token;
        }

        return refresh!.WaitAsync(cancellationToken).GetAwaiter().GetResult();
    }

    private bool TryGetCached(TokenRequestContext context, out AccessToken token, out Task<AccessToken>? refresh)
    {
        if (!string.IsNullOrEmpty(context.Claims))
        {
            token = default;
            refresh = Observe(Task.Run(() => RequestAsync(context)));
            return false;
        }

        var entry = _entries.GetOrAdd(Key(context), static _ => new Entry());
        lock (entry)
        {
            var now = _timeProvider.GetUtcNow();
            if (entry.Token is { } cached && now < entry.UsableUntil)
            {
                if (now >= entry.RefreshAt && entry.Refresh is null && now >= entry.NextAttempt)
                {
                    entry.Refresh = StartRefresh(entry, context);
                }

                token = cached;
                refresh = null;
                return true;
            }

            if (entry.Refresh is null && entry.LastFailure is { } failure && now < entry.NextAttempt)
            {
                failure.Throw();
            }

            token = default;
            refresh = entry.Refresh ??= StartRefresh(entry, context);
            return false;
        }
    }

    private Task<AccessToken> StartRefresh(Entry entry, TokenRequestContext context) =>
        Observe(Task.Run(() => RefreshAsync(entry, context)));

    private static Task<AccessToken> Observe(Task<AccessToken> task)
    {
        // A background refresh that fails with no caller waiting must not surface as an unobserved exception.
        _ = task.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return task;
    }

    private async Task<AccessToken> RefreshAsync(Entry entry, TokenRequestContext context)
    {
        try
        {
            var token = await RequestAsync(context).ConfigureAwait(false);
            lock (entry)
            {
                var now = _timeProvider.GetUtcNow();
                var usableUntil = token.ExpiresOn - _options.ExpiryMargin;
                var refreshAt = token.RefreshOn ?? token.ExpiresOn - _options.RefreshMargin;
                if (refreshAt > usableUntil)
                {
                    refreshAt = usableUntil;
                }

                if (refreshAt < now)
                {
                    refreshAt = now + ((usableUntil - now) / 2);
                }

                entry.Token = token;
                entry.UsableUntil = usableUntil;
                entry.RefreshAt = refreshAt;
                entry.LastFailure = null;
                entry.Refresh = null;
                AzureEgressLog.Refreshed(_logger, (long)(refreshAt - now).TotalSeconds);
            }

            return token;
        }
        catch (Exception ex)
        {
            lock (entry)
            {
                var now = _timeProvider.GetUtcNow();
                entry.Refresh = null;
                entry.NextAttempt = now + _options.RetryAfterFailure;
                entry.LastFailure = ExceptionDispatchInfo.Capture(ex);
                if (entry.Token is not null && now < entry.UsableUntil)
                {
                    AzureEgressLog.RefreshFailedServingCached(_logger, ex.GetType().Name, (long)(entry.UsableUntil - now).TotalSeconds);
                }
                else
                {
                    AzureEgressLog.RefreshFailed(_logger, ex.GetType().Name);
                }
            }

            throw;
        }
    }

    private async Task<AccessToken> RequestAsync(TokenRequestContext context)
    {
        using var timeout = new CancellationTokenSource(_options.RefreshTimeout, _timeProvider);
        try
        {
            // WaitAsync bounds the wait even when the wrapped credential ignores its cancellation token. It waits on
            // the token whose timer started before the call, so the bound covers the whole call (a second timer
            // started after the call returned its task would leave the synchronous part unbounded).
            return await _inner.GetTokenAsync(context, timeout.Token).AsTask()
                .WaitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is TimeoutException || (ex is OperationCanceledException && timeout.IsCancellationRequested))
        {
            throw new TimeoutException($"The token request did not complete within {_options.RefreshTimeout.TotalSeconds} s.", ex);
        }
    }

    /// <summary>Whether a refresh for this context is in flight (for tests that wait for a background refresh).</summary>
    internal bool IsRefreshing(TokenRequestContext context)
    {
        if (!_entries.TryGetValue(Key(context), out var entry))
        {
            return false;
        }

        lock (entry)
        {
            return entry.Refresh is not null;
        }
    }

    internal static string Key(TokenRequestContext context)
    {
        var scopes = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var scope in context.Scopes ?? [])
        {
            if (scope is not null)
            {
                scopes.Add(NormaliseScope(scope));
            }
        }

        return $"{string.Join(' ', scopes)}\n{context.TenantId}\n{(context.IsCaeEnabled ? "cae" : string.Empty)}";
    }

    internal static string NormaliseScope(string scope)
    {
        string s = scope.Trim();
        const string Default = "/.default";
        if (s.EndsWith(Default, StringComparison.OrdinalIgnoreCase))
        {
            s = s[..^Default.Length];
        }

        s = s.TrimEnd('/');
        int schemeEnd = s.IndexOf("://", StringComparison.Ordinal);
        if (schemeEnd <= 0)
        {
            return s;
        }

        int authorityEnd = s.IndexOf('/', schemeEnd + 3);
        if (authorityEnd < 0)
        {
            authorityEnd = s.Length;
        }

        var builder = new StringBuilder(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            builder.Append(i < authorityEnd && c is >= 'A' and <= 'Z' ? (char)(c + 32) : c);
        }

        return builder.ToString();
    }

    private sealed class Entry
    {
        public AccessToken? Token { get; set; }

        public DateTimeOffset UsableUntil { get; set; }

        public DateTimeOffset RefreshAt { get; set; }

        public DateTimeOffset NextAttempt { get; set; }

        public ExceptionDispatchInfo? LastFailure { get; set; }

        public Task<AccessToken>? Refresh { get; set; }
    }
}
