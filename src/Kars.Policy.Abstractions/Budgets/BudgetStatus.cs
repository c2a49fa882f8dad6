using NodaTime;

namespace Kars.Policy.Budgets;

/// <summary>The state of one window of a key.</summary>
/// <param name="Window">The window kind.</param>
/// <param name="Start">The inclusive start of the current period.</param>
/// <param name="End">The exclusive end of the current period.</param>
/// <param name="Limit">The key's own limit in this window, or <see langword="null"/>.</param>
/// <param name="Used">Tokens charged to the key in this period (may exceed the limit).</param>
/// <param name="Held">Tokens held by open leases of the key in this period.</param>
/// <param name="Remaining">The smallest <c>limit − used − held</c> over the key and its parent, never negative.</param>
public sealed record BudgetWindowStatus(BudgetWindow Window, Instant Start, Instant End, long? Limit, long Used, long Held, long Remaining);

/// <summary>A snapshot of a key's counters in every window limited at the key or its parent.</summary>
/// <param name="Key">The budget key.</param>
/// <param name="At">The instant the snapshot describes.</param>
/// <param name="Windows">One entry per limited window, in window order (hour first).</param>
public sealed record BudgetStatus(string Key, Instant At, IReadOnlyList<BudgetWindowStatus> Windows);
