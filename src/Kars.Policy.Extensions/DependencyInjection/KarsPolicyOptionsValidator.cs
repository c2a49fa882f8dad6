using Microsoft.Extensions.Options;

namespace Kars.Policy.DependencyInjection;

/// <summary>The data-annotation rules of <see cref="KarsPolicyOptions"/> (ranges), generated at compile time (no reflection).</summary>
[OptionsValidator]
internal sealed partial class KarsPolicyOptionsValidator : IValidateOptions<KarsPolicyOptions>
{
}
