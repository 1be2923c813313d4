// What ObjectStore's operations share: each bucket's in-memory state (index, uploads, directories made), the
// store's paths on disk, and the small helpers for names, I/O hops and sequencers.
import Crypto
import Foundation
import NIOPosix
import Synchronization
import WireFormat

enum BucketSlot: Sendable {
    /// Being created: invisible to lookups, but a second create fails.
    case creating
    case ready(BucketState)
}

struct UploadEntry: Sendable {
    var info: MultipartUploadInfo
    var completing = false
}

struct BucketMutableState: Sendable {
    var index: KeyIndex
    var deleted = false
}

/// One bucket: its directory and its key index, whose lock serialises commits.
///
/// Lock discipline: `state` is only locked on thread-pool threads (it is held across `rename`
/// and `unlink`), or for pure in-memory work.
final class BucketState: Sendable {
    let name: String
    let creationDate: Date
    /// The user who created the bucket (nil: made before users, or with the single configured key).
    let owner: String?
    /// The bucket's canned ACL; its lock also serialises rewrites of `bucket.json`.
    let aclLock: Mutex<CannedACL>
    let directory: String
    let objectsDirectory: String
    let state: Mutex<BucketMutableState>
    /// One bit per `objects/ab/cd` directory (bits 0..<65 536) and per `objects/ab` (the 256 after them)
    /// whose entry is durable: found at start-up, or made and its parent fsync'd since. A PUT makes its
    /// `mkdir` calls and parent fsyncs only the first time. Directories go only with their bucket.
    private let madeDirectories = Mutex([UInt64](repeating: 0, count: (65_536 + 256) / 64))

    init(
        name: String, creationDate: Date, owner: String? = nil, acl: CannedACL = .private, directory: String,
        index: KeyIndex, existingDirectories: [Int] = []
    ) {
        self.name = name
        self.creationDate = creationDate
        self.owner = owner
        self.aclLock = Mutex(acl)
        self.directory = directory
        self.objectsDirectory = directory + "/objects"
        self.state = Mutex(BucketMutableState(index: index))
        for directory in existingDirectories {
            made(directory)
            made(Self.level1Bit(directory))
        }
    }

    /// The bit of the `objects/ab` that holds `objects/ab/cd` (bit `0xabcd`).
    static func level1Bit(_ directory: Int) -> Int { 65_536 + directory >> 8 }

    var info: BucketInfo {
        BucketInfo(name: name, creationDate: creationDate, owner: owner, acl: aclLock.withLock { $0 })
    }
    var isDeleted: Bool { state.withLock { $0.deleted } }

    struct Location {
        var level1: String
        var level2: String
        var file: String
        /// `abcd` of `objects/ab/cd` as a number, 0..<65 536.
        var directory: Int
    }

    /// `objects/ab/cd/<sha256 hex of the key>`.
    func location(of key: String) -> Location {
        let hash = objectHash(key)
        let l1 = objectsDirectory + "/" + hash.prefix(2)
        let l2 = l1 + "/" + hash.dropFirst(2).prefix(2)
        return Location(level1: l1, level2: l2, file: l2 + "/" + hash, directory: Int(hash.prefix(4), radix: 16) ?? 0)
    }

    func isMade(_ bit: Int) -> Bool {
        madeDirectories.withLock { $0[bit >> 6] & (1 << UInt64(bit & 63)) != 0 }
    }

    func made(_ bit: Int) {
        madeDirectories.withLock { $0[bit >> 6] |= 1 << UInt64(bit & 63) }
    }
}

struct StorePaths: Sendable {
    let root: String
    let buckets: String
    let multipart: String
    let tmp: String

    init(root: String) {
        var root = root
        while root.count > 1 && root.hasSuffix("/") { root.removeLast() }
        self.root = root
        self.buckets = root + "/buckets"
        self.multipart = root + "/multipart"
        self.tmp = root + "/tmp"
    }

    func bucket(_ name: String) -> String { buckets + "/" + name }
    func upload(_ id: String) -> String { multipart + "/" + id }
    var completed: String { root + "/completed" }
    func completedUpload(_ id: String) -> String { completed + "/" + id + ".json" }
    func part(_ id: String, _ number: Int) -> String { upload(id) + "/" + partFileName(number) }
}

/// The object file name of a key: hex SHA-256 of its UTF-8 bytes.
func objectHash(_ key: String) -> String {
    Hex.encode(SHA256.hash(data: Array(key.utf8)))
}

func partFileName(_ number: Int) -> String {
    let digits = String(number)
    return "part-" + String(repeating: "0", count: max(0, 5 - digits.count)) + digits
}

/// Runs `body` on the pool. Not cancellable once submitted (a started operation completes).
func runIO<T: Sendable>(_ pool: NIOThreadPool, _ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        pool.submit { state in
            switch state {
            case .active:
                continuation.resume(with: Result(catching: body))
            case .cancelled:
                continuation.resume(
                    throwing: ObjectStoreError(.serviceUnavailable, "The I/O thread pool is shut down."))
            }
        }
    }
}

func randomHex(bytes: Int = 16) -> String {
    var generator = SystemRandomNumberGenerator()
    return Hex.encode((0..<bytes).map { _ in UInt8.random(in: 0...255, using: &generator) })
}

/// Uppercase, zero-padded 16-digit hex (S3-style event sequencer).
func sequencerString(_ value: Int64) -> String {
    let hex = String(UInt64(bitPattern: value), radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 16 - hex.count)) + hex
}
