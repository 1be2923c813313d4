import Foundation
import NIOCore
import WireFormat

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

extension ObjectStore {
    // MARK: - Put

    /// Starts a PUT: checks the bucket and key and opens a temp file. Stream the body with
    /// ``ObjectWriter/write(_:)``, then ``ObjectWriter/commit(metadata:conditions:contentMD5:)``.
    /// `expectedSize` (the request's length, 0 when unknown) is checked against the free-space floor first.
    public func beginPut(bucket: String, key: String, expectedSize: Int = 0) async throws -> ObjectWriter {
        try Validation.validateKey(key, bucket: bucket)
        let state = try bucketState(bucket)
        let tmp = paths.tmp
        let pool = threadPool
        let writeback = configuration.fsync ? Self.writebackInterval : 0
        do {
            let temp = try await io {
                try self.ensureRoom(for: expectedSize, operation: "PutObject", bucket: bucket, key: key)
                return try TempFile.create(in: tmp, threadPool: pool, writebackInterval: writeback)
            }
            return ObjectWriter(store: self, bucket: state, key: key, temp: temp)
        } catch {
            throw writeFailure(error, operation: "PutObject", bucket: bucket, key: key)
        }
    }

    /// Convenience: a whole object from one buffer.
    @discardableResult
    public func putObject(
        bucket: String, key: String, body: ByteBuffer, metadata: ObjectMetadata = ObjectMetadata(),
        conditions: WriteConditions = .none, contentMD5: String? = nil
    ) async throws -> ObjectInfo {
        let writer = try await beginPut(bucket: bucket, key: key, expectedSize: body.readableBytes)
        do {
            try await writer.write(body)
        } catch {
            await writer.abort()
            throw error
        }
        return try await writer.commit(metadata: metadata, conditions: conditions, contentMD5: contentMD5)
    }

    func commitWriter(
        temp: TempFile, bucket: BucketState, key: String, metadata: ObjectMetadata, conditions: WriteConditions,
        contentMD5: String?
    ) async throws -> (ObjectInfo, Int64) {
        let fsync = configuration.fsync
        do {
            try validateMetadata(metadata, bucket: bucket.name, key: key)
            let expected = try contentMD5.map { try Self.decodeContentMD5($0, bucket: bucket.name, key: key) }
            return try await io {
                let (md5, size) = try temp.digest()
                if let expected, expected != md5 {
                    temp.discardSync()
                    throw ObjectStoreError(
                        .badDigest, "The Content-MD5 you specified did not match what we received.",
                        bucket: bucket.name, key: key)
                }
                let etag = Hex.encode(md5)
                let now = Posix.nowNanoseconds()
                let trailer = FileTrailer(
                    kind: .object, key: key, size: size, etag: etag, lastModifiedNs: now, metadata: metadata)
                try temp.seal(trailer, fsync: fsync)
                let sequencer = try self.install(
                    temp, bucket: bucket,
                    entry: IndexEntry(key: key, size: size, etag: etag, lastModifiedNs: now), conditions: conditions)
                let info = ObjectInfo(
                    bucket: bucket.name, key: key, size: size, etag: etag, lastModified: Date(nanoseconds: now),
                    metadata: metadata, partCount: nil)
                return (info, sequencer)
            }
        } catch {
            // Whatever failed, nothing may stay behind.
            _ = try? await io { temp.discardSync() }
            throw writeFailure(error, operation: "PutObject", bucket: bucket.name, key: key)
        }
    }

    // MARK: - Read

    /// `HeadObject`: metadata of the current version. Throws `NoSuchBucket` / `NoSuchKey`.
    public func headObject(bucket: String, key: String) async throws -> ObjectInfo {
        try Validation.validateKey(key, bucket: bucket)
        let state = try bucketState(bucket)
        do {
            return try await io {
                let (fd, info) = try Self.openVersion(state, key: key)
                Posix.close(fd)
                return info
            }
        } catch {
            throw ObjectStoreError.wrap(error, operation: "HeadObject", bucket: bucket, key: key)
        }
    }

    /// Opens the current version for reading. The caller must ``ObjectReader/close()`` it.
    public func openObject(bucket: String, key: String) async throws -> ObjectReader {
        try Validation.validateKey(key, bucket: bucket)
        let state = try bucketState(bucket)
        let pool = threadPool
        do {
            return try await io {
                let (fd, info) = try Self.openVersion(state, key: key)
                return ObjectReader(fd: fd, info: info, threadPool: pool)
            }
        } catch {
            throw ObjectStoreError.wrap(error, operation: "GetObject", bucket: bucket, key: key)
        }
    }

