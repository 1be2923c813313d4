import Crypto
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import WireFormat

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Buckets and objects on a local file system, with atomic, durable writes. No HTTP.
///
/// ## Layout (under ``ObjectStoreConfiguration/root``)
///
///     buckets/<bucket>/bucket.json                   creation date
///     buckets/<bucket>/objects/ab/cd/<sha256(key)>   one file per object: data + JSON trailer + footer
///     multipart/<uploadId>/upload.json               bucket, key, metadata, initiation date
///     multipart/<uploadId>/part-00001                one file per part, same format as objects
///     tmp/                                           temp files; emptied at start-up
///
/// Keys never become path components: an object's file name is the SHA-256 of its key and the
/// key itself lives in the file's trailer.
///
/// ## Writes
/// Data goes to a temp file in `tmp/`, is fsync'd, then renamed into place and the directory
/// fsync'd. The commit (precondition check + rename + index update) is serialised per bucket;
/// the temp file's fsync happens before taking the lock.
///
/// ## Threads
/// Every blocking system call runs on the `NIOThreadPool` given at init, one hop per operation
/// (per chunk for ``ObjectWriter/write(_:)``). Hops are not cancellable: an operation that was
/// started completes even if the calling task is cancelled. Long copies (CopyObject,
/// CompleteMultipartUpload) occupy one pool thread for their duration.
public final class ObjectStore: Sendable {
    /// Streaming writes start writeback every 8 MiB when fsync is on (see `TempFile`).
    static let writebackInterval = 8 << 20
    public let configuration: ObjectStoreConfiguration
    let threadPool: NIOThreadPool
    let logger: Logger
    let observer: ObjectStoreObserver?
    let paths: StorePaths

    let buckets: Mutex<[String: BucketSlot]>
    let uploads: Mutex<[String: UploadEntry]>
    private let lastSequencer: Mutex<Int64>
    /// Writes refused with `StorageFull`, for `/metrics`.
    private let storageFullRefusals = Atomic<Int>(0)
    /// Completed multipart uploads, kept ``completedUploadRetention`` so that a retried
    /// CompleteMultipartUpload (the client lost the first answer) gets the same result, as S3 answers it.
    let completedUploads: Mutex<[String: CompletedUploadRecord]>
    /// Holds an exclusive `flock` on `<root>/lock` for the store's lifetime.
    private let lockFD: CInt

    /// Opens (creating if needed) the store at `configuration.root`: creates the directories,
    /// removes leftover temp files and rebuilds the in-memory key indexes from the object trailers.
    ///
    /// - Parameters:
    ///   - threadPool: where blocking file I/O runs; must be started (the singleton is).
    ///   - observer: called after each committed change; see ``ObjectStoreObserver``.
    public init(
        configuration: ObjectStoreConfiguration,
        threadPool: NIOThreadPool = .singleton,
        logger: Logger,
        observer: ObjectStoreObserver? = nil
    ) async throws {
        let paths = StorePaths(root: configuration.root)
        let loaded: LoadedState
        do {
            loaded = try await runIO(threadPool) { try StoreLoader.load(paths: paths, logger: logger) }
        } catch {
            throw ObjectStoreError.wrap(error, operation: "opening the store at \(configuration.root)")
        }
        self.configuration = configuration
        self.threadPool = threadPool
        self.logger = logger
        self.observer = observer
        self.paths = paths
        self.lockFD = loaded.lockFD
        self.buckets = Mutex(loaded.buckets.mapValues { .ready($0) })
        self.uploads = Mutex(loaded.uploads)
        self.completedUploads = Mutex(loaded.completed)
        self.lastSequencer = Mutex(0)
    }

    deinit {
        // Releases the directory lock (a one-off, non-blocking close of a lock file).
        Posix.close(lockFD)
    }

    // MARK: - Buckets

