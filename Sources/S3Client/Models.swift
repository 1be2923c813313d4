import Foundation
import NIOCore
import S3Wire

/// A byte range of an object, rendered as an HTTP `Range` header (`bytes=...`).
public struct ByteRange: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// `bytes=first-last`, both inclusive.
        case closed(first: Int, last: Int)
        /// `bytes=first-`
        case from(Int)
        /// `bytes=-count`: the last `count` bytes.
        case suffix(Int)
    }

    public let kind: Kind

    public init(_ kind: Kind) {
        self.kind = kind
    }

    /// Inclusive range `from...to`.
    public init(from: Int, to: Int) {
        self.kind = .closed(first: from, last: to)
    }

    public init(_ range: ClosedRange<Int>) {
        self.kind = .closed(first: range.lowerBound, last: range.upperBound)
    }

    /// Half-open range; must not be empty.
    public init(_ range: Range<Int>) {
        self.kind = .closed(first: range.lowerBound, last: range.upperBound - 1)
    }

    public static func from(_ offset: Int) -> ByteRange { ByteRange(.from(offset)) }
    public static func suffix(_ count: Int) -> ByteRange { ByteRange(.suffix(count)) }
    public static func bytes(_ range: ClosedRange<Int>) -> ByteRange { ByteRange(range) }

    /// `bytes=0-99`, `bytes=100-`, `bytes=-500`.
    public var headerValue: String {
        switch kind {
        case .closed(let first, let last): return "bytes=\(first)-\(last)"
        case .from(let first): return "bytes=\(first)-"
        case .suffix(let count): return "bytes=-\(count)"
        }
    }

    public var description: String { headerValue }

    func validate() throws {
        switch kind {
        case .closed(let first, let last):
            guard first >= 0, last >= first else {
                throw S3ClientError.invalidArgument("invalid byte range \(first)-\(last)")
            }
        case .from(let first):
            guard first >= 0 else { throw S3ClientError.invalidArgument("invalid byte range \(first)-") }
        case .suffix(let count):
            guard count > 0 else { throw S3ClientError.invalidArgument("invalid suffix byte range -\(count)") }
        }
    }

    /// The slice of an object of `size` bytes this range selects (nil when unsatisfiable).
    func resolve(size: Int) -> Range<Int>? {
        switch kind {
        case .closed(let first, let last):
            guard first < size else { return nil }
            return first..<(min(last, size - 1) + 1)
        case .from(let first):
            guard first < size else { return nil }
            return first..<size
        case .suffix(let count):
            guard size > 0 else { return nil }
            return max(0, size - count)..<size
        }
    }
}

/// A parsed `Content-Range: bytes first-last/total` header.
public struct ContentRange: Sendable, Hashable {
    public var first: Int
    public var last: Int
    /// nil when the server answered `*`.
    public var total: Int?

    public init(first: Int, last: Int, total: Int?) {
        self.first = first
        self.last = last
        self.total = total
    }

    init?(header: String) {
        let s = header.trimmingCharacters(in: .whitespaces)
        guard s.lowercased().hasPrefix("bytes ") else { return nil }
        let rest = s.dropFirst(6).trimmingCharacters(in: .whitespaces)
        let slash = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard slash.count == 2 else { return nil }
        let bounds = slash[0].split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard bounds.count == 2, let first = Int(bounds[0]), let last = Int(bounds[1]) else { return nil }
        self.first = first
        self.last = last
        self.total = slash[1] == "*" ? nil : Int(slash[1])
        if slash[1] != "*", total == nil { return nil }
    }
}

