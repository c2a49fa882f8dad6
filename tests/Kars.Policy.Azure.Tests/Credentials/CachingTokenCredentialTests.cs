using Azure.Core;
using Kars.Policy.Azure;
using Microsoft.Extensions.Time.Testing;

namespace Kars.Policy.Azure.Tests.Credentials;

public sealed class CachingTokenCredentialTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);

    private sealed class FakeCredential(FakeTimeProvider time) : TokenCredential
    {
        private int _calls;

        public int Calls => Volatile.Read(ref _calls);

        public List<TokenRequestContext> Contexts { get; } = [];

        public Func<int, Task<AccessToken>>? Next { get; set; }

        public TimeSpan Lifetime { get; set; } = TimeSpan.FromHours(1);

        public TimeSpan? RefreshIn { get; set; }

        public override AccessToken GetToken(TokenRequestContext requestContext, CancellationToken cancellationToken) =>
            GetTokenAsync(requestContext, cancellationToken).AsTask().GetAwaiter().GetResult();

        public override async ValueTask<AccessToken> GetTokenAsync(TokenRequestContext requestContext, CancellationToken cancellationToken)
        {
            int n = Interlocked.Increment(ref _calls);
            lock (Contexts)
            {
                Contexts.Add(requestContext);
            }

            if (Next is not null)
            {
                return await Next(n);
            }

            var now = time.GetUtcNow();
            return new AccessToken($"token-{n}", now + Lifetime, RefreshIn is { } r ? now + r : null);
        }
    }

    private static TokenRequestContext Ctx(params string[] scopes) => new(scopes);

    [Fact]
    public async Task Scopes_SpelledDifferently_ShareOneEntry()
    {
        var time = new FakeTimeProvider(Start);
        var inner = new FakeCredential(time);
        var credential = new CachingTokenCredential(inner, timeProvider: time);

        var a = await credential.GetTokenAsync(Ctx("https://cognitiveservices.azure.com/.default"), default);
        var b = await credential.GetTokenAsync(Ctx("https://CognitiveServices.azure.com"), default);
        var c = await credential.GetTokenAsync(Ctx(" https://cognitiveservices.azure.com/ "), default);

        inner.Calls.Should().Be(1);
        b.Token.Should().Be(a.Token);
        c.Token.Should().Be(a.Token);
    }

    [Fact]
    public async Task Scopes_DifferentResourcesOrTenants_SeparateEntries()
    {
        var time = new FakeTimeProvider(Start);
        var inner = new FakeCredential(time);
        var credential = new CachingTokenCredential(inner, timeProvider: time);

        await credential.GetTokenAsync(Ctx("https://a.example/.default"), default);
        await credential.GetTokenAsync(Ctx("https://b.example/.default"), default);
        await credential.GetTokenAsync(new TokenRequestContext(["https://a.example/.default"], tenantId: "t2"), default);
        await credential.GetTokenAsync(Ctx("https://a.example/Path"), default);
        await credential.GetTokenAsync(Ctx("https://a.example/path"), default);

        inner.Calls.Should().Be(5, "paths stay case-sensitive; only scheme and host are lower-cased");
    }

    [Fact]
    public async Task RefreshOn_Reached_ServesCachedAndRefreshesOnceInBackground()
    {
        var time = new FakeTimeProvider(Start);
        var inner = new FakeCredential(time) { RefreshIn = TimeSpan.FromMinutes(30) };
        var credential = new CachingTokenCredential(inner, timeProvider: time);
        var first = await credential.GetTokenAsync(Ctx("s"), default);

        time.Advance(TimeSpan.FromMinutes(30) - TimeSpan.FromTicks(1));
        (await credential.GetTokenAsync(Ctx("s"), default)).Token.Should().Be(first.Token);
        inner.Calls.Should().Be(1, "before RefreshOn the cached token is served without asking");

        var gate = new TaskCompletionSource<AccessToken>(TaskCreationOptions.RunContinuationsAsynchronously);
        inner.Next = _ => gate.Task;
        time.Advance(TimeSpan.FromTicks(1));
        var tokens = await Task.WhenAll(Enumerable.Range(0, 32).Select(_ => credential.GetTokenAsync(Ctx("s"), default).AsTask()));

        tokens.Should().OnlyContain(t => t.Token == first.Token, "the still-valid token is served while the refresh runs");
        SpinWait.SpinUntil(() => inner.Calls == 2, TimeSpan.FromSeconds(60));
        inner.Calls.Should().Be(2, "one refresh in flight per scope");

        gate.SetResult(new AccessToken("fresh", time.GetUtcNow() + TimeSpan.FromHours(1)));
        SpinWait.SpinUntil(() => !credential.IsRefreshing(Ctx("s")), TimeSpan.FromSeconds(60));
        (await credential.GetTokenAsync(Ctx("s"), default)).Token.Should().Be("fresh");
        inner.Calls.Should().Be(2);
    }

    [Fact]
    public async Task NoRefreshOn_RefreshStartsAtExpiryMinusMargin()
    {
        var time = new FakeTimeProvider(Start);
        var inner = new FakeCredential(time) { Lifetime = TimeSpan.FromMinutes(60) };
        var credential = new CachingTokenCredential(inner, new CachingTokenCredentialOptions { RefreshMargin = TimeSpan.FromMinutes(10) }, time);
        await credential.GetTokenAsync(Ctx("s"), default);

        time.Advance(TimeSpan.FromMinutes(50) - TimeSpan.FromTicks(1));
        await credential.GetTokenAsync(Ctx("s"), default);
        inner.Calls.Should().Be(1);

        time.Advance(TimeSpan.FromTicks(1));
        await credential.GetTokenAsync(Ctx("s"), default);
        SpinWait.SpinUntil(() => inner.Calls == 2, TimeSpan.FromSeconds(60));
        inner.Calls.Should().Be(2);
    }

    [Fact]
    public async Task RefreshFails_StillValidTokenServed_ThenRetriedAfterBackoff()
    {
        var time = new FakeTimeProvider(Start);
        var inner = new FakeCredential(time) { RefreshIn = TimeSpan.FromMinutes(30) };
        var credential = new CachingTokenCredential(inner, new CachingTokenCredentialOptions { RetryAfterFailure = TimeSpan.FromSeconds(10) }, time);
        var first = await credential.GetTokenAsync(Ctx("s"), default);
        inner.Next = _ => Task.FromException<AccessToken>(new InvalidOperationException("identity endpoint down"));

        time.Advance(TimeSpan.FromMinutes(31));
        (await credential.GetTokenAsync(Ctx("s"), default)).Token.Should().Be(first.Token);
        SpinWait.SpinUntil(() => inner.Calls == 2, TimeSpan.FromSeconds(60));
        SpinWait.SpinUntil(() => !credential.IsRefreshing(Ctx("s")), TimeSpan.FromSeconds(60));
        (await credential.GetTokenAsync(Ctx("s"), default)).Token.Should().Be(first.Token, "the failed refresh leaves the valid token in place");
        inner.Calls.Should().Be(2, "no new refresh inside the back-off");

        inner.Next = null;
        time.Advance(TimeSpan.FromSeconds(10));
        await credential.GetTokenAsync(Ctx("s"), default);
        SpinWait.SpinUntil(() => inner.Calls == 3, TimeSpan.FromSeconds(60));
        inner.Calls.Should().Be(3);
    }

    [Fact]
    public async Task Expired_RefreshFails_Throws()
    {
        var time = new FakeTimeProvider(Start);
        var inner = new FakeCredential(time) { Lifetime = TimeSpan.FromMinutes(10) };
        var credential = new CachingTokenCredential(inner, timeProvider: time);
        await credential.GetTokenAsync(Ctx("s"), default);
        inner.Next = _ => Task.FromException<AccessToken>(new InvalidOperationException("down"));

        time.Advance(TimeSpan.FromMinutes(10));
        var act = async () => await credential.GetTokenAsync(Ctx("s"), default);

        await act.Should().ThrowAsync<InvalidOperationException>().WithMessage("down");
        inner.Calls.Should().Be(2);
        await act.Should().ThrowAsync<InvalidOperationException>("the failure is remembered for RetryAfterFailure");
        inner.Calls.Should().Be(2);
    }

    [Fact]
    public async Task Refresh_Hangs_BoundedByTimeout()
    {
        var time = new FakeTimeProvider(Start);
        var inner = new FakeCredential(time) { Next = _ => new TaskCompletionSource<AccessToken>().Task };
        var credential = new CachingTokenCredential(inner, new CachingTokenCredentialOptions { RefreshTimeout = TimeSpan.FromSeconds(5) }, time);

        var pending = credential.GetTokenAsync(Ctx("s"), default).AsTask();
        SpinWait.SpinUntil(() => inner.Calls == 1, TimeSpan.FromSeconds(60));
        time.Advance(TimeSpan.FromSeconds(5) - TimeSpan.FromTicks(1));
        pending.IsCompleted.Should().BeFalse();
        time.Advance(TimeSpan.FromTicks(1));

        var act = () => pending;
        await act.Should().ThrowAsync<TimeoutException>().WithMessage("*did not complete within 5 s*");
    }

    [Fact]
    public async Task Refresh_ClockPassesTimeoutWhileCredentialIsCalled_StillTimesOut()
    {
        // The time-out covers the whole call: here the clock passes the time-out before the credential returns its
        // (never completing) task. A bound started only after the call returned would never fire.
        var time = new FakeTimeProvider(Start);
        var inner = new FakeCredential(time)
        {
            Next = _ =>
            {
                time.Advance(TimeSpan.FromSeconds(5));
                return new TaskCompletionSource<AccessToken>().Task;
            },
        };
        var credential = new CachingTokenCredential(inner, new CachingTokenCredentialOptions { RefreshTimeout = TimeSpan.FromSeconds(5) }, time);

        var pending = credential.GetTokenAsync(Ctx("s"), default).AsTask();
        var finished = await Task.WhenAny(pending, Task.Delay(TimeSpan.FromSeconds(30)));

        finished.Should().BeSameAs(pending, "the time-out fires on the clock that passed it");
        var act = () => pending;
        await act.Should().ThrowAsync<TimeoutException>();
    }

    [Fact]
    public async Task ConcurrentColdCallers_OneRequest()
    {
        var time = new FakeTimeProvider(Start);
        var gate = new TaskCompletionSource<AccessToken>(TaskCreationOptions.RunContinuationsAsynchronously);
        var inner = new FakeCredential(time) { Next = _ => gate.Task };
        var credential = new CachingTokenCredential(inner, timeProvider: time);

        var callers = Enumerable.Range(0, 64).Select(_ => credential.GetTokenAsync(Ctx("s"), default).AsTask()).ToArray();
        SpinWait.SpinUntil(() => inner.Calls == 1, TimeSpan.FromSeconds(60));
        gate.SetResult(new AccessToken("t", Start + TimeSpan.FromHours(1)));
        var tokens = await Task.WhenAll(callers);

        tokens.Should().OnlyContain(t => t.Token == "t");
        inner.Calls.Should().Be(1);
    }

    [Fact]
    public async Task CallerCancellation_StopsOnlyThatCaller()
    {
        var time = new FakeTimeProvider(Start);
        var gate = new TaskCompletionSource<AccessToken>(TaskCreationOptions.RunContinuationsAsynchronously);
        var inner = new FakeCredential(time) { Next = _ => gate.Task };
        var credential = new CachingTokenCredential(inner, timeProvider: time);
        using var cts = new CancellationTokenSource();

        var cancelled = credential.GetTokenAsync(Ctx("s"), cts.Token).AsTask();
        var patient = credential.GetTokenAsync(Ctx("s"), default).AsTask();
        cts.Cancel();
        await ((Func<Task>)(() => cancelled)).Should().ThrowAsync<OperationCanceledException>();
        gate.SetResult(new AccessToken("t", Start + TimeSpan.FromHours(1)));

        (await patient).Token.Should().Be("t");
    }

    [Fact]
    public async Task Claims_BypassCache()
    {
        var time = new FakeTimeProvider(Start);
        var inner = new FakeCredential(time);
        var credential = new CachingTokenCredential(inner, timeProvider: time);
        await credential.GetTokenAsync(Ctx("s"), default);

        await credential.GetTokenAsync(new TokenRequestContext(["s"], claims: "{\"access_token\":{}}"), default);

        inner.Calls.Should().Be(2);
    }

    [Fact]
    public void Sync_GetToken_UsesCache()
    {
        var time = new FakeTimeProvider(Start);
        var inner = new FakeCredential(time);
        var credential = new CachingTokenCredential(inner, timeProvider: time);

        credential.GetToken(Ctx("s"), default).Token.Should().Be(credential.GetToken(Ctx("s/.default"), default).Token);
        inner.Calls.Should().Be(1);
    }

    [Fact]
    public void Options_OutOfRange_Throw()
    {
        var act = () => new CachingTokenCredential(new FakeCredential(new FakeTimeProvider()), new CachingTokenCredentialOptions { RefreshTimeout = TimeSpan.Zero });
        act.Should().Throw<ArgumentOutOfRangeException>().WithParameterName("RefreshTimeout");
    }
}
