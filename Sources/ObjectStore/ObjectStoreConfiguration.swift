/// Configuration of an ``ObjectStore``.
public struct ObjectStoreConfiguration: Sendable {
    /// The data directory. Everything the store writes lives below it (`buckets/`, `multipart/`, `tmp/`);
    /// it must be a single file system so that temp files can be renamed into place atomically.
    public var root: String

    /// Whether to `fsync` object files and their directories before a write is acknowledged.
    /// Turning it off trades crash durability for speed (tests, scratch data); atomicity is unaffected.
    public var fsync: Bool

    /// The minimum size of every part but the last in `CompleteMultipartUpload` (S3: 5 MiB).
    public var minimumPartSize: Int

    /// The maximum size of a single part (S3: 5 GiB).
    public var maximumPartSize: Int

    /// The maximum size of an object (S3: 5 TiB).
    public var maximumObjectSize: Int

    /// The maximum number of parts in a multipart upload (S3: 10,000).
    public var maximumPartNumber: Int

    /// The maximum size of the JSON-encoded user metadata of one object, in bytes (S3: 2 KiB).
    public var maximumUserMetadataSize: Int

    /// The size of the buffer used when data must be copied through user space
    /// (copy of a multipart object, or when `copy_file_range` is unavailable).
    public var copyBufferSize: Int

    public init(
        root: String,
        fsync: Bool = true,
        minimumPartSize: Int = 5 * 1024 * 1024,
        maximumPartSize: Int = 5 * 1024 * 1024 * 1024,
        maximumObjectSize: Int = 5 * 1024 * 1024 * 1024 * 1024,
        maximumPartNumber: Int = 10_000,
        maximumUserMetadataSize: Int = 2 * 1024,
        copyBufferSize: Int = 1024 * 1024
    ) {
        self.root = root
        self.fsync = fsync
        self.minimumPartSize = minimumPartSize
        self.maximumPartSize = maximumPartSize
        self.maximumObjectSize = maximumObjectSize
        self.maximumPartNumber = maximumPartNumber
        self.maximumUserMetadataSize = maximumUserMetadataSize
        self.copyBufferSize = copyBufferSize
    }
}