/// Object metadata from a HEAD or GET answer.
public struct ObjectHead: Sendable, Hashable {
    /// Total size of the object (from `Content-Range` when ranged, else `Content-Length`).
    public var size: Int
    /// Bytes in this answer's body (the range's length when ranged).
    public var contentLength: Int
    /// ETag without quotes.
    public var etag: String?
    public var contentType: String?
    public var lastModified: Date?
    /// `x-amz-meta-*` headers, keys lower-cased without the prefix.
    public var userMetadata: [String: String]
    /// Present when the answer is partial (206).
    public var contentRange: ContentRange?
    public var cacheControl: String?
    public var contentEncoding: String?
    public var contentDisposition: String?
    public var contentLanguage: String?
    public var versionId: String?
    public var storageClass: String?
    public var requestId: String?

    public init(
        size: Int, contentLength: Int, etag: String? = nil, contentType: String? = nil, lastModified: Date? = nil,
        userMetadata: [String: String] = [:], contentRange: ContentRange? = nil, cacheControl: String? = nil,
        contentEncoding: String? = nil, contentDisposition: String? = nil, contentLanguage: String? = nil,
        versionId: String? = nil, storageClass: String? = nil, requestId: String? = nil
    ) {
        self.size = size
        self.contentLength = contentLength
        self.etag = etag
        self.contentType = contentType
        self.lastModified = lastModified
        self.userMetadata = userMetadata
        self.contentRange = contentRange
        self.cacheControl = cacheControl
        self.contentEncoding = contentEncoding
        self.contentDisposition = contentDisposition
        self.contentLanguage = contentLanguage
        self.versionId = versionId
        self.storageClass = storageClass
        self.requestId = requestId
    }

    /// Builds from response headers (names compared case-insensitively).
    init(headers: [(name: String, value: String)]) {
        var size: Int?
        var contentLength: Int?
        self.init(size: 0, contentLength: 0)
        for (rawName, value) in headers {
            let name = rawName.lowercased()
            switch name {
            case "content-length": contentLength = Int(value.trimmingCharacters(in: .whitespaces))
            case "etag": etag = value.unquotedETag
            case "content-type": contentType = value
            case "last-modified": lastModified = S3Date.parseHTTP(value)
            case "content-range":
                contentRange = ContentRange(header: value)
                size = contentRange?.total
            case "cache-control": cacheControl = value
            case "content-encoding": contentEncoding = value
            case "content-disposition": contentDisposition = value
            case "content-language": contentLanguage = value
            case "x-amz-version-id": versionId = value
            case "x-amz-storage-class": storageClass = value
            case "x-amz-request-id": requestId = value
            default:
                if name.hasPrefix("x-amz-meta-") {
                    let key = String(name.dropFirst("x-amz-meta-".count))
                    if let existing = userMetadata[key] {
                        userMetadata[key] = existing + "," + value
                    } else {
                        userMetadata[key] = value
                    }
                }
            }
        }
        self.contentLength = contentLength ?? 0
        self.size = size ?? self.contentLength
    }
}

/// A buffered object.
public struct GetObjectOutput: Sendable {
    public var head: ObjectHead
    public var body: ByteBuffer

    public init(head: ObjectHead, body: ByteBuffer) {
        self.head = head
        self.body = body
    }
}

public struct PutObjectOutput: Sendable, Hashable {
    /// ETag without quotes. Multipart ETags look like `<hex>-<parts>`.
    public var etag: String
    public var versionId: String?

    public init(etag: String, versionId: String? = nil) {
        self.etag = etag
        self.versionId = versionId
    }
}

public struct BucketSummary: Sendable, Hashable {
    public var name: String
    public var creationDate: Date?

    public init(name: String, creationDate: Date?) {
        self.name = name
        self.creationDate = creationDate
    }
}

public struct ObjectSummary: Sendable, Hashable {
    public var key: String
    public var size: Int
    /// Without quotes.
    public var etag: String?
    public var lastModified: Date?
    public var storageClass: String?

    public init(key: String, size: Int, etag: String?, lastModified: Date?, storageClass: String? = nil) {
        self.key = key
        self.size = size
        self.etag = etag
        self.lastModified = lastModified
        self.storageClass = storageClass
    }
}

