import Foundation
import NIOCore
import S3Client

/// One file streamed from a form into the bucket: bytes are buffered up to a part (8 MiB), then sent as a
/// multipart-upload part; a file smaller than one part is a single PUT. Aborted on failure.
/// `@unchecked Sendable`: one request's body loop owns it and awaits each call before the next, so its mutable
/// state is never touched from two tasks at once.
final class FormUpload: @unchecked Sendable {
    static let partSize = 8 << 20

    let id: String
    let key: String
    let contentType: String
    let bucket: String
    let s3: S3Client
    let limit: Int64
    private(set) var size: Int64 = 0
    private(set) var finished = false
    private var buffer = ByteBuffer()
    private var uploadID: String?
    private var parts: [CompletedPart] = []

    init(id: String, key: String, contentType: String, bucket: String, s3: S3Client, limit: Int64) {
        self.id = id
        self.key = key
        self.contentType = contentType
        self.bucket = bucket
        self.s3 = s3
        self.limit = limit
        buffer.reserveCapacity(Self.partSize)
    }

    func append(_ bytes: [UInt8]) async throws {
        size += Int64(bytes.count)
        guard size <= limit else { throw APIError(413, "UploadTooLarge", "Uploads are limited to \(limit) bytes.") }
        buffer.writeBytes(bytes)
        while buffer.readableBytes >= Self.partSize {
            try await sendPart(buffer.readSlice(length: Self.partSize)!)
        }
        buffer.discardReadBytes()
    }

    func finish() async throws {
        if uploadID == nil {
            _ = try await s3.putObject(bucket: bucket, key: key, body: buffer, contentType: contentType)
        } else {
            if buffer.readableBytes > 0 { try await sendPart(buffer) }
            _ = try await s3.completeMultipartUpload(bucket: bucket, key: key, uploadId: uploadID!, parts: parts)
        }
        buffer = ByteBuffer()
        finished = true
    }

    func abort() async {
        guard !finished, let uploadID else { return }
        try? await s3.abortMultipartUpload(bucket: bucket, key: key, uploadId: uploadID)
    }

    private func sendPart(_ part: ByteBuffer) async throws {
        if uploadID == nil {
            uploadID = try await s3.createMultipartUpload(bucket: bucket, key: key, contentType: contentType)
        }
        parts.append(
            try await s3.uploadPart(
                bucket: bucket, key: key, uploadId: uploadID!, partNumber: parts.count + 1, body: part))
    }
}
