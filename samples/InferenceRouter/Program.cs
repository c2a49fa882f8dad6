// Inference router sample: an OpenAI-compatible endpoint in front of a configured upstream, with a token budget per
// sandbox and the egress policy on every outbound connection. See README.md.
//   dotnet run --project samples/InferenceRouter -- --demo    (self-contained: a fake upstream on loopback)
//   dotnet run --project samples/InferenceRouter              (serves appsettings.json's configuration)
using InferenceRouter;

if (args.Contains("--demo", StringComparer.Ordinal))
{
    return await Demo.RunAsync(Console.Out);
}

await using var app = RouterApp.Build(args);
await app.RunAsync();
return 0;