    /// Creates a bucket owned by `owner` (a user name; nil when the store has a single key). Throws
    /// `InvalidBucketName`, `BucketAlreadyOwnedByYou` (the owner has it) or `BucketAlreadyExists` (someone else has).
    @discardableResult
    public func createBucket(_ name: String, owner: String? = nil, acl: CannedACL = .private) async throws -> BucketInfo
    {
        try Validation.validateBucketName(name)
        try buckets.withLock { map in
            switch map[name] {
            case .ready(let existing) where existing.owner == owner:
                throw ObjectStoreError(
                    .bucketAlreadyOwnedByYou,
                    "Your previous request to create the named bucket succeeded and you already own it.",
                    bucket: name)
            case .ready, .creating:
                throw ObjectStoreError(
                    .bucketAlreadyExists,
                    "The requested bucket name is not available. The bucket namespace is shared by all users of the store. Please select a different name and try again.",
                    bucket: name)
            case nil:
                map[name] = .creating
            }
        }
        do {
            let paths = self.paths
            let fsync = configuration.fsync
            let state = try await io {
                try self.ensureRoom(for: 0, operation: "CreateBucket", bucket: name, key: nil)
                return try StoreLoader.createBucketOnDisk(
                    name: name, owner: owner, acl: acl, paths: paths, fsync: fsync)
            }
            buckets.withLock { $0[name] = .ready(state) }
            logger.info(
                "created bucket", metadata: ["cinescale.bucket": "\(name)", "cinescale.owner": "\(owner ?? "")"])
            return state.info
        } catch {
            buckets.withLock { _ = $0.removeValue(forKey: name) }
            throw writeFailure(error, operation: "CreateBucket", bucket: name)
        }
    }

    /// PutBucketAcl: the bucket's canned ACL, kept in its `bucket.json`.
    public func setBucketACL(_ name: String, _ acl: CannedACL) async throws {
        let bucket = try bucketState(name)
        let paths = self.paths
        let fsync = configuration.fsync
        do {
            try await io {
                try bucket.aclLock.withLock { current in
                    try StoreLoader.rewriteBucketRecord(
                        BucketRecord(
                            name: name, creationDateNs: Int64(bucket.creationDate.timeIntervalSince1970 * 1e9),
                            owner: bucket.owner, acl: acl),
                        directory: bucket.directory, paths: paths, fsync: fsync)
                    current = acl
                }
            }
        } catch {
            throw writeFailure(error, operation: "PutBucketAcl", bucket: name)
        }
    }

    /// Deletes an empty bucket (`BucketNotEmpty` if it holds objects). In-progress multipart
    /// uploads of the bucket are aborted.
    public func deleteBucket(_ name: String) async throws {
        let bucket = try bucketState(name)
        let paths = self.paths
        let fsync = configuration.fsync
        let logger = self.logger
        do {
            try await io {
                let trash = paths.tmp + "/bucket-" + randomHex()
                try bucket.state.withLock { state in
                    guard !state.deleted else {
                        throw ObjectStoreError(.noSuchBucket, "The specified bucket does not exist.", bucket: name)
                    }
                    guard state.index.isEmpty else {
                        throw ObjectStoreError(
                            .bucketNotEmpty, "The bucket you tried to delete is not empty.", bucket: name)
                    }
                    try Posix.rename(bucket.directory, trash)
                    state.deleted = true
                }
                if fsync { try Posix.fsyncDirectory(paths.buckets) }
                do {
                    try Posix.removeTree(trash)
                } catch {
                    logger.warning(
                        "could not remove a deleted bucket's files",
                        metadata: ["cinescale.bucket": "\(name)", "cinescale.error": "\(error)"])
                }
            }
        } catch {
            throw ObjectStoreError.wrap(error, operation: "DeleteBucket", bucket: name)
        }
        buckets.withLock { map in
            if case .ready(let current) = map[name], current === bucket { map[name] = nil }
        }
        let orphaned = uploads.withLock { map -> [String] in
            let ids = map.filter { $0.value.info.bucket == name }.map(\.key)
            for id in ids { map[id] = nil }
            return ids
        }
        for id in orphaned {
            try? await removeUploadDirectory(id)
        }
        logger.info("deleted bucket", metadata: ["cinescale.bucket": "\(name)"])
    }

    /// `HeadBucket`: throws `NoSuchBucket` if it does not exist.
    public func bucketInfo(_ name: String) async throws -> BucketInfo {
        try bucketState(name).info
    }

    /// All buckets, sorted by name.
    public func listBuckets() async throws -> [BucketInfo] {
        buckets.withLock { map in
            map.values.compactMap { slot -> BucketInfo? in
                if case .ready(let b) = slot { return b.info }
                return nil
            }
        }.sorted { $0.name < $1.name }
    }

    // MARK: - Free space

