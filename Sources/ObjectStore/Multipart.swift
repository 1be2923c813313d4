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

extension ObjectStore {
    /// CreateMultipartUpload. Returns the upload id (32 lowercase hex digits).
    public func createMultipartUpload(
        bucket: String, key: String, metadata: ObjectMetadata = ObjectMetadata()
    ) async throws -> String {
        try Validation.validateKey(key, bucket: bucket)
        _ = try bucketState(bucket)
        try validateMetadata(metadata, bucket: bucket, key: key)
        let id = randomHex()
        let record = UploadRecord(
            uploadId: id, bucket: bucket, key: key, initiatedNs: Posix.nowNanoseconds(), metadata: metadata)
        let paths = self.paths
        let fsync = configuration.fsync
        do {
            try await io {
                try self.ensureRoom(for: 0, operation: "CreateMultipartUpload", bucket: bucket, key: key)
                let staging = paths.tmp + "/newupload-" + id
                try Posix.mkdir(staging)
                do {
                    try StoreLoader.writeJSON(record, to: staging + "/upload.json", fsync: fsync)
                    if fsync { try Posix.fsyncDirectory(staging) }
                    try Posix.rename(staging, paths.upload(id))
                    if fsync { try Posix.fsyncDirectory(paths.multipart) }
                } catch {
                    try? Posix.removeTree(staging)
                    throw error
                }
            }
        } catch {
            throw writeFailure(error, operation: "CreateMultipartUpload", bucket: bucket, key: key)
        }
        uploads.withLock { $0[id] = UploadEntry(info: record.info) }
        return id
    }

    func lookupUpload(bucket: String, key: String, uploadId: String) throws -> UploadEntry {
        let entry = Validation.isValidUploadId(uploadId) ? uploads.withLock { $0[uploadId] } : nil
        guard let entry, entry.info.bucket == bucket, utf8Equal(entry.info.key, key) else {
            _ = try bucketState(bucket)
            throw ObjectStoreError(
                .noSuchUpload,
                "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed.",
                bucket: bucket, key: key, uploadId: uploadId)
        }
        return entry
    }

    /// Makes `change` to the upload's entry (setting it nil removes it), unless another operation got there
    /// first: `NoSuchUpload` once it is gone, `OperationAborted` while it is being completed.
    func claimUpload(
        bucket: String, key: String, uploadId: String, _ change: (inout UploadEntry?) -> Void
    ) throws {
        try uploads.withLock { map in
            guard let current = map[uploadId] else {
                throw ObjectStoreError(
                    .noSuchUpload, "The specified multipart upload does not exist.", bucket: bucket, key: key,
                    uploadId: uploadId)
            }
            guard !current.completing else {
                throw ObjectStoreError(
                    .operationAborted, "A conflicting operation is currently in progress against this upload.",
                    bucket: bucket, key: key, uploadId: uploadId)
            }
            change(&map[uploadId])
        }
    }

    /// Starts an UploadPart (part numbers 1...10000). Re-uploading a part number replaces it.
    /// `expectedSize` (the request's length, 0 when unknown) is checked against the free-space floor first.
    public func beginPart(
        bucket: String, key: String, uploadId: String, partNumber: Int, expectedSize: Int = 0
    ) async throws -> PartWriter {
        guard (1...configuration.maximumPartNumber).contains(partNumber) else {
            throw ObjectStoreError(
                .invalidArgument,
                "Part number must be an integer between 1 and \(configuration.maximumPartNumber), inclusive.",
                bucket: bucket, key: key, uploadId: uploadId)
        }
        _ = try lookupUpload(bucket: bucket, key: key, uploadId: uploadId)
        let tmp = paths.tmp
        let pool = threadPool
        let writeback = configuration.fsync ? Self.writebackInterval : 0
        do {
            let temp = try await io {
                try self.ensureRoom(
                    for: expectedSize, operation: "UploadPart", bucket: bucket, key: key, uploadId: uploadId)
                return try TempFile.create(in: tmp, threadPool: pool, writebackInterval: writeback)
            }
            return PartWriter(
                store: self, bucket: bucket, key: key, uploadId: uploadId, partNumber: partNumber, temp: temp)
        } catch {
            throw writeFailure(error, operation: "UploadPart", bucket: bucket, key: key, uploadId: uploadId)
        }
    }

