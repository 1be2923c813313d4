import Foundation

/// Metadata stored with an object, as given at PUT time.
public struct ObjectMetadata: Sendable, Codable, Equatable {
    /// `Content-Type`.
    public var contentType: String?
    /// User metadata: lowercased names *without* the `x-amz-meta-` prefix.
    public var userMetadata: [String: String]
    public var contentEncoding: String?
    public var contentDisposition: String?
    public var cacheControl: String?
    public var contentLanguage: String?
    /// `Expires`, verbatim (an HTTP date string).
    public var expires: String?
    /// Additional checksums, e.g. `["CRC32": "base64…"]`; stored and returned verbatim, not verified.
    public var checksums: [String: String]
    /// The object's canned ACL (``CannedACL``); nil is `private`.
    public var acl: CannedACL?

    public init(
        contentType: String? = nil,
        userMetadata: [String: String] = [:],
        contentEncoding: String? = nil,
        contentDisposition: String? = nil,
        cacheControl: String? = nil,
        contentLanguage: String? = nil,
        expires: String? = nil,
        checksums: [String: String] = [:],
        acl: CannedACL? = nil
    ) {
        self.contentType = contentType
        self.userMetadata = userMetadata
        self.contentEncoding = contentEncoding
        self.contentDisposition = contentDisposition
        self.cacheControl = cacheControl
        self.contentLanguage = contentLanguage
        self.expires = expires
        self.checksums = checksums
        self.acl = acl
    }

    enum CodingKeys: String, CodingKey {
        case contentType, userMetadata, contentEncoding, contentDisposition, cacheControl, contentLanguage
        case expires, checksums, acl
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        contentType = try c.decodeIfPresent(String.self, forKey: .contentType)
        userMetadata = try c.decodeIfPresent([String: String].self, forKey: .userMetadata) ?? [:]
        contentEncoding = try c.decodeIfPresent(String.self, forKey: .contentEncoding)
        contentDisposition = try c.decodeIfPresent(String.self, forKey: .contentDisposition)
        cacheControl = try c.decodeIfPresent(String.self, forKey: .cacheControl)
        contentLanguage = try c.decodeIfPresent(String.self, forKey: .contentLanguage)
        expires = try c.decodeIfPresent(String.self, forKey: .expires)
        checksums = try c.decodeIfPresent([String: String].self, forKey: .checksums) ?? [:]
        acl = try c.decodeIfPresent(String.self, forKey: .acl).flatMap(CannedACL.init(rawValue:))
    }
}

/// Everything known about a stored object.
public struct ObjectInfo: Sendable, Equatable {
    public var bucket: String
    public var key: String
    /// Size of the data in bytes.
    public var size: Int
    /// Hex MD5 of the data, or `md5-of-part-md5s-N` for multipart objects. Without quotes.
    public var etag: String
    public var lastModified: Date
    public var metadata: ObjectMetadata
    /// Number of parts for an object made by `CompleteMultipartUpload`, else `nil`.
    public var partCount: Int?
    /// The size of each part, in order, for an object made by `CompleteMultipartUpload` (nil for objects
    /// completed before the store recorded them).
    public var partSizes: [Int]? = nil

    /// The byte range of part `number` (1-based): the whole object is part 1 of a single-part object.
    /// nil when there is no such part.
    public func partRange(_ number: Int) -> Range<Int>? {
        guard let partSizes else { return number == 1 && partCount == nil ? 0..<size : nil }
        guard number >= 1, number <= partSizes.count else { return nil }
        let start = partSizes[..<(number - 1)].reduce(0, +)
        return start..<(start + partSizes[number - 1])
    }
}

/// The canned ACLs the store enforces. Anyone — anonymous or another user — may read what is `public-read`:
/// a bucket's listing, or an object's data and metadata, as in S3. Everything else is the owner's and the
/// users the store's configuration grants access.
public enum CannedACL: String, Sendable, Codable, Equatable {
    case `private` = "private"
    case publicRead = "public-read"
}

/// A bucket and a key.
public struct ObjectLocation: Sendable, Hashable {
    public var bucket: String
    public var key: String
    public init(bucket: String, key: String) {
        self.bucket = bucket
        self.key = key
    }
}

/// `x-amz-metadata-directive` of CopyObject.
public enum MetadataDirective: Sendable, Equatable {
    /// Keep the source object's metadata.
    case copy
    /// Replace it with the given metadata.
    case replace(ObjectMetadata)
}

/// Preconditions on the *destination* of a write, checked atomically with the commit.
public struct WriteConditions: Sendable, Equatable {
    /// `If-Match`: the current object's ETag must equal this (quotes optional; `*` = "must exist").
    /// A missing object fails with `NoSuchKey` (as S3 does), a different ETag with `PreconditionFailed`.
    public var ifMatch: String?
    /// `If-None-Match`: `*` fails with `PreconditionFailed` if the key exists; an ETag fails if it matches.
    public var ifNoneMatch: String?

    public init(ifMatch: String? = nil, ifNoneMatch: String? = nil) {
        self.ifMatch = ifMatch
        self.ifNoneMatch = ifNoneMatch
    }

