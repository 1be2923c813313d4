#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An error thrown by ``ObjectStore``.
///
/// ``code`` carries the S3 error code string (for example `NoSuchBucket`) so the HTTP layer can
/// render an S3 XML error directly; ``Code/httpStatus`` is the status S3 answers with.
public struct ObjectStoreError: Error, Sendable, CustomStringConvertible {
    /// An S3 error code. Compare with the static members (`error.code == .noSuchKey`).
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        /// The S3 error code string, e.g. `"NoSuchBucket"`.
        public let rawValue: String
        /// The HTTP status S3 uses for this error.
        public let httpStatus: Int

        public init(rawValue: String) {
            self.rawValue = rawValue
            self.httpStatus = Code.knownStatus[rawValue] ?? 500
        }

        init(_ rawValue: String, _ httpStatus: Int) {
            self.rawValue = rawValue
            self.httpStatus = httpStatus
        }

        public var description: String { rawValue }

        public static func == (lhs: Code, rhs: Code) -> Bool { lhs.rawValue == rhs.rawValue }
        public func hash(into hasher: inout Hasher) { hasher.combine(rawValue) }

        public static let noSuchBucket = Code("NoSuchBucket", 404)
        public static let noSuchKey = Code("NoSuchKey", 404)
        public static let noSuchUpload = Code("NoSuchUpload", 404)
        public static let bucketAlreadyOwnedByYou = Code("BucketAlreadyOwnedByYou", 409)
        /// The name is taken by a bucket of another user.
        public static let bucketAlreadyExists = Code("BucketAlreadyExists", 409)
        public static let bucketNotEmpty = Code("BucketNotEmpty", 409)
        public static let invalidBucketName = Code("InvalidBucketName", 400)
        public static let keyTooLong = Code("KeyTooLongError", 400)
        /// A key that is empty or contains NUL. (S3 has no dedicated code; MinIO-style name.)
        public static let invalidKey = Code("InvalidObjectName", 400)
        public static let invalidPart = Code("InvalidPart", 400)
        public static let invalidPartOrder = Code("InvalidPartOrder", 400)
        /// `GET ?partNumber=N` past the object's parts.
        public static let invalidPartNumber = Code("InvalidPartNumber", 416)
        /// A copy-source range outside the source object.
        public static let invalidRange = Code("InvalidRange", 416)
        public static let entityTooSmall = Code("EntityTooSmall", 400)
        public static let entityTooLarge = Code("EntityTooLarge", 400)
        public static let metadataTooLarge = Code("MetadataTooLarge", 400)
        public static let preconditionFailed = Code("PreconditionFailed", 412)
        public static let badDigest = Code("BadDigest", 400)
        public static let invalidDigest = Code("InvalidDigest", 400)
        public static let invalidArgument = Code("InvalidArgument", 400)
        public static let invalidRequest = Code("InvalidRequest", 400)
        public static let malformedXML = Code("MalformedXML", 400)
        /// A conflicting operation on the same resource is in progress (e.g. abort during complete).
        public static let operationAborted = Code("OperationAborted", 409)
        public static let internalError = Code("InternalError", 500)
        /// Temporary resource exhaustion (EMFILE…) or an observer failure after a committed change.
        public static let serviceUnavailable = Code("ServiceUnavailable", 503)
        /// The file system is full, or the write would take it below the store's free-space floor
        /// (``ObjectStoreConfiguration/freeSpaceFloor``). 507 Insufficient Storage, as MinIO answers it: SDKs
        /// do not retry it (they retry 500 and 503), so a client is told at once instead of re-sending the
        /// whole upload into a full disk.
        public static let storageFull = Code("StorageFull", 507)

        private static let knownStatus: [String: Int] = {
            var map: [String: Int] = [:]
            for code in [
                noSuchBucket, noSuchKey, noSuchUpload, bucketAlreadyOwnedByYou, bucketNotEmpty,
                invalidBucketName, keyTooLong, invalidKey, invalidPart, invalidPartOrder, entityTooSmall,
                entityTooLarge, metadataTooLarge, preconditionFailed, badDigest, invalidDigest, invalidArgument,
                invalidRequest,
                malformedXML, operationAborted, internalError, serviceUnavailable, bucketAlreadyExists,
                invalidPartNumber, invalidRange, storageFull,
            ] {
                map[code.rawValue] = code.httpStatus
            }
            return map
        }()
    }

    public var code: Code
    /// Human-readable message (safe to return to clients).
    public var message: String
    public var bucket: String?
    public var key: String?
    public var uploadId: String?
    /// The underlying failure, typically a ``SystemCallError``.
    public var underlying: (any Error)?

    public init(
        _ code: Code,
        _ message: String,
        bucket: String? = nil,
        key: String? = nil,
        uploadId: String? = nil,
        underlying: (any Error)? = nil
    ) {
        self.code = code
        self.message = message
        self.bucket = bucket
        self.key = key
        self.uploadId = uploadId
        self.underlying = underlying
    }

    public var description: String {
        var parts = ["\(code.rawValue): \(message)"]
        if let bucket { parts.append("bucket=\(bucket)") }
        if let key { parts.append("key=\(key.debugDescription)") }
        if let uploadId { parts.append("uploadId=\(uploadId)") }
        if let underlying { parts.append("underlying=\(underlying)") }
        return parts.joined(separator: " ")
    }
}

/// A failed system call (errno), carried in ``ObjectStoreError/underlying``.
public struct SystemCallError: Error, Sendable, CustomStringConvertible {
    public var call: String
    public var errno: CInt
    public var path: String?

    public init(call: String, errno: CInt, path: String? = nil) {
        self.call = call
        self.errno = errno
        self.path = path
    }

    public var description: String {
        let text = String(cString: strerror(errno))
        if let path { return "\(call)(\(path)): \(text) (errno \(errno))" }
        return "\(call): \(text) (errno \(errno))"
    }
}

extension ObjectStoreError {
    /// Maps any error escaping an operation to an `ObjectStoreError`, once, at the operation boundary.
    static func wrap(
        _ error: any Error,
        operation: String,
        bucket: String? = nil,
        key: String? = nil,
        uploadId: String? = nil
    ) -> ObjectStoreError {
        if let error = error as? ObjectStoreError { return error }
        if let sys = error as? SystemCallError {
            let code: Code
            let reason: String
            switch sys.errno {
            case ENOSPC:
                code = .storageFull
                reason = "the store's disk is full; nothing was stored"
            case EDQUOT:
                code = .storageFull
                reason = "the store's disk quota is exhausted; nothing was stored"
            case EMFILE, ENFILE:
                code = .serviceUnavailable
                reason = "too many open files"
            case EROFS:
                code = .internalError
                reason = "the data directory is on a read-only file system"
            case EACCES, EPERM:
                code = .internalError
                reason = "permission denied in the data directory"
            case EIO:
                code = .internalError
                reason = "I/O error in the data directory"
            default:
                code = .internalError
                reason = "storage failure (\(String(cString: strerror(sys.errno))))"
            }
            return ObjectStoreError(
                code, "\(operation) failed: \(reason)", bucket: bucket, key: key, uploadId: uploadId,
                underlying: sys)
        }
        if error is CancellationError {
            return ObjectStoreError(
                .internalError, "\(operation) was cancelled", bucket: bucket, key: key, uploadId: uploadId,
                underlying: error)
        }
        return ObjectStoreError(
            .internalError, "\(operation) failed: \(error)", bucket: bucket, key: key, uploadId: uploadId,
            underlying: error)
    }
}
