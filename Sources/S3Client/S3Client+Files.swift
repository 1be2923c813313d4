import Foundation
import Logging
import NIOCore
import NIOFileSystem

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

extension S3Client {
    /// Part size used for a file of `size` bytes: `configuration.partSize`, at least 5 MiB,
    /// raised so the upload needs at most 10,000 parts.
    func effectivePartSize(forFileSize size: Int) -> Int {
        let minimum = S3ClientConfiguration.minimumPartSize
        var part = max(configuration.partSize, minimum)
        let maxParts = S3ClientConfiguration.maximumPartCount
        if (size + part - 1) / part > maxParts {
            part = (size + maxParts - 1) / maxParts
            // Round up to a whole MiB.
            part = (part + (1 << 20) - 1) / (1 << 20) * (1 << 20)
        }
        return part
    }

    /// Uploads a local file: one PUT below `multipartThreshold`, otherwise a multipart upload
    /// whose parts are read from disk only when they are sent (memory ≈ `partSize` ×
    /// `multipartConcurrency`), uploaded in parallel and aborted on failure.
    @discardableResult
    public func uploadFile(
        bucket: String,
        key: String,
        path: String,
        contentType: String? = nil,
        metadata: [String: String] = [:]
    ) async throws -> PutObjectOutput {
        try Self.validateBucket(bucket)
        try Self.validateKey(key)
        _ = try Self.metadataHeaders(metadata)
        return try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(path)) { handle in
            let info = try await handle.info()
            guard info.type == .regular else {
                throw S3ClientError(.file, "\(path) is not a regular file")
            }
            let size = Int(info.size)
            if size < configuration.multipartThreshold {
                let body = try await Self.read(handle, offset: 0, length: size, path: path)
                return try await putObject(
                    bucket: bucket, key: key, body: body, contentType: contentType, metadata: metadata
                )
            }
            return try await multipartUpload(
                handle: handle, size: size, path: path, bucket: bucket, key: key, contentType: contentType,
                metadata: metadata
            )
        }
    }

    /// Reads exactly `length` bytes at `offset` into one buffer.
    static func read(_ handle: ReadFileHandle, offset: Int, length: Int, path: String) async throws -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(length)
        while buffer.readableBytes < length {
            var chunk = try await handle.readChunk(
                fromAbsoluteOffset: Int64(offset + buffer.readableBytes),
                length: .bytes(Int64(length - buffer.readableBytes))
            )
            if chunk.readableBytes == 0 {
                throw S3ClientError(.file, "\(path) shrank while being uploaded")
            }
            buffer.writeBuffer(&chunk)
        }
        return buffer
    }

    private func multipartUpload(
        handle: ReadFileHandle, size: Int, path: String, bucket: String, key: String, contentType: String?,
        metadata: [String: String]
    ) async throws -> PutObjectOutput {
        let partSize = effectivePartSize(forFileSize: size)
        let partCount = max(1, (size + partSize - 1) / partSize)
        let concurrency = max(1, configuration.multipartConcurrency)
        let uploadId = try await createMultipartUpload(
            bucket: bucket, key: key, contentType: contentType, metadata: metadata
        )
        let meta: Logger.Metadata = [
            "cinescale.s3.bucket": "\(bucket)", "cinescale.s3.key": "\(key)", "cinescale.s3.upload_id": "\(uploadId)",
            "cinescale.s3.parts": "\(partCount)", "cinescale.s3.part_size": "\(partSize)",
        ]
        logger.debug("multipart upload started", metadata: meta)
        do {
            let parts = try await withThrowingTaskGroup(of: CompletedPart.self, returning: [CompletedPart].self) {
                group in
                var next = 1
                func schedule(_ number: Int) {
                    let offset = (number - 1) * partSize
                    let length = min(partSize, size - offset)
                    group.addTask {
                        let body = try await Self.read(handle, offset: offset, length: length, path: path)
                        return try await uploadPart(
                            bucket: bucket, key: key, uploadId: uploadId, partNumber: number, body: body
                        )
                    }
                }
                while next <= min(concurrency, partCount) {
                    schedule(next)
                    next += 1
                }
                var done: [CompletedPart] = []
                done.reserveCapacity(partCount)
                while let part = try await group.next() {
                    done.append(part)
                    if next <= partCount {
                        schedule(next)
                        next += 1
                    }
                }
                return done
            }
            let info = try await handle.info()
            guard Int(info.size) == size else {
                throw S3ClientError(.file, "\(path) changed size while being uploaded")
            }
            let output = try await completeMultipartUpload(bucket: bucket, key: key, uploadId: uploadId, parts: parts)
            logger.debug("multipart upload completed", metadata: meta)
            return output
        } catch {
            await abortQuietly(bucket: bucket, key: key, uploadId: uploadId)
            throw error
        }
    }

    /// Downloads an object (or a range) to `path`, streaming it into a temporary file in the
    /// same directory that is fsync'ed and renamed over `path` only once complete.
    @discardableResult
    public func downloadObject(
        bucket: String,
        key: String,
        to path: String,
        range: ByteRange? = nil
    ) async throws -> ObjectHead {
        let target = FilePath(path)
        guard let name = target.lastComponent?.string, !name.isEmpty else {
            throw S3ClientError.invalidArgument("invalid destination path \(path)")
        }
        let directory = target.removingLastComponent()
        let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let temporary = directory.appending(".\(name).cinescale-\(suffix).part")
        let (head, body) = try await getObjectStream(bucket: bucket, key: key, range: range)
        do {
            let options = OpenOptions.Write(
                existingFile: .none, newFile: .init(permissions: nil, transactionalCreation: false)
            )
            try await FileSystem.shared.withFileHandle(forWritingAt: temporary, options: options) { handle in
                var writer = handle.bufferedWriter(capacity: .mebibytes(1))
                var written = 0
                for try await chunk in body {
                    try await writer.write(contentsOf: chunk)
                    written += chunk.readableBytes
                }
                try await writer.flush()
                if head.contentLength != written, body.expectedLength != nil {
                    throw S3ClientError.integrity("downloaded \(written) of \(head.contentLength) bytes")
                }
                try await handle.synchronize()
            }
            let status = temporary.string.withCString { from in path.withCString { to in rename(from, to) } }
            guard status == 0 else {
                let code = errno
                throw S3ClientError(.file, "cannot rename into \(path): \(String(cString: strerror(code)))")
            }
        } catch {
            _ = try? await FileSystem.shared.removeItem(at: temporary)
            throw error
        }
        return head
    }
}
