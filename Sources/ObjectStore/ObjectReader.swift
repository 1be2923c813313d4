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

/// An open object: a file descriptor plus the metadata read from *that descriptor's* trailer,
/// so a concurrent overwrite or delete can't mix versions — the reader keeps reading the version
/// it opened until ``close()``.
///
/// Thread-safe: reads may overlap. Always ``close()`` it; a reader dropped while open closes its
/// descriptor on the thread pool.
public final class ObjectReader: Sendable {
    /// Metadata of the opened version.
    public let info: ObjectInfo
    /// Number of data bytes (== `info.size`); the data is bytes `0..<dataLength` of ``fileDescriptor``.
    public let dataLength: Int

    struct State: Sendable {
        var fd: CInt
        var closed = false
        var inFlight = 0
    }

    let threadPool: NIOThreadPool
    let state: Mutex<State>

    init(fd: CInt, info: ObjectInfo, threadPool: NIOThreadPool) {
        self.info = info
        self.dataLength = info.size
        self.threadPool = threadPool
        self.state = Mutex(State(fd: fd))
    }

    deinit {
        let fd = state.withLock { state -> CInt? in
            guard !state.closed else { return nil }
            state.closed = true
            return state.fd
        }
        if let fd { threadPool.submit { _ in Posix.close(fd) } }
    }

    /// The raw descriptor (for a future zero-copy path, e.g. `sendfile` of `0..<dataLength`);
    /// valid until ``close()``, -1 afterwards. Do not close it yourself, and do not read past
    /// `dataLength` (the metadata trailer follows the data).
    public var fileDescriptor: CInt {
        state.withLock { $0.closed ? -1 : $0.fd }
    }

    /// Reads up to `length` data bytes at `offset` with one `pread` on the thread pool, straight
    /// into a new `ByteBuffer`. Returns fewer bytes only at the end of the data (an empty buffer
    /// at or past the end).
    public func read(offset: Int, length: Int) async throws -> ByteBuffer {
        guard offset >= 0, length >= 0 else {
            throw ObjectStoreError(.invalidArgument, "Negative offset or length.", bucket: info.bucket, key: info.key)
        }
        let start = min(offset, dataLength)
        let count = min(length, dataLength - start)
        if count == 0 { return ByteBuffer() }
        let info = self.info
        do {
            return try await runIO(threadPool) { [self] in
                let fd = try self.state.withLock { state -> CInt in
                    guard !state.closed else {
                        throw ObjectStoreError(
                            .internalError, "The object reader is closed.", bucket: info.bucket, key: info.key)
                    }
                    state.inFlight += 1
                    return state.fd
                }
                defer {
                    let toClose = self.state.withLock { state -> CInt? in
                        state.inFlight -= 1
                        return state.closed && state.inFlight == 0 ? state.fd : nil
                    }
                    if let toClose { Posix.close(toClose) }
                }
                var buffer = ByteBufferAllocator().buffer(capacity: count)
                try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { pointer in
                    try Posix.preadFull(fd, UnsafeMutableRawBufferPointer(rebasing: pointer[0..<count]), offset: start)
                }
                return buffer
            }
        } catch {
            throw ObjectStoreError.wrap(error, operation: "GetObject", bucket: info.bucket, key: info.key)
        }
    }

    /// Closes the descriptor (after in-flight reads finish). Idempotent.
    public func close() async throws {
        try await runIO(threadPool) { [self] in
            let fd = self.state.withLock { state -> CInt? in
                guard !state.closed else { return nil }
                state.closed = true
                return state.inFlight == 0 ? state.fd : nil
            }
            if let fd { Posix.close(fd) }
        }
    }
}
