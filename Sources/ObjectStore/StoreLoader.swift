import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

struct BucketRecord: Codable {
    var name: String
    var creationDateNs: Int64
    var owner: String?
    var acl: CannedACL?
}

struct UploadRecord: Codable {
    var uploadId: String
    var bucket: String
    var key: String
    var initiatedNs: Int64
    var metadata: ObjectMetadata

    var info: MultipartUploadInfo {
        MultipartUploadInfo(
            uploadId: uploadId, bucket: bucket, key: key, initiated: Date(nanoseconds: initiatedNs),
            metadata: metadata)
    }
}

/// A completed multipart upload's result, in `completed/<uploadId>.json` (see
/// ``ObjectStore/completedResult(bucket:key:uploadId:parts:)``).
struct CompletedUploadRecord: Codable, Sendable {
    var uploadId: String
    var bucket: String
    var key: String
    var etag: String
    var size: Int
    var partSizes: [Int]
    var lastModifiedNs: Int64
    var completedNs: Int64
}

struct LoadedState: Sendable {
    var lockFD: CInt
    var buckets: [String: BucketState]
    var uploads: [String: UploadEntry]
    var completed: [String: CompletedUploadRecord]
}

/// Start-up and directory-level operations. Everything here blocks: thread pool only.
enum StoreLoader {
    static func load(paths: StorePaths, logger: Logger) throws -> LoadedState {
        try makeDirectories(paths.root)
        // One store per data directory: a second one would delete the first one's temp files.
        let lockPath = paths.root + "/lock"
        let lockFD = try Posix.open(lockPath, O_CREAT | O_RDWR, mode: 0o644)
        if flock(lockFD, LOCK_EX | LOCK_NB) != 0 {
            let error = Posix.fail("flock", lockPath)
            Posix.close(lockFD)
            if error.errno == EWOULDBLOCK {
                throw ObjectStoreError(
                    .internalError, "The data directory \(paths.root) is in use by another ObjectStore.",
                    underlying: error)
            }
            throw error
        }
        do {
            return try loadLocked(paths: paths, logger: logger, lockFD: lockFD)
        } catch {
            Posix.close(lockFD)
            throw error
        }
    }

    private static func loadLocked(paths: StorePaths, logger: Logger, lockFD: CInt) throws -> LoadedState {
        try Posix.mkdir(paths.buckets)
        try Posix.mkdir(paths.multipart)
        try Posix.mkdir(paths.tmp)
        try Posix.mkdir(paths.completed)

        // Interrupted uploads, half-created buckets and uploads, trash of deletions.
        let leftovers = try Posix.listDirectory(paths.tmp)
        for name in leftovers { try Posix.removeTree(paths.tmp + "/" + name) }
        if !leftovers.isEmpty {
            logger.info("removed leftover temp files", metadata: ["cinescale.count": "\(leftovers.count)"])
        }

        var buckets: [String: BucketState] = [:]
        var objectCount = 0
        for name in try Posix.listDirectory(paths.buckets).sorted() {
            let directory = paths.bucket(name)
            guard (try? Validation.validateBucketName(name)) != nil, Posix.isDirectory(directory) else {
                logger.warning("ignoring unexpected entry in buckets/", metadata: ["cinescale.name": "\(name)"])
                continue
            }
            guard let record = try? readJSON(BucketRecord.self, at: directory + "/bucket.json") else {
                logger.warning(
                    "ignoring bucket directory without bucket.json", metadata: ["cinescale.bucket": "\(name)"])
                continue
            }
            let (entries, directories) = try scanObjects(directory + "/objects", bucket: name, logger: logger)
            objectCount += entries.count
            buckets[name] = BucketState(
                name: name, creationDate: Date(nanoseconds: record.creationDateNs), owner: record.owner,
                acl: record.acl ?? .private, directory: directory, index: KeyIndex(unsorted: entries),
                existingDirectories: directories)
        }

        var uploads: [String: UploadEntry] = [:]
        for id in try Posix.listDirectory(paths.multipart) {
            let directory = paths.upload(id)
            if Validation.isValidUploadId(id),
                let record = try? readJSON(UploadRecord.self, at: directory + "/upload.json"),
                record.uploadId == id, buckets[record.bucket] != nil
            {
                uploads[id] = UploadEntry(info: record.info)
            } else {
                logger.warning(
                    "removing orphaned multipart upload directory", metadata: ["cinescale.uploadId": "\(id)"])
                try Posix.removeTree(directory)
            }
        }
        var completed: [String: CompletedUploadRecord] = [:]
        let now = Posix.nowNanoseconds()
        for name in try Posix.listDirectory(paths.completed) {
            let path = paths.completed + "/" + name
            if let record = try? readJSON(CompletedUploadRecord.self, at: path),
                name == record.uploadId + ".json", now - record.completedNs <= ObjectStore.completedUploadRetention
            {
                completed[record.uploadId] = record
            } else {
                _ = try Posix.unlink(path)
            }
        }
        logger.info(
            "object store opened",
            metadata: [
                "cinescale.root": "\(paths.root)", "cinescale.buckets": "\(buckets.count)",
                "cinescale.objects": "\(objectCount)", "cinescale.uploads": "\(uploads.count)",
            ])
        return LoadedState(lockFD: lockFD, buckets: buckets, uploads: uploads, completed: completed)
    }

