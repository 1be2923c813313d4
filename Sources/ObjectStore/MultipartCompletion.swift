import Crypto
import Foundation
import WireFormat

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// CompleteMultipartUpload: the parts joined into the object, and the record of each completed upload that
/// answers a retried complete with the first one's result.
extension ObjectStore {
    /// CompleteMultipartUpload: concatenates the listed parts into the object, atomically.
    ///
    /// Parts must be strictly ascending (`InvalidPartOrder`), exist with the given ETags
    /// (`InvalidPart`), and all but the last be at least ``ObjectStoreConfiguration/minimumPartSize``
    /// (`EntityTooSmall`). The ETag is `hex(md5(md5(part1) ‖ … ‖ md5(partN)))-N`.
    /// On success the upload is gone; on a validation failure it is left intact.
    @discardableResult
    public func completeMultipartUpload(
        bucket: String, key: String, uploadId: String, parts: [CompletedPart], conditions: WriteConditions = .none
    ) async throws -> ObjectInfo {
        guard !parts.isEmpty else {
            throw ObjectStoreError(
                .malformedXML, "You must specify at least one part.", bucket: bucket, key: key, uploadId: uploadId)
        }
        for (previous, next) in zip(parts, parts.dropFirst()) where next.partNumber <= previous.partNumber {
            throw ObjectStoreError(
                .invalidPartOrder,
                "The list of parts was not in ascending order. Parts must be ordered by part number.",
                bucket: bucket, key: key, uploadId: uploadId)
        }
        let bucketState = try bucketState(bucket)
        if let earlier = completedResult(bucket: bucket, key: key, uploadId: uploadId, parts: parts) {
            return earlier
        }
        let entry = try lookupUpload(bucket: bucket, key: key, uploadId: uploadId)
        try claimUpload(bucket: bucket, key: key, uploadId: uploadId) { $0?.completing = true }

        let paths = self.paths
        let pool = threadPool
        let configuration = self.configuration
        let logger = self.logger
        let (info, sequencer): (ObjectInfo, Int64)
        do {
            (info, sequencer) = try await io {
                func invalidPart(_ number: Int) -> ObjectStoreError {
                    ObjectStoreError(
                        .invalidPart,
                        "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag (part \(number)).",
                        bucket: bucket, key: key, uploadId: uploadId)
                }
                // Open every part once; validate and copy from the same descriptors.
                var opened: [(fd: CInt, size: Int, md5: [UInt8])] = []
                defer { for part in opened { Posix.close(part.fd) } }
                var total = 0
                for part in parts {
                    guard (1...configuration.maximumPartNumber).contains(part.partNumber) else {
                        throw invalidPart(part.partNumber)
                    }
                    let path = paths.part(uploadId, part.partNumber)
                    guard let fd = try Posix.openIfExists(path) else { throw invalidPart(part.partNumber) }
                    let trailer: FileTrailer
                    do {
                        trailer = try FileTrailer.read(fd: fd, path: path).trailer
                    } catch {
                        Posix.close(fd)
                        throw error
                    }
                    opened.append((fd, trailer.size, Self.bytes(fromHex: trailer.etag)))
                    guard trailer.kind == .part, Validation.normalizeETag(part.etag) == trailer.etag.lowercased() else {
                        throw invalidPart(part.partNumber)
                    }
                    total += trailer.size
                }
                try self.ensureRoom(
                    for: total, operation: "CompleteMultipartUpload", bucket: bucket, key: key, uploadId: uploadId)
                for (index, part) in opened.enumerated() where index < opened.count - 1 {
                    if part.size < configuration.minimumPartSize {
                        throw ObjectStoreError(
                            .entityTooSmall,
                            "Your proposed upload is smaller than the minimum allowed size (part \(parts[index].partNumber) is \(part.size) bytes; the minimum is \(configuration.minimumPartSize)).",
                            bucket: bucket, key: key, uploadId: uploadId)
                    }
                }
                if total > configuration.maximumObjectSize {
                    throw ObjectStoreError(
                        .entityTooLarge, "Your proposed upload exceeds the maximum allowed object size.",
                        bucket: bucket, key: key, uploadId: uploadId)
                }

                let temp = try TempFile.create(in: paths.tmp, threadPool: pool)
                defer { temp.discardSync() }
                var etagHash = Insecure.MD5()
                for part in opened {
                    try temp.append(
                        from: part.fd, offset: 0, length: part.size, hash: false,
                        bufferSize: configuration.copyBufferSize)
                    etagHash.update(data: part.md5)
                }
                let etag = Hex.encode(etagHash.finalize()) + "-\(parts.count)"
                let now = Posix.nowNanoseconds()
                try temp.seal(
                    FileTrailer(
                        kind: .object, key: key, size: total, etag: etag, lastModifiedNs: now,
                        metadata: entry.info.metadata, partCount: parts.count, partSizes: opened.map(\.size)),
                    fsync: configuration.fsync)
                let sequencer = try self.install(
                    temp, bucket: bucketState,
                    entry: IndexEntry(key: key, size: total, etag: etag, lastModifiedNs: now),
                    conditions: conditions)

                // The object is committed; remember the result for a retried complete, then retire the upload
                // (both best effort).
                let record = CompletedUploadRecord(
                    uploadId: uploadId, bucket: bucket, key: key, etag: etag, size: total,
                    partSizes: opened.map(\.size),
                    lastModifiedNs: now, completedNs: now)
                self.rememberCompleted(record)
                do {
                    let trash = paths.tmp + "/completed-" + uploadId
                    try Posix.rename(paths.upload(uploadId), trash)
                    if configuration.fsync { try Posix.fsyncDirectory(paths.multipart) }
                    try Posix.removeTree(trash)
                } catch {
                    logger.error(
                        "could not remove a completed multipart upload",
                        metadata: ["cinescale.uploadId": "\(uploadId)", "cinescale.error": "\(error)"])
                }
                let info = ObjectInfo(
                    bucket: bucket, key: key, size: total, etag: etag, lastModified: Date(nanoseconds: now),
                    metadata: entry.info.metadata, partCount: parts.count, partSizes: opened.map(\.size))
                return (info, sequencer)
            }
        } catch {
            uploads.withLock { map in map[uploadId]?.completing = false }
            throw writeFailure(
                error, operation: "CompleteMultipartUpload", bucket: bucket, key: key, uploadId: uploadId)
        }
        uploads.withLock { _ = $0.removeValue(forKey: uploadId) }
        try await notify(
            ObjectStoreEvent(
                kind: .completeMultipartUpload, bucket: bucket, key: key, size: info.size, etag: info.etag,
                sequencer: sequencerString(sequencer), time: Date(nanoseconds: sequencer), metadata: info.metadata))
        return info
    }

