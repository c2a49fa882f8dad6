using Kars.Policy.Budgets;
using Kars.Policy.Egress;

string policyPath = args.Length > 0 ? args[0] : "samples/policies/sample-policy.json";

// begin-snippet: readme-usage
// Egress: load a policy (EgressPolicyLoadException lists every problem), then decide per destination.
var egress = EgressPolicy.Load(policyPath);
EgressDecision decision = egress.Evaluate(new Uri("https://api.github.com/repos/dotnet/runtime"));
Console.WriteLine($"{decision.Verdict} {decision.Reason} ({decision.Rule})");   // Allow Allowlisted (api.github.com)

// Budgets: reserve before forwarding the inference request, settle on the usage it reports.
var meter = new BudgetMeter(new InMemoryBudgetStore(), new BudgetPolicy(new BudgetLimits(day: 100_000), perRequestTokens: 4096));
BudgetDecision budget = await meter.TryReserveAsync("sandbox-a", tokens: 1_200);
if (budget.IsAdmitted)
{
    await using (budget.Lease)   // charged in full if the usage never arrives; costs nothing more once settled
    {
        await budget.Lease.SettleAsync(actualTokens: 950);
    }
}
// end-snippet

var day = (await meter.GetStatusAsync("sandbox-a")).Windows.First(w => w.Window == BudgetWindow.Day);
Console.WriteLine($"{budget.Reason}: day used {day.Used}, remaining {day.Remaining}");   // Admitted: day used 950, remaining 99050