    /// Opens an object file and reads its trailer from the same descriptor. Blocking.
    static func openVersion(_ bucket: BucketState, key: String) throws -> (CInt, ObjectInfo) {
        let path = bucket.location(of: key).file
        guard let fd = try Posix.openIfExists(path) else {
            throw ObjectStoreError(.noSuchKey, "The specified key does not exist.", bucket: bucket.name, key: key)
        }
        do {
            let (trailer, _) = try FileTrailer.read(fd: fd, path: path)
            guard trailer.kind == .object, let storedKey = trailer.key, utf8Equal(storedKey, key) else {
                throw FileTrailer.Corrupt(path: path, reason: "trailer does not describe this key")
            }
            let info = ObjectInfo(
                bucket: bucket.name, key: key, size: trailer.size, etag: trailer.etag,
                lastModified: trailer.lastModified, metadata: trailer.metadata ?? ObjectMetadata(),
                partCount: trailer.partCount, partSizes: trailer.partSizes)
            return (fd, info)
        } catch {
            Posix.close(fd)
            throw error
        }
    }

    // MARK: - Delete

    /// Deletes an object. Idempotent: a missing key succeeds (and emits no event).
    public func deleteObject(bucket: String, key: String) async throws {
        try Validation.validateKey(key, bucket: bucket)
        let state = try bucketState(bucket)
        let fsync = configuration.fsync
        let event: ObjectStoreEvent?
        do {
            event = try await io {
                let event = try self.removeObject(state, key: key)
                if event != nil, fsync { try Posix.fsyncDirectory(state.location(of: key).level2) }
                return event
            }
        } catch {
            throw ObjectStoreError.wrap(error, operation: "DeleteObject", bucket: bucket, key: key)
        }
        if let event { try await notify(event) }
    }

    /// Deletes many keys (DeleteObjects). Returns one result per key, in order; invalid keys get
    /// an error result. If the observer fails, all deletes still happened and `ServiceUnavailable` is thrown.
    public func deleteObjects(bucket: String, keys: [String]) async throws -> [DeleteResult] {
        let state = try bucketState(bucket)
        let fsync = configuration.fsync
        let (results, events): ([DeleteResult], [ObjectStoreEvent])
        do {
            (results, events) = try await io {
                var results: [DeleteResult] = []
                var events: [ObjectStoreEvent] = []
                var directories = Set<String>()
                for key in keys {
                    do {
                        try Validation.validateKey(key, bucket: bucket)
                        if let event = try self.removeObject(state, key: key) {
                            events.append(event)
                            directories.insert(state.location(of: key).level2)
                            results.append(DeleteResult(key: key, error: nil, deleted: true))
                        } else {
                            results.append(DeleteResult(key: key, error: nil, deleted: false))
                        }
                    } catch let error as ObjectStoreError where error.code == .noSuchBucket {
                        throw error
                    } catch {
                        results.append(
                            DeleteResult(
                                key: key,
                                error: ObjectStoreError.wrap(
                                    error, operation: "DeleteObject", bucket: bucket, key: key),
                                deleted: false))
                    }
                }
                if fsync {
                    for directory in directories.sorted() { try Posix.fsyncDirectory(directory) }
                }
                return (results, events)
            }
        } catch {
            throw ObjectStoreError.wrap(error, operation: "DeleteObjects", bucket: bucket)
        }
        var firstFailure: (any Error)?
        for event in events {
            do { try await notify(event) } catch { firstFailure = firstFailure ?? error }
        }
        if let firstFailure { throw firstFailure }
        return results
    }

    /// Unlinks an object under the bucket lock. Blocking. Returns the event, or nil if absent.
    func removeObject(_ bucket: BucketState, key: String) throws -> ObjectStoreEvent? {
        let path = bucket.location(of: key).file
        var retired: String?
        defer { if let retired { release(retired) } }
        return try bucket.state.withLock { state -> ObjectStoreEvent? in
            guard !state.deleted else {
                throw ObjectStoreError(.noSuchBucket, "The specified bucket does not exist.", bucket: bucket.name)
            }
            retired = retire(path, current: state.index.find(key))
            let existed = try Posix.unlink(path)
            let entry = state.index.remove(key)
            guard existed || entry != nil else { return nil }
            let sequencer = nextSequencer()
            return ObjectStoreEvent(
                kind: .delete, bucket: bucket.name, key: key, size: 0, etag: nil,
                sequencer: sequencerString(sequencer), time: Date(nanoseconds: sequencer))
        }
    }

