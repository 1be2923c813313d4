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

    /// Free space the store keeps on its file system: a write that would leave less is refused with
    /// `StorageFull` (507) before a byte is written, so the notification queue, the gateway's database and
    /// the system beside the store always have room, and reads go on.
    public var freeSpaceFloor: FreeSpaceFloor

    public init(
        root: String,
        fsync: Bool = true,
        minimumPartSize: Int = 5 * 1024 * 1024,
        maximumPartSize: Int = 5 * 1024 * 1024 * 1024,
        maximumObjectSize: Int = 5 * 1024 * 1024 * 1024 * 1024,
        maximumPartNumber: Int = 10_000,
        maximumUserMetadataSize: Int = 2 * 1024,
        copyBufferSize: Int = 1024 * 1024,
        freeSpaceFloor: FreeSpaceFloor = .standard
    ) {
        self.root = root
        self.fsync = fsync
        self.minimumPartSize = minimumPartSize
        self.maximumPartSize = maximumPartSize
        self.maximumObjectSize = maximumObjectSize
        self.maximumPartNumber = maximumPartNumber
        self.maximumUserMetadataSize = maximumUserMetadataSize
        self.copyBufferSize = copyBufferSize
        self.freeSpaceFloor = freeSpaceFloor
    }
}

/// How much of its file system the store leaves free (``ObjectStoreConfiguration/freeSpaceFloor``).
public enum FreeSpaceFloor: Sendable, Equatable {
    case bytes(Int)
    /// A fraction (0...1) of the file system's size.
    case fraction(Double)
    /// The smaller of the two: a large disk keeps `bytes` free, a small one a fraction of itself.
    case smallerOf(bytes: Int, fraction: Double)

    /// The default: 256 MiB or 1 % of the file system, whichever is smaller.
    public static let standard = FreeSpaceFloor.smallerOf(bytes: 256 << 20, fraction: 0.01)

    /// The floor in bytes on a file system of `capacity` bytes.
    public func bytes(capacity: Int) -> Int {
        switch self {
        case .bytes(let bytes): return max(0, bytes)
        case .fraction(let fraction): return Int(Double(capacity) * min(max(fraction, 0), 1))
        case .smallerOf(let bytes, let fraction):
            return min(
                FreeSpaceFloor.bytes(bytes).bytes(capacity: capacity),
                FreeSpaceFloor.fraction(fraction).bytes(capacity: capacity))
        }
    }

    /// Parses `--min-free-space`: a byte count with an optional unit (`512MiB`, `2GB`, `1048576`) or a
    /// percentage of the file system (`1%`).
    public static func parse(_ text: String) -> FreeSpaceFloor? {
        let value = text.trimmingCharacters(in: .whitespaces)
        if value.hasSuffix("%") {
            guard let percent = Double(value.dropLast()), (0...100).contains(percent) else { return nil }
            return .fraction(percent / 100)
        }
        let units: [(String, Double)] = [
            ("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("TiB", 1_099_511_627_776),
            ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("K", 1024), ("M", 1_048_576), ("G", 1_073_741_824),
            ("B", 1),
        ]
        for (suffix, factor) in units where value.hasSuffix(suffix) {
            guard let number = Double(value.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), number >= 0
            else {
                return nil
            }
            return .bytes(Int(number * factor))
        }
        return Int(value).flatMap { $0 >= 0 ? .bytes($0) : nil }
    }
}