public struct ListObjectsV2Page: Sendable, Hashable {
    public var objects: [ObjectSummary]
    public var commonPrefixes: [String]
    public var isTruncated: Bool
    /// Pass to the next call's `continuationToken` when `isTruncated`.
    public var nextContinuationToken: String?
    public var keyCount: Int
    public var prefix: String?
    public var delimiter: String?
    public var maxKeys: Int?
    public var startAfter: String?
    public var continuationToken: String?

    public init(
        objects: [ObjectSummary], commonPrefixes: [String], isTruncated: Bool, nextContinuationToken: String?,
        keyCount: Int, prefix: String? = nil, delimiter: String? = nil, maxKeys: Int? = nil,
        startAfter: String? = nil, continuationToken: String? = nil
    ) {
        self.objects = objects
        self.commonPrefixes = commonPrefixes
        self.isTruncated = isTruncated
        self.nextContinuationToken = nextContinuationToken
        self.keyCount = keyCount
        self.prefix = prefix
        self.delimiter = delimiter
        self.maxKeys = maxKeys
        self.startAfter = startAfter
        self.continuationToken = continuationToken
    }
}

/// A part to name in `completeMultipartUpload`; also what `uploadPart` returns.
public struct CompletedPart: Sendable, Hashable {
    public var partNumber: Int
    /// Without quotes.
    public var etag: String

    public init(partNumber: Int, etag: String) {
        self.partNumber = partNumber
        self.etag = etag.unquotedETag
    }
}

public struct PartSummary: Sendable, Hashable {
    public var partNumber: Int
    public var etag: String
    public var size: Int
    public var lastModified: Date?

    public init(partNumber: Int, etag: String, size: Int, lastModified: Date?) {
        self.partNumber = partNumber
        self.etag = etag
        self.size = size
        self.lastModified = lastModified
    }
}

public struct ListPartsOutput: Sendable, Hashable {
    public var parts: [PartSummary]
    public var isTruncated: Bool
    public var nextPartNumberMarker: Int?

    public init(parts: [PartSummary], isTruncated: Bool, nextPartNumberMarker: Int?) {
        self.parts = parts
        self.isTruncated = isTruncated
        self.nextPartNumberMarker = nextPartNumberMarker
    }
}

/// A key that `deleteObjects` could not delete.
public struct DeleteObjectError: Sendable, Hashable {
    public var key: String
    public var code: String
    public var message: String

    public init(key: String, code: String, message: String) {
        self.key = key
        self.code = code
        self.message = message
    }
}

public struct CopyObjectOutput: Sendable, Hashable {
    /// Without quotes.
    public var etag: String
    public var lastModified: Date?

    public init(etag: String, lastModified: Date?) {
        self.etag = etag
        self.lastModified = lastModified
    }
}

/// What `copyObject` does with metadata.
public enum MetadataDirective: Sendable, Hashable {
    /// Keep the source object's metadata and content type.
    case copy
    /// Replace user metadata (and content type when given).
    case replace(metadata: [String: String], contentType: String? = nil)
}

/// A multipart upload in progress, as `ListMultipartUploads` lists it.
public struct MultipartUploadSummary: Sendable, Hashable {
    public var key: String
    public var uploadId: String
    /// When it was created (nil if the store did not say).
    public var initiated: Date?

    public init(key: String, uploadId: String, initiated: Date?) {
        self.key = key
        self.uploadId = uploadId
        self.initiated = initiated
    }
}

public struct ListMultipartUploadsOutput: Sendable, Hashable {
    public var uploads: [MultipartUploadSummary]
    public var isTruncated: Bool
    public var nextKeyMarker: String?
    public var nextUploadIdMarker: String?

    public init(
        uploads: [MultipartUploadSummary], isTruncated: Bool, nextKeyMarker: String?, nextUploadIdMarker: String?
    ) {
        self.uploads = uploads
        self.isTruncated = isTruncated
        self.nextKeyMarker = nextKeyMarker
        self.nextUploadIdMarker = nextUploadIdMarker
    }
}
