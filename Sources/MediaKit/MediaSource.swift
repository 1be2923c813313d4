import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Random-access bytes FFmpeg reads from. Called synchronously on MediaKit's own threads (never on the Swift
/// concurrency pool), so an implementation may block while it fetches.
public protocol MediaSource: Sendable {
    /// Total size in bytes.
    var size: Int64 { get }
    /// Reads up to `buffer.count` bytes at `offset`; returns how many (0 only at or past the end).
    func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// A local file.
public final class FileSource: MediaSource {
    public let size: Int64
    private let descriptor: Int32

    public init(path: String) throws(MediaError) {
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw MediaError(.sourceUnavailable, "cannot open \(path): errno \(errno)") }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            close(descriptor)
            throw MediaError(.sourceUnavailable, "cannot stat \(path): errno \(errno)")
        }
        size = Int64(info.st_size)
    }

    deinit { close(descriptor) }

    public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = pread(descriptor, buffer.baseAddress, buffer.count, off_t(offset))
        guard n >= 0 else { throw MediaError(.sourceUnavailable, "read failed: errno \(errno)") }
        return n
    }
}

/// Reads through `fetch` (an HTTP Range request, say) in aligned chunks of `chunkSize`, keeping the last
/// `cachedChunks` in memory, so FFmpeg's small, back-and-forth reads become few large requests. Counts the
/// requests and bytes fetched.
public final class ChunkedRangeSource: MediaSource {
    public let size: Int64
    public let chunkSize: Int
    private let fetch: @Sendable (Range<Int64>) throws -> [UInt8]
    private let state: Mutex<State>
    private let cachedChunks: Int

    private struct State {
        /// Most recently used last.
        var chunks: [(index: Int64, bytes: [UInt8])] = []
        var requests = 0
        var bytesFetched: Int64 = 0
    }

    public init(
        size: Int64, chunkSize: Int = 256 * 1024, cachedChunks: Int = 4,
        fetch: @escaping @Sendable (Range<Int64>) throws -> [UInt8]
    ) {
        self.size = size
        self.chunkSize = chunkSize
        self.cachedChunks = max(1, cachedChunks)
        self.fetch = fetch
        state = Mutex(State())
    }

    /// Range requests made so far.
    public var requests: Int { state.withLock { $0.requests } }
    /// Bytes fetched so far.
    public var bytesFetched: Int64 { state.withLock { $0.bytesFetched } }

    public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard offset < size, buffer.count > 0 else { return 0 }
        let index = offset / Int64(chunkSize)
        let chunk = try self.chunk(index)
        let within = Int(offset - index * Int64(chunkSize))
        let n = min(buffer.count, chunk.count - within)
        guard n > 0 else { return 0 }
        chunk.withUnsafeBytes { source in
            buffer.baseAddress!.copyMemory(from: source.baseAddress! + within, byteCount: n)
        }
        return n
    }

    private func chunk(_ index: Int64) throws -> [UInt8] {
        if let hit = state.withLock({ s -> [UInt8]? in
            guard let position = s.chunks.firstIndex(where: { $0.index == index }) else { return nil }
            let entry = s.chunks.remove(at: position)
            s.chunks.append(entry)
            return entry.bytes
        }) {
            return hit
        }
        let start = index * Int64(chunkSize)
        let end = min(size, start + Int64(chunkSize))
        let bytes = try fetch(start..<end)
        guard bytes.count == Int(end - start) else {
            throw MediaError(
                .sourceUnavailable, "a range read returned \(bytes.count) bytes instead of \(end - start)")
        }
        state.withLock { s in
            s.requests += 1
            s.bytesFetched += Int64(bytes.count)
            s.chunks.append((index, bytes))
            if s.chunks.count > cachedChunks { s.chunks.removeFirst() }
        }
        return bytes
    }
}
