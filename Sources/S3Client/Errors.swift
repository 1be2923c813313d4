import Foundation
import S3Wire

/// An error answered by the S3 service: the `<Error>` XML body, or for body-less answers
/// (HEAD) a code derived from the HTTP status (`NotFound`, `Forbidden`, …).
public struct S3Error: Error, Sendable, Hashable, CustomStringConvertible {
    /// S3 error code, e.g. `NoSuchKey`, `NoSuchBucket`, `AccessDenied`, `SlowDown`.
    public let code: String?
    public let message: String
    /// HTTP status code. `200` for errors embedded in a successful answer
    /// (CompleteMultipartUpload, CopyObject).
    public let statusCode: Int
    public let requestId: String?
    public let resource: String?
    public let bucket: String?
    public let key: String?

    public init(
        code: String?,
        message: String,
        statusCode: Int,
        requestId: String? = nil,
        resource: String? = nil,
        bucket: String? = nil,
        key: String? = nil
    ) {
        self.code = code
        self.message = message
        self.statusCode = statusCode
        self.requestId = requestId
        self.resource = resource
        self.bucket = bucket
        self.key = key
    }

    public var description: String {
        var s = "S3Error(\(statusCode) \(code ?? "-")): \(message)"
        if let resource {
            s += " resource=\(resource)"
        } else if let bucket {
            s += " bucket=\(bucket)" + (key.map { " key=\($0)" } ?? "")
        }
        if let requestId { s += " requestId=\(requestId)" }
        return s
    }

    /// `NoSuchKey`, or a 404 to a HEAD of an object (which carries no code).
    public var isNoSuchKey: Bool { code == "NoSuchKey" || (code == "NotFound" && statusCode == 404) }
    public var isNoSuchBucket: Bool { code == "NoSuchBucket" }
    public var isNoSuchUpload: Bool { code == "NoSuchUpload" }
    /// Any 404.
    public var isNotFound: Bool { statusCode == 404 }
    public var isAccessDenied: Bool { code == "AccessDenied" || statusCode == 403 }
    /// `If-Match` / `If-None-Match` failed.
    public var isPreconditionFailed: Bool { code == "PreconditionFailed" || statusCode == 412 }
    public var isBucketAlreadyOwnedByYou: Bool { code == "BucketAlreadyOwnedByYou" }
    public var isBucketAlreadyExists: Bool { code == "BucketAlreadyExists" }
    public var isBucketNotEmpty: Bool { code == "BucketNotEmpty" }
    public var isInvalidRange: Bool { code == "InvalidRange" || statusCode == 416 }

    /// Whether retrying the same request may succeed.
    public var isRetryable: Bool {
        if statusCode >= 500 || statusCode == 429 { return true }
        switch code {
        case "SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling",
            "ThrottlingException", "RequestThrottled", "TooManyRequests", "ServiceUnavailableException":
            return true
        default:
            return false
        }
    }

    /// Parses an `<Error>` body; falls back on the status when the body is empty or not XML.
    static func from(statusCode: Int, body: Data?, requestId: String?, bucket: String?, key: String?) -> S3Error {
        if let body, !body.isEmpty, let root = try? S3XML.parse(body), root.name == "Error" {
            return from(element: root, statusCode: statusCode, requestId: requestId, bucket: bucket, key: key)
        }
        let code = codeForStatus(statusCode)
        var message = "HTTP \(statusCode)"
        if let body, !body.isEmpty {
            let text = String(decoding: body.prefix(512), as: UTF8.self)
            message += ": " + text
        }
        return S3Error(
            code: code, message: message, statusCode: statusCode, requestId: requestId, bucket: bucket, key: key
        )
    }

    static func from(element root: S3XMLElement, statusCode: Int, requestId: String?, bucket: String?, key: String?)
        -> S3Error
    {
        let code = root.string("Code").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        return S3Error(
            code: (code?.isEmpty ?? true) ? codeForStatus(statusCode) : code,
            message: root.string("Message") ?? "HTTP \(statusCode)",
            statusCode: statusCode,
            requestId: root.string("RequestId") ?? requestId,
            resource: root.string("Resource"),
            bucket: root.string("BucketName") ?? bucket,
            key: root.string("Key") ?? key
        )
    }

    static func codeForStatus(_ status: Int) -> String? {
        switch status {
        case 301: return "PermanentRedirect"
        case 304: return "NotModified"
        case 307: return "TemporaryRedirect"
        case 400: return "BadRequest"
        case 403: return "Forbidden"
        case 404: return "NotFound"
        case 405: return "MethodNotAllowed"
        case 409: return "Conflict"
        case 411: return "MissingContentLength"
        case 412: return "PreconditionFailed"
        case 416: return "InvalidRange"
        case 429: return "TooManyRequests"
        case 500: return "InternalError"
        case 501: return "NotImplemented"
        case 503: return "ServiceUnavailable"
        default: return nil
        }
    }
}

/// An error detected by the client itself (bad argument, unexpected answer, file problems).
public struct S3ClientError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// An argument cannot be sent (empty bucket, bad metadata, expiry out of range, …).
        case invalidArgument
        /// The endpoint URL is unusable.
        case invalidConfiguration
        /// The service answered something this client cannot interpret.
        case invalidResponse
        /// Bytes sent or received do not match their declared size or checksum.
        case integrity
        /// A local file could not be read or written.
        case file
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "S3ClientError(\(kind)): \(message)" }

    static func invalidArgument(_ m: String) -> S3ClientError { .init(.invalidArgument, m) }
    static func invalidResponse(_ m: String) -> S3ClientError { .init(.invalidResponse, m) }
    static func integrity(_ m: String) -> S3ClientError { .init(.integrity, m) }
}
