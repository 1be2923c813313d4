/// An authentication or payload-integrity failure, named after the S3 error code it maps to.
public struct SigV4Error: Error, Sendable, CustomStringConvertible {
    /// An S3 error code ("SignatureDoesNotMatch", "AccessDenied", ...).
    public struct Code: Hashable, Sendable, RawRepresentable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public static let signatureDoesNotMatch = Code(rawValue: "SignatureDoesNotMatch")
        /// Also used for expired / not yet valid presigned URLs and anonymous requests.
        public static let accessDenied = Code(rawValue: "AccessDenied")
        public static let invalidAccessKeyId = Code(rawValue: "InvalidAccessKeyId")
        public static let authorizationHeaderMalformed = Code(rawValue: "AuthorizationHeaderMalformed")
        public static let authorizationQueryParametersError = Code(rawValue: "AuthorizationQueryParametersError")
        public static let requestTimeTooSkewed = Code(rawValue: "RequestTimeTooSkewed")
        public static let xAmzContentSHA256Mismatch = Code(rawValue: "XAmzContentSHA256Mismatch")
        /// A checksum (Content-MD5 or x-amz-checksum-*) did not match the received data.
        public static let badDigest = Code(rawValue: "BadDigest")
        /// Content-MD5 is not a base64 encoded 128-bit value.
        public static let invalidDigest = Code(rawValue: "InvalidDigest")
        public static let incompleteBody = Code(rawValue: "IncompleteBody")
        public static let invalidRequest = Code(rawValue: "InvalidRequest")
        public static let invalidArgument = Code(rawValue: "InvalidArgument")
        public static let missingSecurityHeader = Code(rawValue: "MissingSecurityHeader")
        public static let notImplemented = Code(rawValue: "NotImplemented")
        public static let invalidURI = Code(rawValue: "InvalidURI")
    }

    public let code: Code
    public let message: String
    /// For `signatureDoesNotMatch`: the string to sign the server computed (S3 returns it in the error body).
    public var stringToSign: String?
    /// For SigV4 `signatureDoesNotMatch`: the canonical request the server computed.
    public var canonicalRequest: String?

    public init(_ code: Code, _ message: String, stringToSign: String? = nil, canonicalRequest: String? = nil) {
        self.code = code
        self.message = message
        self.stringToSign = stringToSign
        self.canonicalRequest = canonicalRequest
    }

    /// The HTTP status S3 answers with for this code.
    public var httpStatus: Int {
        switch code {
        case .signatureDoesNotMatch, .accessDenied, .invalidAccessKeyId, .requestTimeTooSkewed:
            return 403
        case .notImplemented:
            return 501
        default:
            return 400
        }
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

extension SigV4Error {
    static func signatureMismatch(stringToSign: String? = nil, canonicalRequest: String? = nil) -> SigV4Error {
        SigV4Error(
            .signatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            stringToSign: stringToSign, canonicalRequest: canonicalRequest)
    }
    static let anonymous = SigV4Error(.accessDenied, "Anonymous access is not allowed")
    static let expired = SigV4Error(.accessDenied, "Request has expired")
    static let notYetValid = SigV4Error(.accessDenied, "Request is not valid yet")
    static let skewed = SigV4Error(
        .requestTimeTooSkewed, "The difference between the request time and the current time is too large.")
    static let missingDate = SigV4Error(.accessDenied, "AWS authentication requires a valid Date or x-amz-date header")
    static let unknownKey = SigV4Error(
        .invalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records.")
    static let truncated = SigV4Error(.incompleteBody, "The request body terminated unexpectedly")
}
