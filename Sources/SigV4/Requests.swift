import Foundation

/// What the server received, unparsed.
public struct IncomingRequest: Sendable {
    public var method: String
    /// As received on the wire, percent-encoded, no query.
    public var rawPath: String
    /// As received, without '?'.
    public var rawQuery: String?
    /// As received (any case; duplicates possible).
    public var headers: [(name: String, value: String)]
    /// For SigV2 only: the bucket when it was addressed through the Host header (virtual-hosted style);
    /// SigV2's canonical resource then starts with "/bucket". SigV4 does not need it.
    public var virtualHostedBucket: String?

    public init(
        method: String, rawPath: String, rawQuery: String? = nil, headers: [(name: String, value: String)],
        virtualHostedBucket: String? = nil
    ) {
        self.method = method
        self.rawPath = rawPath
        self.rawQuery = rawQuery
        self.headers = headers
        self.virtualHostedBucket = virtualHostedBucket
    }

    /// Splits an HTTP request target ("/bucket/key?acl") into path and query.
    public init(method: String, target: String, headers: [(name: String, value: String)]) {
        if let q = target.firstIndex(of: "?") {
            self.init(
                method: method, rawPath: String(target[..<q]), rawQuery: String(target[target.index(after: q)...]),
                headers: headers)
        } else {
            self.init(method: method, rawPath: target, rawQuery: nil, headers: headers)
        }
    }
}

public enum AuthScheme: Sendable, Hashable {
    case sigV4Header, sigV4Query, sigV2Header, sigV2Query
}

public struct VerifiedRequest: Sendable {
    public var accessKeyId: String
    public var scheme: AuthScheme
    public var payload: PayloadExpectation
    /// x-amz-security-token / X-Amz-Security-Token as sent (not validated here).
    public var sessionToken: String?

    public init(accessKeyId: String, scheme: AuthScheme, payload: PayloadExpectation, sessionToken: String? = nil) {
        self.accessKeyId = accessKeyId
        self.scheme = scheme
        self.payload = payload
        self.sessionToken = sessionToken
    }
}

/// What the body must satisfy; check it while streaming the body with `PayloadDecoder`.
public enum PayloadExpectation: Sendable {
    /// Hash the body, compare at end -> XAmzContentSHA256Mismatch.
    case sha256(hex: String)
    /// UNSIGNED-PAYLOAD, presigned, SigV2.
    case unsigned
    /// Decode aws-chunked framing.
    case awsChunked(AWSChunkedContext)
}

/// The signing context an aws-chunked body is verified against.
public struct AWSChunkedContext: Sendable {
    public enum Mode: Sendable, Hashable {
        /// STREAMING-AWS4-HMAC-SHA256-PAYLOAD
        case signed
        /// STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER
        case signedWithTrailer
        /// STREAMING-UNSIGNED-PAYLOAD-TRAILER
        case unsignedWithTrailer

        public var isSigned: Bool { self != .unsignedWithTrailer }
        public var hasTrailer: Bool { self != .signed }
    }

    public var mode: Mode
    /// The request (seed) signature the chunk signatures chain from.
    public var seedSignature: String
    /// The request's x-amz-date ("yyyyMMdd'T'HHmmss'Z'").
    public var datetime: String
    /// "yyyyMMdd/region/service/aws4_request"
    public var scope: String
    let signingKey: [UInt8]

    init(mode: Mode, seedSignature: String, datetime: String, scope: String, signingKey: [UInt8]) {
        self.mode = mode
        self.seedSignature = seedSignature
        self.datetime = datetime
        self.scope = scope
        self.signingKey = signingKey
    }

    /// A context for a client-built body (tests, proxies): derives the signing key from the secret.
    public init(
        mode: Mode, seedSignature: String, date: Date, region: String, service: String = "s3", secretAccessKey: String
    ) {
        let datetime = AMZDate.iso8601Basic(date)
        let day = String(datetime.prefix(8))
        self.init(
            mode: mode, seedSignature: seedSignature, datetime: datetime,
            scope: SigV4Core.scope(date: day, region: region, service: service),
            signingKey: SigV4Core.signingKey(secret: secretAccessKey, date: day, region: region, service: service))
    }
}