    /// The store's file system as `/metrics` shows it.
    public struct SpaceStatus: Sendable, Equatable {
        /// Bytes the store may still write (the file system's free space for its user).
        public var available: Int
        public var capacity: Int
        /// Bytes kept free (``ObjectStoreConfiguration/freeSpaceFloor``).
        public var floor: Int
        /// Writes refused with `StorageFull` since start-up.
        public var refusedWrites: Int
    }

    /// Reads the file system's free space (one `statvfs`; blocking but fast).
    public func spaceStatus() throws -> SpaceStatus {
        let (available, capacity) = try Posix.space(paths.root)
        return SpaceStatus(
            available: available, capacity: capacity, floor: configuration.freeSpaceFloor.bytes(capacity: capacity),
            refusedWrites: storageFullRefusals.load(ordering: .relaxed))
    }

    /// Refuses, with `StorageFull`, a write of `size` bytes (0 when unknown) that would leave less than the
    /// free-space floor. Blocking (one `statvfs`): thread pool only.
    func ensureRoom(for size: Int, operation: String, bucket: String, key: String?, uploadId: String? = nil) throws {
        let (available, capacity) = try Posix.space(paths.root)
        let floor = configuration.freeSpaceFloor.bytes(capacity: capacity)
        guard available - max(0, size) < floor else { return }
        countStorageFull()
        throw ObjectStoreError(
            .storageFull,
            "\(operation) refused: the store has \(available) bytes free and keeps at least \(floor) free; this write needs \(max(0, size)). Delete objects or give the store more disk space.",
            bucket: bucket, key: key, uploadId: uploadId)
    }

    func countStorageFull() {
        storageFullRefusals.add(1, ordering: .relaxed)
    }

    /// ``ObjectStoreError/wrap(_:operation:bucket:key:uploadId:)`` for the write paths: a full file system
    /// (ENOSPC, EDQUOT) is counted as a refused write too.
    func writeFailure(
        _ error: any Error, operation: String, bucket: String? = nil, key: String? = nil, uploadId: String? = nil
    ) -> ObjectStoreError {
        let wrapped = ObjectStoreError.wrap(error, operation: operation, bucket: bucket, key: key, uploadId: uploadId)
        if wrapped.code == .storageFull, error is SystemCallError { countStorageFull() }
        return wrapped
    }

    // MARK: - Internals shared by the operations

    func bucketState(_ name: String) throws -> BucketState {
        let slot = buckets.withLock { $0[name] }
        guard case .ready(let bucket) = slot else {
            throw ObjectStoreError(.noSuchBucket, "The specified bucket does not exist.", bucket: name)
        }
        return bucket
    }

