import Crypto
import Foundation
import Logging
import NIOCore
import ObjectStore
import Synchronization
import Testing

/// A fresh directory per test: `<tmp>/cinescale-objectstore-<uuid>/`, with the store's root at `data/`
/// inside it (so tests can check that nothing escapes the root).
final class TestDirectory: Sendable {
    let parent: String
    let root: String

    init() throws {
        parent = NSTemporaryDirectory() + "cinescale-objectstore-" + UUID().uuidString
        root = parent + "/data"
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: parent)
    }

    /// All regular files below `path`, relative to it.
    func files(under path: String) -> [String] {
        guard let enumerator = FileManager.default.enumerator(atPath: path) else { return [] }
        var result: [String] = []
        while let item = enumerator.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path + "/" + item, isDirectory: &isDirectory),
                !isDirectory.boolValue
            {
                result.append(item)
            }
        }
        return result.sorted()
    }
}

final class EventLog: Sendable {
    let events = Mutex<[ObjectStoreEvent]>([])
    let failing = Mutex(false)

    var all: [ObjectStoreEvent] { events.withLock { $0 } }

    var observer: ObjectStoreObserver {
        { [self] event in
            events.withLock { $0.append(event) }
            if failing.withLock({ $0 }) { throw ObserverFailure() }
        }
    }
}

struct ObserverFailure: Error {}

func testLogger() -> Logger {
    var logger = Logger(label: "cinescale.objectstore.tests")
    logger.logLevel = .critical
    return logger
}

func makeStore(
    _ dir: TestDirectory, fsync: Bool = false, minimumPartSize: Int = 1024, maximumObjectSize: Int? = nil,
    observer: ObjectStoreObserver? = nil
) async throws -> ObjectStore {
    var configuration = ObjectStoreConfiguration(root: dir.root, fsync: fsync, minimumPartSize: minimumPartSize)
    if let maximumObjectSize { configuration.maximumObjectSize = maximumObjectSize }
    return try await openStore(configuration, observer: observer)
}

/// Opens a store, waiting while one the test has just dropped still holds the directory's lock: its last reference
/// can outlive the test's scope by a moment (the thread-pool job that resumed the caller lets go of its closure
/// after), which a loaded machine once stretched past the reopen of a "restart".
func openStore(_ configuration: ObjectStoreConfiguration, observer: ObjectStoreObserver? = nil) async throws
    -> ObjectStore
{
    let deadline = ContinuousClock.now + .seconds(60)
    while true {
        do {
            return try await ObjectStore(configuration: configuration, logger: testLogger(), observer: observer)
        } catch let error as ObjectStoreError
            where error.message.contains("in use by another ObjectStore") && ContinuousClock.now < deadline
        {
            try await Task.sleep(for: .milliseconds(20))
        }
    }
}

/// Runs `body` with a store in a fresh directory, removing the directory afterwards.
func withStore(
    fsync: Bool = false, minimumPartSize: Int = 1024, maximumObjectSize: Int? = nil,
    observer: ObjectStoreObserver? = nil,
    _ body: (ObjectStore, TestDirectory) async throws -> Void
) async throws {
    let dir = try TestDirectory()
    defer { dir.remove() }
    let store = try await makeStore(
        dir, fsync: fsync, minimumPartSize: minimumPartSize, maximumObjectSize: maximumObjectSize, observer: observer)
    try await body(store, dir)
}

func buffer(_ bytes: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: bytes) }
func buffer(_ string: String) -> ByteBuffer { ByteBuffer(string: string) }

func md5Hex(_ bytes: [UInt8]) -> String {
    Insecure.MD5.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

func md5Base64(_ bytes: [UInt8]) -> String {
    Data(Insecure.MD5.hash(data: bytes)).base64EncodedString()
}

/// Deterministic pseudo-random bytes.
func pattern(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix(seed: seed)
    return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
}

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Reads a whole object in 1 MiB reads.
func readAll(_ store: ObjectStore, bucket: String, key: String) async throws -> (ObjectInfo, [UInt8]) {
    let reader = try await store.openObject(bucket: bucket, key: key)
    let bytes = try await readAll(reader)
    try await reader.close()
    return (reader.info, bytes)
}

func readAll(_ reader: ObjectReader, chunk: Int = 1 << 20) async throws -> [UInt8] {
    var bytes: [UInt8] = []
    var offset = 0
    while true {
        var piece = try await reader.read(offset: offset, length: chunk)
        if piece.readableBytes == 0 { break }
        offset += piece.readableBytes
        bytes += piece.readBytes(length: piece.readableBytes)!
    }
    return bytes
}

/// Expects `body` to throw an `ObjectStoreError` with `code`.
func expectError<T>(
    _ code: ObjectStoreError.Code, sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> T
) async {
    do {
        _ = try await body()
        Issue.record("expected \(code), but nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as ObjectStoreError {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected \(code), got \(error)", sourceLocation: sourceLocation)
    }
}

/// Byte-wise (UTF-8) ordering, independent of the store's implementation.
func bytesLess(_ a: String, _ b: String) -> Bool { Array(a.utf8).lexicographicallyPrecedes(Array(b.utf8)) }
