using Kars.Policy.Budgets;

namespace Kars.Policy.Tests.Budgets;

public sealed class InMemoryBudgetStoreContractTests : BudgetStoreContractTests
{
    protected override ValueTask<BudgetStore> CreateStoreAsync(TimeProvider time) => new(new InMemoryBudgetStore(time));
}
