using Kars.Policy.Budgets;
using Kars.Policy.Redis.Tests.Infrastructure;
using Kars.Policy.Tests.Budgets;

namespace Kars.Policy.Redis.Tests;

/// <summary>The shared budget store contract, run against a real redis-server on loopback.</summary>
[Collection(RedisCollection.Name)]
public sealed class RedisBudgetStoreContractTests(RedisServerFixture fixture) : BudgetStoreContractTests
{
    protected override ValueTask<BudgetStore> CreateStoreAsync(TimeProvider time)
    {
        var options = new RedisBudgetStoreOptions { KeyPrefix = Prefix, OperationTimeout = TimeSpan.FromSeconds(10) };
        return ValueTask.FromResult<BudgetStore>(new RedisBudgetStore(options, fixture.Connection));
    }
}
