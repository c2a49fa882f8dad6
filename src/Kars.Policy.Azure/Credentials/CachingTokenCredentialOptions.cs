namespace Kars.Policy.Azure;

/// <summary>Options of <see cref="CachingTokenCredential"/>. Copied (validated) when the credential is created.</summary>
public sealed class CachingTokenCredentialOptions
{
    /// <summary>Gets or sets how long before expiry a token is refreshed when the credential gave no
    /// <c>RefreshOn</c>. Between 0 and 1 hour.</summary>
    /// <value>The default value is 5 minutes.</value>
    public TimeSpan RefreshMargin { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Gets or sets how long before expiry a cached token stops being served (so it does not expire in
    /// flight). Between 0 and 10 minutes.</summary>
    /// <value>The default value is 30 seconds.</value>
    public TimeSpan ExpiryMargin { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Gets or sets how long one refresh may take before it fails. Between 1 millisecond and 5 minutes.</summary>
    /// <value>The default value is 30 seconds.</value>
    public TimeSpan RefreshTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Gets or sets how long a failed refresh is remembered: no new refresh starts in that time, and a caller
    /// with no valid cached token gets the same failure at once. Between 0 and 5 minutes.</summary>
    /// <value>The default value is 10 seconds.</value>
    public TimeSpan RetryAfterFailure { get; set; } = TimeSpan.FromSeconds(10);

    internal CachingTokenCredentialOptions Validate()
    {
        Check(RefreshMargin, TimeSpan.Zero, TimeSpan.FromHours(1), nameof(RefreshMargin));
        Check(ExpiryMargin, TimeSpan.Zero, TimeSpan.FromMinutes(10), nameof(ExpiryMargin));
        Check(RefreshTimeout, TimeSpan.FromMilliseconds(1), TimeSpan.FromMinutes(5), nameof(RefreshTimeout));
        Check(RetryAfterFailure, TimeSpan.Zero, TimeSpan.FromMinutes(5), nameof(RetryAfterFailure));
        return new CachingTokenCredentialOptions
        {
            RefreshMargin = RefreshMargin,
            ExpiryMargin = ExpiryMargin,
            RefreshTimeout = RefreshTimeout,
            RetryAfterFailure = RetryAfterFailure,
        };
    }

    private static void Check(TimeSpan value, TimeSpan min, TimeSpan max, string name)
    {
        if (value < min || value > max)
        {
            throw new ArgumentOutOfRangeException(name, value, $"CachingTokenCredentialOptions.{name} must be between {min} and {max}.");
        }
    }
}
