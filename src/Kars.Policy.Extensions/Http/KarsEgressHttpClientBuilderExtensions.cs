using System.Net.Http;
using Kars.Policy.Egress;
using Kars.Policy.Http;
using Microsoft.Extensions.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds the Kars.Policy egress check to clients built by <see cref="IHttpClientFactory"/>.</summary>
public static class KarsEgressHttpClientBuilderExtensions
{
    /// <summary>
    /// Checks every request and every connection of the client against the <see cref="IEgressPolicy"/> registered in
    /// the container: adds an <see cref="EgressPolicyHandler"/> and makes the primary handler a
    /// <see cref="SocketsHttpHandler"/> whose connect callback vets each connection (redirect hops and proxy
    /// connections included). Denials throw <see cref="EgressDeniedException"/>.
    /// </summary>
    /// <param name="builder">The client builder.</param>
    /// <returns>The same builder, for chaining.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    /// <remarks>
    /// The primary handler may still be configured after this call, as long as it stays a
    /// <see cref="SocketsHttpHandler"/> (for example <c>.ConfigurePrimaryHttpMessageHandler((h, _) =&gt;
    /// ((SocketsHttpHandler)h).Proxy = proxy)</c>). Replacing it with another handler type, or with a
    /// <see cref="SocketsHttpHandler"/> that has its own connect callback, fails when the client is created
    /// (<see cref="InvalidOperationException"/>) rather than silently losing the connection check. Options are named
    /// after the client (<see cref="IOptionsMonitor{TOptions}.Get(string)"/>).
    /// </remarks>
    public static IHttpClientBuilder AddKarsEgressPolicy(this IHttpClientBuilder builder) => AddKarsEgressPolicy(builder, static _ => { });

    /// <summary>Adds the egress check (see <see cref="AddKarsEgressPolicy(IHttpClientBuilder)"/>) and configures its options.</summary>
    /// <param name="builder">The client builder.</param>
    /// <param name="configure">Configures the options of this client's handler and connect callback.</param>
    /// <returns>The same builder, for chaining.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> or <paramref name="configure"/> is <see langword="null"/>.</exception>
    public static IHttpClientBuilder AddKarsEgressPolicy(this IHttpClientBuilder builder, Action<EgressHttpOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        string name = builder.Name;
        builder.Services.AddOptions<EgressHttpOptions>(name).Configure(configure);

        builder.AddHttpMessageHandler(sp => new EgressPolicyHandler(
            sp.GetRequiredService<IEgressPolicy>(),
            sp.GetRequiredService<IOptionsMonitor<EgressHttpOptions>>().Get(name),
            sp.GetService<ILoggerFactory>()));

        builder.ConfigurePrimaryHttpMessageHandler(static () => new SocketsHttpHandler());

        // Runs after every Configure of this client (PostConfigure), so a later replacement of the primary handler
        // is caught here instead of silently dropping the connection check.
        builder.Services.PostConfigure<HttpClientFactoryOptions>(name, options => options.HttpMessageHandlerBuilderActions.Add(b =>
        {
            if (b.PrimaryHandler is not SocketsHttpHandler sockets)
            {
                throw new InvalidOperationException(
                    $"AddKarsEgressPolicy() needs a SocketsHttpHandler as the primary handler of client '{name}', but it was replaced by {b.PrimaryHandler?.GetType().Name ?? "null"}; configure the SocketsHttpHandler instead of replacing it.");
            }

            if (sockets.ConnectCallback is not null)
            {
                throw new InvalidOperationException(
                    $"The primary SocketsHttpHandler of client '{name}' already has a ConnectCallback; AddKarsEgressPolicy() needs to own it.");
            }

            var sp = b.Services;
            sockets.ConnectCallback = EgressConnectCallback.Create(
                sp.GetRequiredService<IEgressPolicy>(),
                sp.GetRequiredService<IOptionsMonitor<EgressHttpOptions>>().Get(name),
                sp.GetService<TimeProvider>(),
                sp.GetService<ILoggerFactory>());
        }));

        return builder;
    }
}