    // MARK: - Copy

    /// CopyObject. The source version is opened once and checked against `sourceConditions`;
    /// `conditions` apply to the destination, atomically with the commit. Copying an object onto
    /// itself requires `.replace` metadata (else `InvalidRequest`, as in S3). The copy's ETag is
    /// the source's for single-part sources and the MD5 of the data for multipart sources. The copy's ACL is
    /// `acl` (as in S3, an ACL is not copied with the metadata).
    @discardableResult
    public func copyObject(
        from source: ObjectLocation, to destination: ObjectLocation, metadata: MetadataDirective = .copy,
        conditions: WriteConditions = .none, sourceConditions: CopySourceConditions = .none, acl: CannedACL? = nil
    ) async throws -> ObjectInfo {
        try Validation.validateKey(source.key, bucket: source.bucket)
        try Validation.validateKey(destination.key, bucket: destination.bucket)
        let sourceBucket = try bucketState(source.bucket)
        let destinationBucket = try bucketState(destination.bucket)
        if source.bucket == destination.bucket, utf8Equal(source.key, destination.key), metadata == .copy {
            throw ObjectStoreError(
                .invalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
                bucket: destination.bucket, key: destination.key)
        }
        if case .replace(let replacement) = metadata {
            try validateMetadata(replacement, bucket: destination.bucket, key: destination.key)
        }
        let tmp = paths.tmp
        let pool = threadPool
        let configuration = self.configuration
        let (info, sequencer): (ObjectInfo, Int64)
        do {
            (info, sequencer) = try await io {
                let (fd, sourceInfo) = try Self.openVersion(sourceBucket, key: source.key)
                defer { Posix.close(fd) }
                try Self.checkSourceConditions(sourceConditions, sourceInfo)
                try self.ensureRoom(
                    for: sourceInfo.size, operation: "CopyObject", bucket: destination.bucket, key: destination.key)
                var newMetadata: ObjectMetadata
                switch metadata {
                case .copy: newMetadata = sourceInfo.metadata
                case .replace(let replacement): newMetadata = replacement
                }
                newMetadata.acl = acl == .private ? nil : acl
                let temp = try TempFile.create(in: tmp, threadPool: pool)
                defer { temp.discardSync() }
                let rehash = sourceInfo.partCount != nil
                try temp.append(
                    from: fd, offset: 0, length: sourceInfo.size, hash: rehash,
                    bufferSize: configuration.copyBufferSize)
                let etag = rehash ? Hex.encode(try temp.digest().md5) : sourceInfo.etag
                let now = Posix.nowNanoseconds()
                try temp.seal(
                    FileTrailer(
                        kind: .object, key: destination.key, size: sourceInfo.size, etag: etag, lastModifiedNs: now,
                        metadata: newMetadata),
                    fsync: configuration.fsync)
                let sequencer = try self.install(
                    temp, bucket: destinationBucket,
                    entry: IndexEntry(key: destination.key, size: sourceInfo.size, etag: etag, lastModifiedNs: now),
                    conditions: conditions)
                let info = ObjectInfo(
                    bucket: destination.bucket, key: destination.key, size: sourceInfo.size, etag: etag,
                    lastModified: Date(nanoseconds: now), metadata: newMetadata, partCount: nil)
                return (info, sequencer)
            }
        } catch {
            throw writeFailure(error, operation: "CopyObject", bucket: destination.bucket, key: destination.key)
        }
        try await notify(
            ObjectStoreEvent(
                kind: .copy, bucket: info.bucket, key: info.key, size: info.size, etag: info.etag,
                sequencer: sequencerString(sequencer), time: Date(nanoseconds: sequencer), metadata: info.metadata))
        return info
    }

