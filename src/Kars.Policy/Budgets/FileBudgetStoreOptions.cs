namespace Kars.Policy.Budgets;

/// <summary>Options of <see cref="FileBudgetStore"/>.</summary>
/// <remarks>Settable so configuration binding can fill them; <see cref="FileBudgetStore.OpenAsync"/> validates and
/// copies them, so changing the object afterwards changes nothing.</remarks>
public sealed class FileBudgetStoreOptions
{
    /// <summary>Gets or sets how many log records trigger a compaction into a new snapshot (at least 1).</summary>
    /// <value>The default value is 100,000.</value>
    public long CompactAfterRecords { get; set; } = 100_000;

    /// <summary>Validates and copies <paramref name="options"/> (the defaults when <see langword="null"/>).</summary>
    internal static FileBudgetStoreOptions Validated(FileBudgetStoreOptions? options)
    {
        options ??= new FileBudgetStoreOptions();
        if (options.CompactAfterRecords < 1)
        {
            throw new ArgumentException($"FileBudgetStoreOptions.CompactAfterRecords must be at least 1 (was {options.CompactAfterRecords}).", nameof(options));
        }

        return new FileBudgetStoreOptions { CompactAfterRecords = options.CompactAfterRecords };
    }
}