    func commitPart(_ writer: PartWriter, contentMD5: String?) async throws -> PartInfo {
        let temp = writer.temp
        let (bucket, key, uploadId, partNumber) = (writer.bucket, writer.key, writer.uploadId, writer.partNumber)
        let paths = self.paths
        let fsync = configuration.fsync
        do {
            let expected = try contentMD5.map { try Self.decodeContentMD5($0, bucket: bucket, key: key) }
            _ = try lookupUpload(bucket: bucket, key: key, uploadId: uploadId)
            return try await io {
                let (md5, size) = try temp.digest()
                if let expected, expected != md5 {
                    temp.discardSync()
                    throw ObjectStoreError(
                        .badDigest, "The Content-MD5 you specified did not match what we received.",
                        bucket: bucket, key: key, uploadId: uploadId)
                }
                return try Self.installPart(
                    temp, md5: md5, size: size, paths: paths, fsync: fsync, bucket: bucket, key: key,
                    uploadId: uploadId,
                    partNumber: partNumber)
            }
        } catch {
            _ = try? await io { temp.discardSync() }
            throw writeFailure(error, operation: "UploadPart", bucket: bucket, key: key, uploadId: uploadId)
        }
    }

    /// Seals a part's temp file and renames it into its upload's directory, replacing an earlier part of the
    /// same number. Blocking.
    static func installPart(
        _ temp: TempFile, md5: [UInt8], size: Int, paths: StorePaths, fsync: Bool, bucket: String, key: String,
        uploadId: String, partNumber: Int
    ) throws -> PartInfo {
        let etag = Hex.encode(md5)
        let now = Posix.nowNanoseconds()
        try temp.seal(
            FileTrailer(
                kind: .part, size: size, etag: etag, lastModifiedNs: now, partNumber: partNumber, uploadId: uploadId),
            fsync: fsync)
        do {
            try Posix.rename(temp.path, paths.part(uploadId, partNumber))
            temp.markInstalled()
        } catch let error as SystemCallError where error.errno == ENOENT {
            // The upload directory is gone: completed or aborted meanwhile.
            throw ObjectStoreError(
                .noSuchUpload, "The specified multipart upload does not exist.", bucket: bucket, key: key,
                uploadId: uploadId)
        }
        if fsync { try Posix.fsyncDirectory(paths.upload(uploadId)) }
        return PartInfo(partNumber: partNumber, size: size, etag: etag, lastModified: Date(nanoseconds: now))
    }

    /// UploadPartCopy: part `partNumber` of the upload becomes the bytes `range` of the source object (all
    /// of it when nil), read from the one version opened and checked against `sourceConditions`.
    /// `InvalidRange` (416) when the range is not within the source; `EntityTooLarge` past the part size limit.
    public func copyPart(
        from source: ObjectLocation, range: ClosedRange<Int>? = nil, sourceConditions: CopySourceConditions = .none,
        bucket: String, key: String, uploadId: String, partNumber: Int
    ) async throws -> (part: PartInfo, source: ObjectInfo) {
        guard (1...configuration.maximumPartNumber).contains(partNumber) else {
            throw ObjectStoreError(
                .invalidArgument,
                "Part number must be an integer between 1 and \(configuration.maximumPartNumber), inclusive.",
                bucket: bucket, key: key, uploadId: uploadId)
        }
        try Validation.validateKey(source.key, bucket: source.bucket)
        _ = try lookupUpload(bucket: bucket, key: key, uploadId: uploadId)
        let sourceBucket = try bucketState(source.bucket)
        let paths = self.paths
        let pool = threadPool
        let configuration = self.configuration
        do {
            return try await io {
                let (fd, sourceInfo) = try Self.openVersion(sourceBucket, key: source.key)
                defer { Posix.close(fd) }
                try Self.checkSourceConditions(sourceConditions, sourceInfo)
                var (offset, length) = (0, sourceInfo.size)
                if let range {
                    guard range.lowerBound >= 0, range.upperBound < sourceInfo.size else {
                        throw ObjectStoreError(
                            .invalidRange,
                            "The x-amz-copy-source-range bytes=\(range.lowerBound)-\(range.upperBound) is not within the source object (\(sourceInfo.size) bytes).",
                            bucket: bucket, key: key, uploadId: uploadId)
                    }
                    (offset, length) = (range.lowerBound, range.count)
                }
                guard length <= configuration.maximumPartSize else {
                    throw ObjectStoreError(
                        .entityTooLarge, "Your proposed upload exceeds the maximum allowed part size.",
                        bucket: bucket, key: key, uploadId: uploadId)
                }
                try self.ensureRoom(
                    for: length, operation: "UploadPartCopy", bucket: bucket, key: key, uploadId: uploadId)
                let temp = try TempFile.create(in: paths.tmp, threadPool: pool)
                defer { temp.discardSync() }
                try temp.append(
                    from: fd, offset: offset, length: length, hash: true,
                    bufferSize: configuration.copyBufferSize)
                let (md5, size) = try temp.digest()
                let part = try Self.installPart(
                    temp, md5: md5, size: size, paths: paths, fsync: configuration.fsync, bucket: bucket, key: key,
                    uploadId: uploadId, partNumber: partNumber)
                return (part, sourceInfo)
            }
        } catch {
            throw writeFailure(error, operation: "UploadPartCopy", bucket: bucket, key: key, uploadId: uploadId)
        }
    }