    /// How long a completed upload's result is kept for retried completes.
    static let completedUploadRetention: Int64 = 24 * 3600 * 1_000_000_000

    /// The result of an upload completed earlier with the same parts: S3 answers a retried complete (the
    /// client lost the first answer) with the result it gave, so the client does not report a failure for an
    /// upload that succeeded. The parts are the same when their ETags give the object's multipart ETag.
    func completedResult(bucket: String, key: String, uploadId: String, parts: [CompletedPart]) -> ObjectInfo? {
        guard uploads.withLock({ $0[uploadId] == nil }),
            let record = completedUploads.withLock({ $0[uploadId] }),
            record.bucket == bucket, utf8Equal(record.key, key)
        else { return nil }
        var hash = Insecure.MD5()
        for part in parts { hash.update(data: Self.bytes(fromHex: Validation.normalizeETag(part.etag))) }
        guard Hex.encode(hash.finalize()) + "-\(parts.count)" == record.etag else { return nil }
        return ObjectInfo(
            bucket: bucket, key: key, size: record.size, etag: record.etag,
            lastModified: Date(nanoseconds: record.lastModifiedNs), metadata: ObjectMetadata(),
            partCount: record.partSizes.count, partSizes: record.partSizes)
    }

    /// Records a completed upload (in memory and in `completed/`, so a restart keeps it) and forgets those
    /// older than ``completedUploadRetention``. Blocking; failures are logged, never thrown.
    func rememberCompleted(_ record: CompletedUploadRecord) {
        let expired = completedUploads.withLock { map -> [String] in
            map[record.uploadId] = record
            let old = map.values.filter { record.completedNs - $0.completedNs > Self.completedUploadRetention }.map(
                \.uploadId)
            for id in old { map[id] = nil }
            return old
        }
        do {
            let path = paths.completedUpload(record.uploadId)
            _ = try Posix.unlink(path)
            try StoreLoader.writeJSON(record, to: path, fsync: configuration.fsync)
            for id in expired { _ = try Posix.unlink(paths.completedUpload(id)) }
        } catch {
            logger.warning(
                "could not record a completed multipart upload",
                metadata: ["cinescale.uploadId": "\(record.uploadId)", "cinescale.error": "\(error)"])
        }
    }

    static func bytes(fromHex hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var high: UInt8?
        for c in hex.utf8 {
            guard let v = Hex.nibble(c) else { continue }
            if let h = high {
                out.append(h << 4 | v)
                high = nil
            } else {
                high = v
            }
        }
        return out
    }
}
