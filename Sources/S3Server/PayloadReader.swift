import HTTPTypes
import Hummingbird
import NIOCore
import SigV4

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
    /// `sink` has seen every byte before this returns; nothing it saw may be trusted if this throws.
    func stream(
        batchSize: Int = 1 << 20, limit: Int,
        into sink: (ByteBuffer) async throws -> Void
    ) async throws -> PayloadResult {
        var decoder = PayloadDecoder(expectation: expectation, headers: headers)
        var pending = ByteBuffer()
        var total = 0
        let chunked = isChunked
        for try await chunk in body {
            if chunked {
                try chunk.withUnsafeReadableBytes { raw in
                    try decoder.feed(raw) { decoded in
                        pending.writeBytes(decoded)
                    }
                }
            } else {
                try chunk.withUnsafeReadableBytes { raw in
                    try decoder.feed(raw) { _ in }
                }
                if pending.readableBytes == 0 && chunk.readableBytes >= batchSize {
                    total += chunk.readableBytes
                    guard total <= limit else { throw S3ServerError.entityTooLarge(max: limit) }
                    try await sink(chunk)
                    continue
                }
                var chunk = chunk
                pending.writeBuffer(&chunk)
            }
            if pending.readableBytes >= batchSize {
                total += pending.readableBytes
                guard total <= limit else { throw S3ServerError.entityTooLarge(max: limit) }
                try await sink(pending)
                pending = ByteBuffer()
            }
        }
        let result = try decoder.finish()
        if pending.readableBytes > 0 {
            total += pending.readableBytes
            guard total <= limit else { throw S3ServerError.entityTooLarge(max: limit) }
            try await sink(pending)
        }
        return result
    }

    /// Collects a small body (XML documents), refusing more than `limit` bytes.
    func collect(limit: Int) async throws -> ByteBuffer {
        var collected = ByteBuffer()
        _ = try await stream(batchSize: 64 * 1024, limit: limit) { piece in
            var piece = piece
            collected.writeBuffer(&piece)
        }
        return collected
    }
}
