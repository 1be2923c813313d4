import Crypto
import Foundation
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// A temp file in `tmp/` being filled. Owns the file until it is installed or discarded; if it
/// is dropped before that, `deinit` closes and deletes it on the thread pool.
final class TempFile: Sendable {
    /// `Insecure.MD5` is a copy-on-write value that swift-crypto doesn't mark `Sendable`; it only
    /// ever lives inside `state`'s lock.
    struct Hasher: @unchecked Sendable {
        var md5 = Insecure.MD5()
        mutating func update(bufferPointer: UnsafeRawBufferPointer) { md5.update(bufferPointer: bufferPointer) }
        func finalize() -> Insecure.MD5.Digest { md5.finalize() }
    }

    struct State: Sendable {
        var fd: CInt
        var bytesWritten = 0
        /// How far writeback has been started (see `writebackInterval`).
        var writebackStarted = 0
        /// Installed (renamed into place) or discarded: nothing left to clean up.
        var done = false
    }

    let path: String
    let threadPool: NIOThreadPool
    let state: Mutex<State>
    /// The MD5 of the bytes appended, under its own lock: the streaming writers update it on one thread while
    /// another writes the same bytes to the file (MD5 at ~600 MB/s is the slowest part of a PUT).
    let md5 = Mutex(Hasher())
    /// When non-zero, writeback to disk is started every this many bytes while the body streams in, so
    /// the fsync before commit overlaps with receiving instead of following it.
    let writebackInterval: Int

    private init(path: String, fd: CInt, threadPool: NIOThreadPool, writebackInterval: Int) {
        self.path = path
        self.threadPool = threadPool
        self.state = Mutex(State(fd: fd))
        self.writebackInterval = writebackInterval
    }

    /// Creates a new temp file. Blocking: thread pool only.
    static func create(in directory: String, threadPool: NIOThreadPool, writebackInterval: Int = 0) throws -> TempFile {
        let path = directory + "/" + randomHex() + ".tmp"
        let fd = try Posix.open(path, O_CREAT | O_EXCL | O_WRONLY, mode: 0o644)
        return TempFile(path: path, fd: fd, threadPool: threadPool, writebackInterval: writebackInterval)
    }

    deinit {
        let leftover = state.withLock { state -> CInt? in
            guard !state.done else { return nil }
            state.done = true
            return state.fd
        }
        guard let fd = leftover else { return }
        let path = self.path
        threadPool.submit { _ in
            if fd >= 0 { Posix.close(fd) }
            _ = try? Posix.unlink(path)
        }
    }

    var bytesWritten: Int { state.withLock { $0.bytesWritten } }

    private static func finished() -> ObjectStoreError {
        ObjectStoreError(.invalidRequest, "This writer has already been committed, aborted or has failed.")
    }

    /// Appends a chunk, hashing it on a second thread-pool thread while this one writes it. Bytes must be
    /// appended one chunk at a time (each call awaited), so the MD5 sees them in order.
    func append(_ buffer: ByteBuffer, limit: Int) async throws {
        async let hashed: Void = runIO(threadPool) { buffer.withUnsafeReadableBytes { self.hash($0) } }
        do {
            try await runIO(threadPool) { try buffer.withUnsafeReadableBytes { try self.write($0, limit: limit) } }
        } catch {
            try? await hashed
            throw error
        }
        try await hashed
    }

    private func hash(_ bytes: UnsafeRawBufferPointer) {
        md5.withLock { $0.update(bufferPointer: bytes) }
    }