    static func makeDirectories(_ path: String) throws {
        if path.isEmpty || Posix.isDirectory(path) { return }
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            try makeDirectories(String(path[..<slash]))
        }
        try Posix.mkdir(path)
    }

    /// The objects of a bucket, and the `objects/ab/cd` directories found (as the number `0xabcd`).
    static func scanObjects(
        _ objectsDirectory: String, bucket: String, logger: Logger
    ) throws -> (entries: [IndexEntry], directories: [Int]) {
        var entries: [IndexEntry] = []
        var directories: [Int] = []
        for l1 in try Posix.listDirectory(objectsDirectory) {
            for l2 in try Posix.listDirectory(objectsDirectory + "/" + l1) {
                let directory = objectsDirectory + "/" + l1 + "/" + l2
                let name = (l1 + l2).utf8
                if name.count == 4, name.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }),
                    let number = Int(l1 + l2, radix: 16)
                {
                    directories.append(number)
                }
                for file in try Posix.listDirectory(directory) {
                    let path = directory + "/" + file
                    do {
                        guard let fd = try Posix.openIfExists(path) else { continue }
                        defer { Posix.close(fd) }
                        let (trailer, _) = try FileTrailer.read(fd: fd, path: path)
                        guard trailer.kind == .object, let key = trailer.key else {
                            throw FileTrailer.Corrupt(path: path, reason: "not an object file")
                        }
                        let hash = objectHash(key)
                        guard hash == file, hash.hasPrefix(l1 + l2) else {
                            throw FileTrailer.Corrupt(path: path, reason: "key does not match the file name")
                        }
                        entries.append(
                            IndexEntry(
                                key: key, size: trailer.size, etag: trailer.etag,
                                lastModifiedNs: trailer.lastModifiedNs))
                    } catch {
                        logger.error(
                            "skipping unreadable object file",
                            metadata: [
                                "cinescale.bucket": "\(bucket)", "cinescale.path": "\(path)",
                                "cinescale.error": "\(error)",
                            ])
                    }
                }
            }
        }
        return (entries, directories)
    }

    static func createBucketOnDisk(
        name: String, owner: String?, acl: CannedACL, paths: StorePaths, fsync: Bool
    ) throws -> BucketState {
        let staging = paths.tmp + "/newbucket-" + randomHex()
        try Posix.mkdir(staging)
        do {
            let now = Posix.nowNanoseconds()
            try writeJSON(
                BucketRecord(name: name, creationDateNs: now, owner: owner, acl: acl), to: staging + "/bucket.json",
                fsync: fsync)
            try Posix.mkdir(staging + "/objects")
            if fsync { try Posix.fsyncDirectory(staging) }
            try Posix.rename(staging, paths.bucket(name))
            if fsync { try Posix.fsyncDirectory(paths.buckets) }
            return BucketState(
                name: name, creationDate: Date(nanoseconds: now), owner: owner, acl: acl, directory: paths.bucket(name),
                index: KeyIndex())
        } catch {
            try? Posix.removeTree(staging)
            throw error
        }
    }

    /// Replaces a bucket's `bucket.json` atomically (a temp file renamed over it).
    static func rewriteBucketRecord(_ record: BucketRecord, directory: String, paths: StorePaths, fsync: Bool) throws {
        let temp = paths.tmp + "/bucket-json-" + randomHex()
        try writeJSON(record, to: temp, fsync: fsync)
        do {
            try Posix.rename(temp, directory + "/bucket.json")
        } catch {
            _ = try? Posix.unlink(temp)
            throw error
        }
        if fsync { try Posix.fsyncDirectory(directory) }
    }

    static func writeJSON<T: Encodable>(_ value: T, to path: String, fsync: Bool) throws {
        let bytes = [UInt8](try JSONEncoder().encode(value))
        let fd = try Posix.open(path, O_CREAT | O_EXCL | O_WRONLY)
        defer { Posix.close(fd) }
        try bytes.withUnsafeBytes { try Posix.writeAll(fd, $0, path: path) }
        if fsync { try Posix.fsync(fd, path: path) }
    }

    static func readJSON<T: Decodable>(_ type: T.Type, at path: String) throws -> T {
        let fd = try Posix.open(path, O_RDONLY)
        defer { Posix.close(fd) }
        let size = try Posix.fileSize(fd, path: path)
        guard size <= 16 * 1024 * 1024 else { throw FileTrailer.Corrupt(path: path, reason: "too large") }
        var data = Data(count: size)
        let n = try data.withUnsafeMutableBytes { try Posix.preadFull(fd, $0, offset: 0, path: path) }
        return try JSONDecoder().decode(T.self, from: data.prefix(n))
    }
}
