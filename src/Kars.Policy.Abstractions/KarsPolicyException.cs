namespace Kars.Policy;

/// <summary>The base of every exception Kars.Policy throws on purpose. Catch it to handle any
/// policy failure; the concrete types say what failed.</summary>
public abstract class KarsPolicyException : Exception
{
    /// <summary>Initializes a new instance with a message.</summary>
    /// <param name="message">What failed.</param>
    protected KarsPolicyException(string message)
        : base(message)
    {
    }

    /// <summary>Initializes a new instance with a message and the underlying cause.</summary>
    /// <param name="message">What failed.</param>
    /// <param name="innerException">The underlying cause.</param>
    protected KarsPolicyException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
