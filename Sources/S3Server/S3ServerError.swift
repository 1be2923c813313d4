import HTTPTypes
import Hummingbird
import NIOCore
import ObjectStore
import S3Wire
import SigV4
import StoreNotifications

/// An error answered to the client as an S3 XML `<Error>` document, the one place that document is written
/// (``response(from:context:)``; a HEAD answer names the code in `x-amz-error-code` instead, having no body).
/// Handlers throw it; ``S3Responder`` maps every other error onto one (``S3Responder/s3Error(_:logger:)``:
/// storage, signature and notification errors by their codes, anything else a logged 500 InternalError) and
/// fills in the request's resource and id.
public struct S3ServerError: HTTPResponseError, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    public var status: HTTPResponse.Status
    /// Extra elements of the error document (BucketName, Key, UploadId, ...), in order.
    public var details: [(String, String)]
    public var headers: HTTPFields
    /// The `<Resource>` of the document: the request's path (its bucket and key) unless set.
    public var resource: String?
    /// The `<RequestId>` and `<HostId>` of the document (the responder's `x-amz-request-id`).
    public var requestID: String?

    public init(
        _ code: String, _ status: HTTPResponse.Status, _ message: String,
        details: [(String, String)] = [], headers: HTTPFields = [:]
    ) {
        self.code = code
        self.status = status
        self.message = message
        self.details = details
        self.headers = headers
    }

    public var description: String { "\(code) (\(status.code)): \(message)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = headers
        if request.method == .head {
            // HEAD answers carry no body; S3 names the code in a header instead.
            headers[.init("x-amz-error-code")!] = code
            return Response(status: status, headers: headers)
        }
        var xml = S3XMLWriter(root: "Error", namespace: false)
        xml.element("Code", code)
        xml.element("Message", message)
        for (name, value) in details { xml.element(name, value) }
        xml.element("Resource", resource ?? request.uri.path)
        xml.element("RequestId", requestID ?? "")
        xml.element("HostId", requestID ?? "")
        return S3Responder.xmlResponse(xml.finish(), status: status, headers: headers)
    }
}

extension S3ServerError {
    static func noSuchBucket(_ bucket: String) -> Self {
        .init("NoSuchBucket", .notFound, "The specified bucket does not exist", details: [("BucketName", bucket)])
    }
    static func noSuchKey(_ key: String) -> Self {
        .init("NoSuchKey", .notFound, "The specified key does not exist.", details: [("Key", key)])
    }
    static func invalidArgument(_ message: String, name: String? = nil, value: String? = nil) -> Self {
        var details: [(String, String)] = []
        if let name { details.append(("ArgumentName", name)) }
        if let value { details.append(("ArgumentValue", value)) }
        return .init("InvalidArgument", .badRequest, message, details: details)
    }
    static func invalidRequest(_ message: String) -> Self { .init("InvalidRequest", .badRequest, message) }
    static let malformedXML = S3ServerError(
        "MalformedXML", .badRequest,
        "The XML you provided was not well-formed or did not validate against our published schema.")
    static func notImplemented(_ what: String) -> Self {
        .init(
            "NotImplemented", .init(code: 501),
            "A header or query you provided implies functionality that is not implemented: \(what)")
    }
    static func methodNotAllowed(_ method: String) -> Self {
        .init(
            "MethodNotAllowed", .methodNotAllowed, "The specified method is not allowed against this resource.",
            details: [("Method", method), ("ResourceType", "OBJECT")])
    }
    static let preconditionFailed = S3ServerError(
        "PreconditionFailed", .preconditionFailed, "At least one of the pre-conditions you specified did not hold",
        details: [("Condition", "If-Match")])
    static let missingContentLength = S3ServerError(
        "MissingContentLength", .init(code: 411), "You must provide the Content-Length HTTP header.")
    static func entityTooLarge(max: Int) -> Self {
        .init(
            "EntityTooLarge", .badRequest, "Your proposed upload exceeds the maximum allowed object size.",
            details: [("MaxSizeAllowed", String(max))])
    }
    static let accessDenied = S3ServerError("AccessDenied", .forbidden, "Access Denied")
    static let internalError = S3ServerError(
        "InternalError", .internalServerError, "We encountered an internal error. Please try again.")

    /// Maps the storage layer's errors onto S3 codes and statuses.
    init(_ error: ObjectStoreError) {
        let status = HTTPResponse.Status(code: error.code.httpStatus)
        var details: [(String, String)] = []
        if let bucket = error.bucket { details.append(("BucketName", bucket)) }
        if let key = error.key { details.append(("Key", key)) }
        if let uploadID = error.uploadId { details.append(("UploadId", uploadID)) }
        let message = status.code == 500 ? "We encountered an internal error. Please try again." : error.message
        self.init(error.code.rawValue, status, message, details: details)
    }

    /// Maps notification configuration errors and the full-queue refusal (503 SlowDown with Retry-After).
    init(_ error: NotificationError) {
        self.init(
            error.code, .init(code: error.status), error.message,
            headers: error.status == 503 ? [.retryAfter: "1"] : [:])
    }

    /// Maps authentication failures.
    init(_ error: SigV4Error) {
        self.init(error.code.rawValue, .init(code: error.httpStatus), error.message)
    }
}
