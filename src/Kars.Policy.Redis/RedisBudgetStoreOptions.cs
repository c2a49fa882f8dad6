namespace Kars.Policy.Redis;

/// <summary>What <see cref="RedisBudgetStore"/> does with an admission when Redis cannot be reached or does not
/// answer in time.</summary>
public enum RedisBudgetFailureMode
{
    /// <summary>Fail closed (the default): the admission throws
    /// <see cref="Budgets.BudgetStoreUnavailableException"/>, which the ASP.NET Core gate answers with 503.</summary>
    Closed = 0,

    /// <summary>Fail open: when Redis is unreachable, times out or answers with a transient error (<c>LOADING</c>,
    /// <c>BUSY</c>, failover, <c>OOM</c>…), the admission is admitted without a hold in Redis, a warning is logged, and
    /// the decision says so (<see cref="Budgets.BudgetDecision.IsUnmetered"/>); its usage is not recorded. Script, data and configuration errors still throw. Opt in only where availability matters more than
    /// the budget.</summary>
    Open = 1,
}

/// <summary>Options of <see cref="RedisBudgetStore"/>.</summary>
/// <remarks>Mutable until passed to the store, which validates and copies them; later changes have no effect.</remarks>
public sealed class RedisBudgetStoreOptions
{
    /// <summary>Gets or sets the StackExchange.Redis configuration string, e.g. <c>redis-0:6379,password=…,ssl=true</c>.
    /// Required unless the store is given a connection. <c>abortConnect</c> is always turned off so the store
    /// reconnects by itself.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? Configuration { get; set; }

    /// <summary>Gets or sets the prefix of every key the store writes. Give each budget configuration (and each
    /// <c>budget replay</c> run) its own prefix. For Redis Cluster, put the whole prefix in a hash tag
    /// (<c>{kars}:budget:</c>) so every key lands in one slot.</summary>
    /// <value>The default value is <c>kars:budget:</c>.</value>
    public string KeyPrefix { get; set; } = "kars:budget:";

    /// <summary>Gets or sets what an admission does when Redis is unreachable or times out.</summary>
    /// <value>The default value is <see cref="RedisBudgetFailureMode.Closed"/>.</value>
    public RedisBudgetFailureMode FailureMode { get; set; } = RedisBudgetFailureMode.Closed;

    /// <summary>Gets or sets how long one store operation (one script round trip, including a first connection)
    /// may take before it fails.</summary>
    /// <value>The default value is 1 second.</value>
    public TimeSpan OperationTimeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Gets or sets the time-out of a connection attempt (when the store creates the connection).</summary>
    /// <value>The default value is 5 seconds.</value>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Gets or sets how long a window's counters are kept after the window ends (so late settlements and
    /// status reads of the previous period still find them). Counters expire through <c>EXPIRE</c> with a positive
    /// relative TTL: window end − now + this margin.</summary>
    /// <value>The default value is 1 day.</value>
    public TimeSpan CounterExpiryMargin { get; set; } = TimeSpan.FromDays(1);

    /// <summary>Gets or sets how long a settled lease is remembered, so a repeated settlement reports
    /// <see cref="Budgets.BudgetSettlementStatus.AlreadySettled"/> instead of an unknown lease.</summary>
    /// <value>The default value is 1 hour.</value>
    public TimeSpan SettledLeaseRetention { get; set; } = TimeSpan.FromHours(1);
}