    func io<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await runIO(threadPool, body)
    }

    /// A strictly increasing commit timestamp (ns since 1970).
    func nextSequencer() -> Int64 {
        lastSequencer.withLock { last in
            let value = max(Posix.nowNanoseconds(), last + 1)
            last = value
            return value
        }
    }

    func notify(_ event: ObjectStoreEvent) async throws {
        guard let observer else { return }
        do {
            try await observer(event)
        } catch {
            logger.error(
                "event observer failed after a committed change",
                metadata: [
                    "cinescale.bucket": "\(event.bucket)", "cinescale.key": "\(event.key)",
                    "cinescale.event": "\(event.kind.rawValue)", "cinescale.error": "\(error)",
                ])
            throw ObjectStoreError(
                .serviceUnavailable,
                "The change was committed, but its event notification could not be delivered.",
                bucket: event.bucket, key: event.key, underlying: error)
        }
    }

    func validateMetadata(_ metadata: ObjectMetadata, bucket: String, key: String) throws {
        var size = 0
        for (name, value) in metadata.userMetadata { size += name.utf8.count + value.utf8.count }
        if size > configuration.maximumUserMetadataSize {
            throw ObjectStoreError(
                .metadataTooLarge,
                "Your metadata headers exceed the maximum allowed metadata size (\(size) > \(configuration.maximumUserMetadataSize) bytes).",
                bucket: bucket, key: key)
        }
    }

    /// Moves a committed temp file into place as object `key`, atomically with the precondition
    /// check and the index update. Runs on the thread pool. On failure the temp file is removed.
    /// Returns the commit's sequencer.
    func install(
        _ temp: TempFile, bucket: BucketState, entry: IndexEntry, conditions: WriteConditions
    ) throws -> Int64 {
        let location = bucket.location(of: entry.key)
        let fsync = configuration.fsync
        do {
            // Each directory's entry is made durable once per process. An existing one whose bit is not set
            // may have just been made by a concurrent PUT that has not yet fsync'd its parent: fsync it anyway.
            let level1 = BucketState.level1Bit(location.directory)
            if !bucket.isMade(level1) {
                _ = try Posix.mkdir(location.level1)
                if fsync { try Posix.fsyncDirectory(bucket.objectsDirectory) }
                bucket.made(level1)
            }
            if !bucket.isMade(location.directory) {
                _ = try Posix.mkdir(location.level2)
                if fsync { try Posix.fsyncDirectory(location.level1) }
                bucket.made(location.directory)
            }
            var retired: String?
            let sequencer = try bucket.state.withLock { state -> Int64 in
                guard !state.deleted else {
                    throw ObjectStoreError(.noSuchBucket, "The specified bucket does not exist.", bucket: bucket.name)
                }
                let current = state.index.find(entry.key)
                try checkConditions(conditions, current: current, bucket: bucket.name, key: entry.key)
                retired = retire(location.file, current: current)
                do {
                    try Posix.rename(temp.path, location.file)
                } catch {
                    if let retired { _ = try? Posix.unlink(retired) }
                    throw error
                }
                temp.markInstalled()
                state.index.upsert(entry)
                return nextSequencer()
            }
            if let retired { release(retired) }
            if fsync { try Posix.fsyncDirectory(location.level2) }
            logger.debug(
                "object committed",
                metadata: [
                    "cinescale.bucket": "\(bucket.name)", "cinescale.key": "\(entry.key)",
                    "cinescale.size": "\(entry.size)", "cinescale.etag": "\(entry.etag)",
                ])
            return sequencer
        } catch {
            temp.discardSync()
            if bucket.isDeleted {
                throw ObjectStoreError(.noSuchBucket, "The specified bucket does not exist.", bucket: bucket.name)
            }
            throw error
        }
    }

    /// Objects of at least this size are retired (below); smaller files are unlinked in place, which is cheap.
    static let retireThreshold = 1 << 20

    /// Gives the file of an object about to be replaced or deleted a second name in `tmp/`, so that the rename
    /// or unlink under the bucket lock only drops a name: freeing a large file's blocks and page cache (160 ms
    /// for 200 MB on ext4 here) then happens in ``release(_:)``, after the answer and outside the lock. nil when
    /// there is no file, it is small (below ``retireThreshold``, cheap to free in place) or the file system
    /// has no hard links; the caller then pays the cost as before. A crash leaves the name in `tmp/`, which
    /// start-up empties.
    func retire(_ file: String, current: IndexEntry?) -> String? {
        guard let current, current.size >= Self.retireThreshold else { return nil }
        let name = paths.tmp + "/" + randomHex() + ".retired"
        return Posix.link(file, as: name) ? name : nil
    }

    /// Unlinks a retired file on the thread pool, without waiting.
    func release(_ retired: String) {
        threadPool.submit { _ in _ = try? Posix.unlink(retired) }
    }

    func checkConditions(_ conditions: WriteConditions, current: IndexEntry?, bucket: String, key: String) throws {
        if let ifMatch = conditions.ifMatch {
            guard let current else {
                throw ObjectStoreError(.noSuchKey, "The specified key does not exist.", bucket: bucket, key: key)
            }
            let wanted = Validation.normalizeETag(ifMatch)
            if wanted != "*" && wanted != current.etag.lowercased() {
                throw ObjectStoreError(
                    .preconditionFailed, "At least one of the pre-conditions you specified did not hold (If-Match).",
                    bucket: bucket, key: key)
            }
        }
        if let ifNoneMatch = conditions.ifNoneMatch, let current {
            let wanted = Validation.normalizeETag(ifNoneMatch)
            if wanted == "*" || wanted == current.etag.lowercased() {
                throw ObjectStoreError(
                    .preconditionFailed,
                    "At least one of the pre-conditions you specified did not hold (If-None-Match).",
                    bucket: bucket, key: key)
            }
        }
    }

    /// Decodes a base64 Content-MD5 header value.
    static func decodeContentMD5(_ value: String, bucket: String, key: String) throws -> [UInt8] {
        guard let data = Data(base64Encoded: value.trimmingSpaces()), data.count == 16 else {
            throw ObjectStoreError(
                .invalidDigest, "The Content-MD5 you specified is not valid.", bucket: bucket, key: key)
        }
        return [UInt8](data)
    }
}
