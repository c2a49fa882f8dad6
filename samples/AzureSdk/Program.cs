// Azure SDK sample: Azure.Storage.Blobs through EgressPolicyPipelinePolicy, against Azurite on loopback.
// Start Azurite first (npm install azurite; npx azurite-blob --blobHost 127.0.0.1 --blobPort 10000), then:
//   dotnet run --project samples/AzureSdk
using System.Net;
using System.Net.Sockets;
using Azure.Core;
using Azure.Storage;
using Azure.Storage.Blobs;
using Kars.Policy.Azure;
using Kars.Policy.Egress;
using Kars.Policy.Http;

string endpoint = Environment.GetEnvironmentVariable("KARS_AZURITE_BLOB") ?? "http://127.0.0.1:10000/devstoreaccount1";

// Azurite's documented development account (public, not a secret).
var account = new StorageSharedKeyCredential(
    "devstoreaccount1",
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==");

// The policy allows 127.0.0.0/8 on port 10000 only; loopback is non-public, so the host trusts it explicitly.
var egressOptions = new KarsEgressOptions();
egressOptions.PrivateAllow.Add("127.0.0.0/8");
IEgressPolicy policy = EgressPolicy.Load(Path.Combine(AppContext.BaseDirectory, "policy.json"), egressOptions);

// begin-snippet: azure-sdk-egress
var options = new BlobClientOptions();
options.Retry.MaxRetries = 3;
options.AddPolicy(new EgressPolicyPipelinePolicy(policy), HttpPipelinePosition.PerCall);   // before retries

var service = new BlobServiceClient(new Uri(endpoint), account, options);
var container = service.GetBlobContainerClient("kars-sample");
await container.CreateIfNotExistsAsync();
var blob = container.GetBlobClient("hello.txt");
await blob.UploadAsync(BinaryData.FromString("hello from Kars.Policy"), overwrite: true);
string text = (await blob.DownloadContentAsync()).Value.Content.ToString();
Console.WriteLine($"ALLOW {endpoint} -> uploaded and read back \"{text}\"");

try
{
    var elsewhere = new BlobServiceClient(new Uri("https://exfil.blob.core.windows.net"), account, options);
    await elsewhere.GetBlobContainerClient("loot").CreateIfNotExistsAsync();
}
catch (EgressDeniedException denied)
{
    Console.WriteLine($"DENY  https://exfil.blob.core.windows.net -> {denied.Decision.Reason} at {denied.Checkpoint}");
}
// end-snippet
