using System.Diagnostics.Metrics;
using Kars.Policy.Budgets;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Kars.Policy.AI;

/// <summary>Adds <see cref="TokenBudgetChatClient"/> to a <see cref="ChatClientBuilder"/> pipeline.</summary>
public static class TokenBudgetChatClientBuilderExtensions
{
    /// <summary>Adds token-budget metering to the pipeline (see <see cref="TokenBudgetChatClient"/>).</summary>
    /// <param name="builder">The builder.</param>
    /// <param name="keyResolver">The budget key of a call, from what the host trusts (see
    /// <see cref="TokenBudgetChatClientOptions.KeyResolver"/>).</param>
    /// <param name="meter">The budget meter; <see langword="null"/> to take the <see cref="BudgetMeter"/> registered in
    /// the builder's services.</param>
    /// <param name="configure">Sets further options; the <see cref="IMeterFactory"/> and <see cref="ILoggerFactory"/>
    /// of the builder's services are set before it runs.</param>
    /// <returns>The builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> or <paramref name="keyResolver"/> is <see langword="null"/>.</exception>
    /// <remarks>When the pipeline is built, <see cref="InvalidOperationException"/> is thrown if no meter was given and
    /// none is registered, and <see cref="ArgumentException"/> if an option is invalid.</remarks>
    public static ChatClientBuilder UseKarsTokenBudget(this ChatClientBuilder builder, Func<ChatOptions?, string?> keyResolver, BudgetMeter? meter = null, Action<TokenBudgetChatClientOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(keyResolver);
        return builder.Use((inner, services) =>
        {
            BudgetMeter budgetMeter = meter
                ?? services.GetService(typeof(BudgetMeter)) as BudgetMeter
                ?? throw new InvalidOperationException("UseKarsTokenBudget needs a BudgetMeter: pass one, or register one in the services the pipeline is built with.");
            var options = new TokenBudgetChatClientOptions
            {
                KeyResolver = keyResolver,
                MeterFactory = services.GetService(typeof(IMeterFactory)) as IMeterFactory,
                LoggerFactory = services.GetService(typeof(ILoggerFactory)) as ILoggerFactory,
            };
            configure?.Invoke(options);
            return new TokenBudgetChatClient(inner, budgetMeter, options);
        });
    }
}