    /// Appends bytes to the file (not the MD5). Blocking. On an I/O error the temp file is discarded.
    private func write(_ bytes: UnsafeRawBufferPointer, limit: Int) throws {
        try state.withLock { state in
            guard !state.done, state.fd >= 0 else { throw TempFile.finished() }
            if state.bytesWritten + bytes.count > limit {
                discardLocked(&state)
                throw ObjectStoreError(
                    .entityTooLarge, "Your proposed upload exceeds the maximum allowed size (\(limit) bytes).")
            }
            do {
                try Posix.writeAll(state.fd, bytes, path: path)
            } catch {
                discardLocked(&state)
                throw error
            }
            state.bytesWritten += bytes.count
            if writebackInterval > 0, state.bytesWritten - state.writebackStarted >= writebackInterval {
                Posix.startWriteback(
                    state.fd, offset: state.writebackStarted, length: state.bytesWritten - state.writebackStarted)
                state.writebackStarted = state.bytesWritten
            }
        }
    }

    /// Appends `length` bytes of another file (in-kernel copy where possible). Blocking.
    /// With `hash`, the bytes are also fed to the MD5 (forces a user-space copy).
    func append(from source: CInt, offset: Int, length: Int, hash: Bool, bufferSize: Int) throws {
        try state.withLock { state in
            guard !state.done, state.fd >= 0 else { throw TempFile.finished() }
            do {
                if hash {
                    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(4096, bufferSize), alignment: 16)
                    defer { buffer.deallocate() }
                    var done = 0
                    while done < length {
                        let chunk = UnsafeMutableRawBufferPointer(
                            rebasing: buffer[0..<min(length - done, buffer.count)])
                        let n = try Posix.preadFull(source, chunk, offset: offset + done)
                        if n == 0 { throw SystemCallError(call: "pread (unexpected end of file)", errno: EIO) }
                        let slice = UnsafeRawBufferPointer(rebasing: chunk[0..<n])
                        try Posix.writeAll(state.fd, slice, path: path)
                        md5.withLock { $0.update(bufferPointer: slice) }
                        done += n
                    }
                } else {
                    try Posix.copy(
                        from: source, sourceOffset: offset, length: length, to: state.fd, bufferSize: bufferSize,
                        path: path)
                }
            } catch {
                discardLocked(&state)
                throw error
            }
            state.bytesWritten += length
        }
    }

    /// The MD5 of everything appended so far, and the byte count.
    func digest() throws -> (md5: [UInt8], size: Int) {
        try state.withLock { state in
            guard !state.done else { throw TempFile.finished() }
            return (Array(md5.withLock { $0.finalize() }), state.bytesWritten)
        }
    }

    /// Appends the trailer, fsyncs (if asked) and closes. Blocking. Discards the file on failure.
    func seal(_ trailer: FileTrailer, fsync: Bool) throws {
        try state.withLock { state in
            guard !state.done, state.fd >= 0 else { throw TempFile.finished() }
            do {
                let bytes = trailer.encoded()
                try bytes.withUnsafeBytes { try Posix.writeAll(state.fd, $0, path: path) }
                if fsync { try Posix.fsync(state.fd, path: path) }
            } catch {
                discardLocked(&state)
                throw error
            }
            Posix.close(state.fd)
            state.fd = -1
        }
    }

    /// Called once the file has been renamed into place.
    func markInstalled() {
        state.withLock { $0.done = true }
    }

    /// Closes and deletes the temp file. Blocking. Idempotent.
    func discardSync() {
        state.withLock { discardLocked(&$0) }
    }

    private func discardLocked(_ state: inout State) {
        guard !state.done else { return }
        state.done = true
        if state.fd >= 0 {
            Posix.close(state.fd)
            state.fd = -1
        }
        _ = try? Posix.unlink(path)
    }
}

/// Receives the body of a PUT, then commits it as an object.
///
/// `Sendable` (its state is behind a lock) so it can be handed between tasks, but it is meant
/// to be driven by one task at a time: `write` calls must not overlap. Call ``commit(metadata:conditions:contentMD5:)``
/// or ``abort()`` exactly once; a writer dropped without either deletes its temp file, so an
/// interrupted upload never becomes visible.
public final class ObjectWriter: Sendable {
    let store: ObjectStore
    let bucket: BucketState
    /// The key being written.
    public let key: String
    let temp: TempFile