    /// PutObjectAcl: the object's canned ACL. Its trailer is rewritten (the data copied into a new file with the
    /// same ETag, date and parts, installed only if the object is still the version read), without an event.
    public func setObjectACL(bucket: String, key: String, _ acl: CannedACL) async throws {
        try Validation.validateKey(key, bucket: bucket)
        let state = try bucketState(bucket)
        let tmp = paths.tmp
        let pool = threadPool
        let configuration = self.configuration
        do {
            try await io {
                let (fd, info) = try Self.openVersion(state, key: key)
                defer { Posix.close(fd) }
                try self.ensureRoom(for: info.size, operation: "PutObjectAcl", bucket: bucket, key: key)
                let temp = try TempFile.create(in: tmp, threadPool: pool)
                defer { temp.discardSync() }
                try temp.append(
                    from: fd, offset: 0, length: info.size, hash: false, bufferSize: configuration.copyBufferSize)
                var metadata = info.metadata
                metadata.acl = acl == .private ? nil : acl
                let modified = Int64((info.lastModified.timeIntervalSince1970 * 1e9).rounded())
                try temp.seal(
                    FileTrailer(
                        kind: .object, key: key, size: info.size, etag: info.etag, lastModifiedNs: modified,
                        metadata: metadata, partCount: info.partCount, partSizes: info.partSizes),
                    fsync: configuration.fsync)
                _ = try self.install(
                    temp, bucket: state,
                    entry: IndexEntry(key: key, size: info.size, etag: info.etag, lastModifiedNs: modified),
                    conditions: WriteConditions(ifMatch: info.etag))
            }
        } catch {
            throw writeFailure(error, operation: "PutObjectAcl", bucket: bucket, key: key)
        }
    }

    static func checkSourceConditions(_ conditions: CopySourceConditions, _ info: ObjectInfo) throws {
        func failed(_ which: String) -> ObjectStoreError {
            ObjectStoreError(
                .preconditionFailed, "At least one of the pre-conditions you specified did not hold (\(which)).",
                bucket: info.bucket, key: info.key)
        }
        let etag = info.etag.lowercased()
        // Second precision, as in HTTP dates.
        let modified = info.lastModified.timeIntervalSince1970.rounded(.down)
        var ifMatchHeld = false
        if let ifMatch = conditions.ifMatch {
            let wanted = Validation.normalizeETag(ifMatch)
            guard wanted == "*" || wanted == etag else { throw failed("x-amz-copy-source-if-match") }
            ifMatchHeld = true
        }
        if let date = conditions.ifUnmodifiedSince, !ifMatchHeld, modified > date.timeIntervalSince1970 {
            throw failed("x-amz-copy-source-if-unmodified-since")
        }
        var ifNoneMatchHeld = false
        if let ifNoneMatch = conditions.ifNoneMatch {
            let wanted = Validation.normalizeETag(ifNoneMatch)
            if wanted == "*" || wanted == etag { throw failed("x-amz-copy-source-if-none-match") }
            ifNoneMatchHeld = true
        }
        if let date = conditions.ifModifiedSince, !ifNoneMatchHeld, modified <= date.timeIntervalSince1970 {
            throw failed("x-amz-copy-source-if-modified-since")
        }
    }

    // MARK: - List

    /// One page of ListObjectsV2 / ListObjects, in UTF-8 binary key order.
    ///
    /// - Parameters:
    ///   - prefix: only keys starting with it (byte-wise).
    ///   - delimiter: keys with the delimiter after the prefix are rolled up into common prefixes
    ///     (prefix through the first delimiter), each counting once toward `maxKeys`. Empty = none.
    ///   - startAfter: exclusive lower bound (V2 start-after / decoded continuation token, V1 marker).
    ///     A common prefix equal to it is not returned again, so passing the previous page's
    ///     `nextMarker` resumes exactly.
    ///   - maxKeys: 0...1000 (larger values are clamped to 1000, as S3 does; 0 returns an empty,
    ///     non-truncated page).
    public func listObjects(
        bucket: String, prefix: String = "", delimiter: String? = nil, startAfter: String? = nil, maxKeys: Int = 1000
    ) async throws -> ObjectListing {
        guard maxKeys >= 0 else {
            throw ObjectStoreError(.invalidArgument, "max-keys must be a non-negative integer.", bucket: bucket)
        }
        let state = try bucketState(bucket)
        let limit = min(maxKeys, 1000)
        // The bucket lock can be held across a rename: take it on the pool, not on the caller's executor.
        return try await io {
            try state.state.withLock { s in
                guard !s.deleted else {
                    throw ObjectStoreError(.noSuchBucket, "The specified bucket does not exist.", bucket: bucket)
                }
                return s.index.list(prefix: prefix, delimiter: delimiter, startAfter: startAfter, maxKeys: limit)
            }
        }
    }
}
