using System.IO.Abstractions.TestingHelpers;
using Kars.Policy.Internal;

namespace Kars.Policy.Tests.Internal;

/// <summary>The one bounded regular-file reader: the cap holds while reading, whatever length the file reports.</summary>
public class BoundedFileTests
{
    [Fact]
    public void ReadCapped_EndlessUnseekableStream_StopsJustPastTheCap()
    {
        using var endless = new EndlessStream(reportedLength: null);

        var result = BoundedFile.ReadCapped(endless, maxBytes: 1024 * 1024);

        result.Error.Should().Be(FileReadError.TooLarge);
        result.Message.Should().Be("is larger than the limit of 1 MiB");
        endless.Delivered.Should().BeLessThanOrEqualTo((1024 * 1024) + (64 * 1024));
    }

    [Fact]
    public void ReadCapped_StreamThatUnderstatesItsLength_IsStillCapped()
    {
        using var lying = new EndlessStream(reportedLength: 10);

        BoundedFile.ReadCapped(lying, maxBytes: 100_000).Error.Should().Be(FileReadError.TooLarge);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(65_536)]
    [InlineData(200_000)]
    public void Read_RegularFileUpToTheCap_ReturnsEveryByte(int size)
    {
        byte[] content = [.. Enumerable.Range(0, size).Select(i => (byte)i)];
        var fs = new MockFileSystem();
        fs.AddFile("/f", new MockFileData(content));

        var result = BoundedFile.Read(fs, "/f", maxBytes: size);

        result.IsSuccess.Should().BeTrue();
        result.Bytes.Should().Equal(content);
        BoundedFile.Read(fs, "/f", maxBytes: size - 1 < 0 ? 0 : size - 1).Error.Should().Be(size == 0 ? FileReadError.None : FileReadError.TooLarge);
    }

    [Fact]
    public void Read_MissingAndDirectory_AreTypedErrors()
    {
        var fs = new MockFileSystem();
        fs.AddDirectory("/d");

        BoundedFile.Read(fs, "/missing", 10).Error.Should().Be(FileReadError.NotFound);
        BoundedFile.Read(fs, "/d", 10).Error.Should().Be(FileReadError.NotRegularFile);
    }

    /// <summary>A stream that never ends (like /dev/zero), optionally claiming a small length.</summary>
    private sealed class EndlessStream(long? reportedLength) : Stream
    {
        public long Delivered { get; private set; }

        public override bool CanRead => true;

        public override bool CanSeek => reportedLength is not null;

        public override bool CanWrite => false;

        public override long Length => reportedLength ?? throw new NotSupportedException();

        public override long Position { get => 0; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            Array.Clear(buffer, offset, count);
            Delivered += count;
            return count;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