    init(store: ObjectStore, bucket: BucketState, key: String, temp: TempFile) {
        self.store = store
        self.bucket = bucket
        self.key = key
        self.temp = temp
    }

    /// The bucket being written to.
    public var bucketName: String { bucket.name }

    /// Bytes written so far.
    public var bytesWritten: Int { temp.bytesWritten }

    /// Appends a chunk (written and hashed on two thread-pool threads at once). Throws `EntityTooLarge`
    /// beyond ``ObjectStoreConfiguration/maximumObjectSize``; after any error the writer is unusable.
    public func write(_ buffer: ByteBuffer) async throws {
        guard buffer.readableBytes > 0 else { return }
        let temp = self.temp
        let limit = store.configuration.maximumObjectSize
        do {
            try await temp.append(buffer, limit: limit)
        } catch {
            throw store.writeFailure(error, operation: "PutObject", bucket: bucket.name, key: key)
        }
    }

    /// Makes the data visible as the object, atomically replacing any previous version.
    ///
    /// - Parameters:
    ///   - contentMD5: the request's base64 `Content-MD5`; a mismatch throws `BadDigest` and commits nothing.
    ///   - conditions: checked atomically with the rename (`PreconditionFailed` / `NoSuchKey`).
    /// - Throws: `ServiceUnavailable` if the observer failed — the object *is* committed then.
    @discardableResult
    public func commit(
        metadata: ObjectMetadata = ObjectMetadata(), conditions: WriteConditions = .none, contentMD5: String? = nil
    ) async throws -> ObjectInfo {
        let (info, sequencer) = try await store.commitWriter(
            temp: temp, bucket: bucket, key: key, metadata: metadata, conditions: conditions, contentMD5: contentMD5)
        try await store.notify(
            ObjectStoreEvent(
                kind: .put, bucket: info.bucket, key: key, size: info.size, etag: info.etag,
                sequencer: sequencerString(sequencer), time: Date(nanoseconds: sequencer), metadata: info.metadata))
        return info
    }

    /// Discards the upload. Idempotent; never throws.
    public func abort() async {
        let temp = self.temp
        _ = try? await store.io { temp.discardSync() }
    }
}

/// Receives the body of an UploadPart. Same contract as ``ObjectWriter``.
public final class PartWriter: Sendable {
    let store: ObjectStore
    public let bucket: String
    public let key: String
    public let uploadId: String
    public let partNumber: Int
    let temp: TempFile

    init(store: ObjectStore, bucket: String, key: String, uploadId: String, partNumber: Int, temp: TempFile) {
        self.store = store
        self.bucket = bucket
        self.key = key
        self.uploadId = uploadId
        self.partNumber = partNumber
        self.temp = temp
    }

    public var bytesWritten: Int { temp.bytesWritten }

    /// Appends a chunk. Throws `EntityTooLarge` beyond ``ObjectStoreConfiguration/maximumPartSize``.
    public func write(_ buffer: ByteBuffer) async throws {
        guard buffer.readableBytes > 0 else { return }
        let temp = self.temp
        let limit = store.configuration.maximumPartSize
        do {
            try await temp.append(buffer, limit: limit)
        } catch {
            throw store.writeFailure(error, operation: "UploadPart", bucket: bucket, key: key, uploadId: uploadId)
        }
    }

    /// Stores the part, replacing an earlier upload of the same part number.
    /// Throws `BadDigest` on a Content-MD5 mismatch, `NoSuchUpload` if the upload was completed or aborted.
    @discardableResult
    public func commit(contentMD5: String? = nil) async throws -> PartInfo {
        try await store.commitPart(self, contentMD5: contentMD5)
    }

    /// Discards the part. Idempotent; never throws.
    public func abort() async {
        let temp = self.temp
        _ = try? await store.io { temp.discardSync() }
    }
}