    public static let none = WriteConditions()
}

/// `x-amz-copy-source-if-*` preconditions on the *source* of a copy, checked against the exact
/// version that is copied. A failure throws `PreconditionFailed`.
public struct CopySourceConditions: Sendable, Equatable {
    public var ifMatch: String?
    public var ifNoneMatch: String?
    public var ifModifiedSince: Date?
    public var ifUnmodifiedSince: Date?

    public init(
        ifMatch: String? = nil, ifNoneMatch: String? = nil, ifModifiedSince: Date? = nil,
        ifUnmodifiedSince: Date? = nil
    ) {
        self.ifMatch = ifMatch
        self.ifNoneMatch = ifNoneMatch
        self.ifModifiedSince = ifModifiedSince
        self.ifUnmodifiedSince = ifUnmodifiedSince
    }

    public static let none = CopySourceConditions()
}

/// A bucket.
public struct BucketInfo: Sendable, Equatable {
    public var name: String
    public var creationDate: Date
    /// The user who created it (nil: made before the store had users, or by the single configured key).
    public var owner: String?
    public var acl: CannedACL = .private

    public init(name: String, creationDate: Date, owner: String? = nil, acl: CannedACL = .private) {
        self.name = name
        self.creationDate = creationDate
        self.owner = owner
        self.acl = acl
    }
}

/// One object in a listing.
public struct ObjectSummary: Sendable, Equatable {
    public var key: String
    public var size: Int
    public var etag: String
    public var lastModified: Date
}

/// One page of a listing (ListObjectsV2 / ListObjects).
public struct ObjectListing: Sendable, Equatable {
    /// Objects, in UTF-8 binary order of their keys.
    public var objects: [ObjectSummary]
    /// Common prefixes (rolled up by the delimiter), in order; each counts toward max-keys.
    public var commonPrefixes: [String]
    public var isTruncated: Bool
    /// The last key or common prefix returned (whichever is greater), when `isTruncated`.
    /// Pass it as `startAfter` to get the next page (V1 `NextMarker`, or the V2 continuation token).
    public var nextMarker: String?
}

/// The outcome for one key of ``ObjectStore/deleteObjects(bucket:keys:)``.
public struct DeleteResult: Sendable {
    public var key: String
    /// `nil` on success (including "there was nothing to delete").
    public var error: ObjectStoreError?
    /// Whether an object existed and was removed.
    public var deleted: Bool
}

/// A part of a multipart upload.
public struct PartInfo: Sendable, Equatable {
    public var partNumber: Int
    public var size: Int
    /// Hex MD5 of the part's data, without quotes.
    public var etag: String
    public var lastModified: Date
}

/// A part named in `CompleteMultipartUpload`.
public struct CompletedPart: Sendable, Equatable {
    public var partNumber: Int
    /// The ETag returned by the part upload (quotes optional).
    public var etag: String
    public init(partNumber: Int, etag: String) {
        self.partNumber = partNumber
        self.etag = etag
    }
}

/// An in-progress multipart upload.
public struct MultipartUploadInfo: Sendable, Equatable {
    public var uploadId: String
    public var bucket: String
    public var key: String
    public var initiated: Date
    public var metadata: ObjectMetadata
}

/// One page of ListParts.
public struct PartListing: Sendable, Equatable {
    public var upload: MultipartUploadInfo
    public var parts: [PartInfo]
    public var isTruncated: Bool
    /// The last part number returned, when `isTruncated`.
    public var nextPartNumberMarker: Int?
}

/// A committed change, delivered to the observer for (future) event notifications.
public struct ObjectStoreEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case put = "ObjectCreated:Put"
        case copy = "ObjectCreated:Copy"
        case completeMultipartUpload = "ObjectCreated:CompleteMultipartUpload"
        case delete = "ObjectRemoved:Delete"
    }

    public var kind: Kind
    public var bucket: String
    public var key: String
    /// Object size (0 for deletes).
    public var size: Int
    /// ETag of the new object (`nil` for deletes).
    public var etag: String?
    /// Uppercase hex (16 digits) of the commit time in ns; strictly increasing across the store's
    /// commits, so comparing two sequencers of one key tells which change is newer.
    public var sequencer: String
    public var time: Date
    /// Content type and user metadata of the new object (`nil` for deletes).
    public var metadata: ObjectMetadata?

    public init(
        kind: Kind, bucket: String, key: String, size: Int, etag: String?, sequencer: String, time: Date,
        metadata: ObjectMetadata? = nil
    ) {
        self.kind = kind
        self.bucket = bucket
        self.key = key
        self.size = size
        self.etag = etag
        self.sequencer = sequencer
        self.time = time
        self.metadata = metadata
    }
}

/// Called after a change is committed, before the mutating call returns.
///
/// If it throws, the change **stays committed**; the mutating call then throws
/// `ObjectStoreError` with code ``ObjectStoreError/Code/serviceUnavailable`` whose `underlying`
/// is the observer's error (the HTTP layer answers 503; a retry of the request is idempotent).
public typealias ObjectStoreObserver = @Sendable (ObjectStoreEvent) async throws -> Void
