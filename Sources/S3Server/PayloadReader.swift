import HTTPTypes
import Hummingbird
import NIOCore
import SigV4
import Synchronization

/// Reads a request body through the payload checks its signature demands: the signed SHA-256, aws-chunked
/// framing with chunk signatures, and `x-amz-checksum-*` headers or trailers.
struct PayloadReader: Sendable {
    let body: RequestBody
    let expectation: PayloadExpectation
    let headers: [(name: String, value: String)]

    init(body: RequestBody, expectation: PayloadExpectation, headers: HTTPFields) {
        self.body = body
        self.expectation = expectation
        self.headers = headers.map { (name: $0.name.canonicalName, value: $0.value) }
    }

    var isChunked: Bool {
        if case .awsChunked = expectation { return true }
        return false
    }

    /// Streams the decoded payload to `sink` in pieces of about `batchSize` bytes, then runs the final checks.
    ///
    /// Receiving and sinking overlap: while one piece is being sunk (hashed and written to disk), the next is
    /// read from the connection. At most one `sink` call runs at a time, in order. `sink` has seen every byte
    /// before this returns; nothing it saw may be trusted if this throws.
    func stream(
        batchSize: Int = 1 << 20, limit: Int,
        into sink: @escaping @Sendable (ByteBuffer) async throws -> Void
    ) async throws -> PayloadResult {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var decoder = PayloadDecoder(expectation: expectation, headers: headers)
            var pending = ByteBuffer()
            var total = 0
            var sinking = false
            let chunked = isChunked

            var iterator = body.makeAsyncIterator()
            var finished = false
            while !finished {
                var ready: ByteBuffer?
                if let chunk = try await iterator.next() {
                    if chunked {
                        try chunk.withUnsafeReadableBytes { raw in
                            try decoder.feed(raw) { decoded in pending.writeBytes(decoded) }
                        }
                    } else {
                        try chunk.withUnsafeReadableBytes { raw in try decoder.feed(raw) { _ in } }
                        if pending.readableBytes == 0 && chunk.readableBytes >= batchSize {
                            ready = chunk
                        } else {
                            var chunk = chunk
                            pending.writeBuffer(&chunk)
                        }
                    }
                    if ready == nil && pending.readableBytes >= batchSize {
                        ready = pending
                        pending = ByteBuffer()
                    }
                } else {
                    finished = true
                    if pending.readableBytes > 0 {
                        ready = pending
                        pending = ByteBuffer()
                    }
                }
                guard let piece = ready else { continue }
                total += piece.readableBytes
                guard total <= limit else { throw S3ServerError.entityTooLarge(max: limit) }
                if sinking { try await group.next() }
                group.addTask { try await sink(piece) }
                sinking = true
            }
            let result = try decoder.finish()
            try await group.waitForAll()
            return result
        }
    }

    /// Collects a small body (XML documents), refusing more than `limit` bytes.
    func collect(limit: Int) async throws -> ByteBuffer {
        let collected = CollectedBytes()
        _ = try await stream(batchSize: 64 * 1024, limit: limit) { piece in collected.append(piece) }
        return collected.buffer
    }
}

/// Accumulates the pieces of a small body as `stream` sinks them.
private final class CollectedBytes: Sendable {
    private let storage = Mutex(ByteBuffer())

    var buffer: ByteBuffer { storage.withLock { $0 } }

    func append(_ piece: ByteBuffer) {
        storage.withLock { buffer in
            var piece = piece
            buffer.writeBuffer(&piece)
        }
    }
}