    /// ListParts: parts with numbers > `partNumberMarker`, ascending, at most `maxParts` (clamped to 1000).
    public func listParts(
        bucket: String, key: String, uploadId: String, partNumberMarker: Int = 0, maxParts: Int = 1000
    ) async throws -> PartListing {
        let entry = try lookupUpload(bucket: bucket, key: key, uploadId: uploadId)
        guard maxParts >= 0, partNumberMarker >= 0 else {
            throw ObjectStoreError(
                .invalidArgument, "max-parts and part-number-marker must be non-negative.", bucket: bucket, key: key,
                uploadId: uploadId)
        }
        let limit = min(maxParts, 1000)
        let paths = self.paths
        do {
            return try await io {
                let numbers = try Posix.listDirectory(paths.upload(uploadId))
                    .compactMap(Self.partNumber(fromFileName:))
                    .filter { $0 > partNumberMarker }
                    .sorted()
                var parts: [PartInfo] = []
                var index = 0
                while index < numbers.count && parts.count < limit {
                    let number = numbers[index]
                    index += 1
                    let path = paths.part(uploadId, number)
                    guard let fd = try Posix.openIfExists(path) else { continue }
                    defer { Posix.close(fd) }
                    let (trailer, _) = try FileTrailer.read(fd: fd, path: path)
                    parts.append(
                        PartInfo(
                            partNumber: number, size: trailer.size, etag: trailer.etag,
                            lastModified: trailer.lastModified))
                }
                let truncated = index < numbers.count
                return PartListing(
                    upload: entry.info, parts: parts, isTruncated: truncated,
                    nextPartNumberMarker: truncated ? parts.last?.partNumber : nil)
            }
        } catch {
            throw ObjectStoreError.wrap(error, operation: "ListParts", bucket: bucket, key: key, uploadId: uploadId)
        }
    }

    static func partNumber(fromFileName name: String) -> Int? {
        guard name.hasPrefix("part-"), name.utf8.count == 10 else { return nil }
        return Int(name.dropFirst(5))
    }

    /// AbortMultipartUpload: removes the upload and its parts. `NoSuchUpload` if unknown;
    /// `OperationAborted` while it is being completed.
    public func abortMultipartUpload(bucket: String, key: String, uploadId: String) async throws {
        _ = try lookupUpload(bucket: bucket, key: key, uploadId: uploadId)
        try claimUpload(bucket: bucket, key: key, uploadId: uploadId) { $0 = nil }
        do {
            try await removeUploadDirectory(uploadId)
        } catch {
            throw ObjectStoreError.wrap(
                error, operation: "AbortMultipartUpload", bucket: bucket, key: key, uploadId: uploadId)
        }
    }

    func removeUploadDirectory(_ uploadId: String) async throws {
        let paths = self.paths
        let fsync = configuration.fsync
        try await io {
            let trash = paths.tmp + "/aborted-" + uploadId
            do {
                try Posix.rename(paths.upload(uploadId), trash)
            } catch let error as SystemCallError where error.errno == ENOENT {
                return
            }
            if fsync { try Posix.fsyncDirectory(paths.multipart) }
            try Posix.removeTree(trash)
        }
    }

    /// In-progress multipart uploads of a bucket whose key starts with `prefix`, sorted by key
    /// (UTF-8 order) then initiation time.
    public func listMultipartUploads(bucket: String, prefix: String = "") async throws -> [MultipartUploadInfo] {
        _ = try bucketState(bucket)
        return uploads.withLock { map in
            map.values.map(\.info).filter { $0.bucket == bucket && utf8HasPrefix($0.key, prefix) }
        }.sorted { a, b in
            let c = utf8Compare(a.key, b.key)
            if c != 0 { return c < 0 }
            if a.initiated != b.initiated { return a.initiated < b.initiated }
            return a.uploadId < b.uploadId
        }
    }
}
