import Crypto
import Foundation
import WireFormat

public struct Credentials: Sendable, Hashable {
    public var accessKeyId: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// The value of `x-amz-content-sha256`.
public enum PayloadSignature: Sendable, Hashable {
    /// Precomputed lowercase hex SHA-256 of the body.
    case sha256Hex(String)
    /// "UNSIGNED-PAYLOAD"
    case unsignedPayload
    /// "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    case streamingSigned
    /// "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    case streamingUnsignedTrailer
    /// "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
    case streamingSignedTrailer

    public static let unsignedPayloadValue = "UNSIGNED-PAYLOAD"
    public static let streamingSignedValue = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    public static let streamingUnsignedTrailerValue = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    public static let streamingSignedTrailerValue = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"

    public var headerValue: String {
        switch self {
        case .sha256Hex(let h): return h.asciiLowercased
        case .unsignedPayload: return Self.unsignedPayloadValue
        case .streamingSigned: return Self.streamingSignedValue
        case .streamingUnsignedTrailer: return Self.streamingUnsignedTrailerValue
        case .streamingSignedTrailer: return Self.streamingSignedTrailerValue
        }
    }

    /// `.sha256Hex` of `bytes`.
    public static func sha256(_ bytes: some Sequence<UInt8>) -> PayloadSignature {
        .sha256Hex(Hex.encode(Checksums.sha256(bytes)))
    }

    /// SHA-256 of the empty string, hex.
    public static let emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
}

/// A request to sign. `path` is the URI path exactly as it will be sent (already percent-encoded with
/// `S3URIEncoding.encodePath`); `query` items are decoded names/values; headers must include "host".
public struct SigningRequest: Sendable {
    public var method: String
    public var path: String
    public var query: [(name: String, value: String)]
    public var headers: [(name: String, value: String)]

    public init(
        method: String, path: String, query: [(name: String, value: String)] = [],
        headers: [(name: String, value: String)]
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
    }
}

// MARK: - Shared SigV4 primitives

enum SigV4Core {
    static let algorithm = "AWS4-HMAC-SHA256"

    static func hmac(_ key: [UInt8], _ message: String) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: key)))
    }

    static func signingKey(secret: String, date: String, region: String, service: String) -> [UInt8] {
        let kDate = hmac(Array(("AWS4" + secret).utf8), date)
        let kRegion = hmac(kDate, region)
        let kService = hmac(kRegion, service)
        return hmac(kService, "aws4_request")
    }

    static func sha256Hex(_ s: String) -> String { Hex.encode(SHA256.hash(data: Array(s.utf8))) }

    static func scope(date: String, region: String, service: String) -> String {
        "\(date)/\(region)/\(service)/aws4_request"
    }

    /// "name:value\n" for each signed header (values trimmed, whitespace runs collapsed, duplicates joined by ',').
    static func canonicalHeaders(_ index: HeaderIndex, signed: [String]) -> String {
        var out = ""
        for name in signed {
            out += name
            out += ":"
            out += index.all(name).map(\.sigV4HeaderValue).joined(separator: ",")
            out += "\n"
        }
        return out
    }

    static func canonicalRequest(
        method: String, canonicalURI: String, canonicalQuery: String, canonicalHeaders: String,
        signedHeaders: String, payloadHash: String
    ) -> String {
        "\(method)\n\(canonicalURI)\n\(canonicalQuery)\n\(canonicalHeaders)\n\(signedHeaders)\n\(payloadHash)"
    }

    static func stringToSign(datetime: String, scope: String, canonicalRequest: String) -> String {
        "\(algorithm)\n\(datetime)\n\(scope)\n\(sha256Hex(canonicalRequest))"
    }

    static func chunkStringToSign(datetime: String, scope: String, previous: String, chunkHashHex: String) -> String {
        "AWS4-HMAC-SHA256-PAYLOAD\n\(datetime)\n\(scope)\n\(previous)\n\(PayloadSignature.emptySHA256)\n\(chunkHashHex)"
    }

    static func trailerStringToSign(datetime: String, scope: String, previous: String, trailerHashHex: String)
        -> String
    {
        "AWS4-HMAC-SHA256-TRAILER\n\(datetime)\n\(scope)\n\(previous)\n\(trailerHashHex)"
    }
}

// MARK: - Signer

public struct SigV4Signer: Sendable {
    public var credentials: Credentials
    public var region: String
    public var service: String
    /// Derived keys (four HMACs each) per day and scope, shared by copies of this signer: presigning an HLS
    /// playlist signs every segment URL with the same key.
    private let signingKeys = SigningKeyCache()

    public init(credentials: Credentials, region: String, service: String = "s3") {
        self.credentials = credentials
        self.region = region
        self.service = service
    }

    /// Returns the headers to add to the request: authorization, x-amz-date, x-amz-content-sha256, and
    /// x-amz-security-token when there is a session token. Signs every header given (lowercased, trimmed, sorted).
    public func signedHeaders(for request: SigningRequest, payload: PayloadSignature, date: Date)
        -> [(name: String, value: String)]
    {
        sign(request, payload: payload, date: date).headers
    }

    /// Like `signedHeaders(for:payload:date:)`, also returning the bare signature (the seed for aws-chunked
    /// signed streaming, see `chunkSigner(seedSignature:date:)`).
    public func sign(_ request: SigningRequest, payload: PayloadSignature, date: Date)
        -> (headers: [(name: String, value: String)], signature: String)
    {
        let datetime = AMZDate.iso8601Basic(date)
        let day = String(datetime.prefix(8))
        let scope = SigV4Core.scope(date: day, region: region, service: service)
        var added: [(name: String, value: String)] = [
            ("x-amz-date", datetime),
            ("x-amz-content-sha256", payload.headerValue),
        ]
        if let token = credentials.sessionToken { added.append(("x-amz-security-token", token)) }
        let replaced = Set(added.map(\.name) + ["authorization"])
        let all = request.headers.filter { !replaced.contains($0.name.httpTrimmed.asciiLowercased) } + added
        let index = HeaderIndex(all)
        let signed = index.values.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let signedList = signed.joined(separator: ";")
        let canonical = SigV4Core.canonicalRequest(
            method: request.method.uppercased(),
            canonicalURI: S3URIEncoding.canonicalURI(rawPath: request.path) ?? request.path,
            canonicalQuery: S3URIEncoding.canonicalQuery(request.query),
            canonicalHeaders: SigV4Core.canonicalHeaders(index, signed: signed),
            signedHeaders: signedList,
            payloadHash: payload.headerValue)
        let sts = SigV4Core.stringToSign(datetime: datetime, scope: scope, canonicalRequest: canonical)
        let key = signingKeys.key(
            secret: credentials.secretAccessKey, date: day, region: region, service: service)
        let signature = Hex.encode(SigV4Core.hmac(key, sts))
        let authorization =
            "\(SigV4Core.algorithm) Credential=\(credentials.accessKeyId)/\(scope), SignedHeaders=\(signedList), Signature=\(signature)"
        return ([("authorization", authorization)] + added, signature)
    }

    /// Query-string (presigned) auth. `expires` in 1...604800 seconds, otherwise throws
    /// `authorizationQueryParametersError`. Returns the full query items to put on the URL: the request's own
    /// items + X-Amz-Algorithm, X-Amz-Credential, X-Amz-Date, X-Amz-Expires, X-Amz-SignedHeaders,
    /// [X-Amz-Security-Token], X-Amz-Signature. Render them with `encodeQuery`. Payload is UNSIGNED-PAYLOAD.
    public func presignedQuery(for request: SigningRequest, expires: Int, date: Date) throws(SigV4Error)
        -> [(name: String, value: String)]
    {
        guard (1...604_800).contains(expires) else {
            throw SigV4Error(
                .authorizationQueryParametersError,
                "X-Amz-Expires must be between 1 and 604800 seconds (one week); got \(expires)")
        }
        let datetime = AMZDate.iso8601Basic(date)
        let day = String(datetime.prefix(8))
        let scope = SigV4Core.scope(date: day, region: region, service: service)
        let index = HeaderIndex(request.headers.filter { $0.name.httpTrimmed.asciiLowercased != "authorization" })
        let signed = index.values.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        let signedList = signed.joined(separator: ";")
        var items = request.query
        items.append(("X-Amz-Algorithm", SigV4Core.algorithm))
        items.append(("X-Amz-Credential", "\(credentials.accessKeyId)/\(scope)"))
        items.append(("X-Amz-Date", datetime))
        items.append(("X-Amz-Expires", String(expires)))
        items.append(("X-Amz-SignedHeaders", signedList))
        if let token = credentials.sessionToken { items.append(("X-Amz-Security-Token", token)) }
        let canonical = SigV4Core.canonicalRequest(
            method: request.method.uppercased(),
            canonicalURI: S3URIEncoding.canonicalURI(rawPath: request.path) ?? request.path,
            canonicalQuery: S3URIEncoding.canonicalQuery(items),
            canonicalHeaders: SigV4Core.canonicalHeaders(index, signed: signed),
            signedHeaders: signedList,
            payloadHash: PayloadSignature.unsignedPayloadValue)
        let sts = SigV4Core.stringToSign(datetime: datetime, scope: scope, canonicalRequest: canonical)
        let key = signingKeys.key(
            secret: credentials.secretAccessKey, date: day, region: region, service: service)
        items.append(("X-Amz-Signature", Hex.encode(SigV4Core.hmac(key, sts))))
        return items
    }

    /// `name=value` pairs, S3URIEncoding-encoded (slash encoded too), joined by '&', in the order given.
    public static func encodeQuery(_ items: [(name: String, value: String)]) -> String {
        items.map {
            S3URIEncoding.encode($0.name, encodeSlash: true) + "=" + S3URIEncoding.encode($0.value, encodeSlash: true)
        }
        .joined(separator: "&")
    }

    /// For clients that stream aws-chunked signed payloads: a chunk signer seeded with the request signature
    /// (the `signature` returned by `sign(_:payload:date:)`). `date` must be the request's signing date.
    public func chunkSigner(seedSignature: String, date: Date) -> ChunkSigner {
        let datetime = AMZDate.iso8601Basic(date)
        let day = String(datetime.prefix(8))
        return ChunkSigner(
            key: signingKeys.key(secret: credentials.secretAccessKey, date: day, region: region, service: service),
            datetime: datetime,
            scope: SigV4Core.scope(date: day, region: region, service: service),
            previousSignature: seedSignature)
    }
}

/// Signs the chunks of an aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]), chaining each
/// signature from the previous one. Finish with an empty chunk (and, for the trailer variant, `frameTrailer`).
public struct ChunkSigner: Sendable {
    let key: [UInt8]
    let datetime: String
    let scope: String
    public private(set) var previousSignature: String

    /// The chunk signature of `chunk` (advances the chain).
    public mutating func sign(chunk: some Collection<UInt8>) -> String {
        var hasher = SHA256()
        if chunk.withContiguousStorageIfAvailable({ hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }) == nil {
            hasher.update(data: Array(chunk))
        }
        let sts = SigV4Core.chunkStringToSign(
            datetime: datetime, scope: scope, previous: previousSignature,
            chunkHashHex: Hex.encode(hasher.finalize()))
        previousSignature = Hex.encode(SigV4Core.hmac(key, sts))
        return previousSignature
    }

    /// Frames a chunk: "<hex len>;chunk-signature=<sig>\r\n<data>\r\n". Frame an empty chunk last.
    public mutating func frame(chunk: some Collection<UInt8>) -> [UInt8] {
        let signature = sign(chunk: chunk)
        var out = Array("\(String(chunk.count, radix: 16));chunk-signature=\(signature)\r\n".utf8)
        out.reserveCapacity(out.count + chunk.count + 2)
        out.append(contentsOf: chunk)
        out.append(contentsOf: [0x0D, 0x0A])
        return out
    }

    /// The final empty chunk when a signed trailer follows: "0;chunk-signature=<sig>\r\n" (no blank line;
    /// follow it with `frameTrailer`). Without a trailer, use `frame(chunk: [])` instead.
    public mutating func frameFinalChunkBeforeTrailer() -> [UInt8] {
        let signature = sign(chunk: [UInt8]())
        return Array("0;chunk-signature=\(signature)\r\n".utf8)
    }

    /// The trailer signature over "name:value\n" lines (advances the chain).
    public mutating func signTrailer(_ trailers: [(name: String, value: String)]) -> String {
        let text = trailers.map { "\($0.name.asciiLowercased):\($0.value)\n" }.joined()
        let sts = SigV4Core.trailerStringToSign(
            datetime: datetime, scope: scope, previous: previousSignature,
            trailerHashHex: SigV4Core.sha256Hex(text))
        previousSignature = Hex.encode(SigV4Core.hmac(key, sts))
        return previousSignature
    }

    /// Frames the trailer section sent after the final (empty) chunk:
    /// "name:value\r\n"... "x-amz-trailer-signature:<sig>\r\n\r\n".
    public mutating func frameTrailer(_ trailers: [(name: String, value: String)]) -> [UInt8] {
        let signature = signTrailer(trailers)
        var text = trailers.map { "\($0.name.asciiLowercased):\($0.value)\r\n" }.joined()
        text += "x-amz-trailer-signature:\(signature)\r\n\r\n"
        return Array(text.utf8)
    }
}

/// Framing helpers for unsigned aws-chunked bodies (STREAMING-UNSIGNED-PAYLOAD-TRAILER).
public enum AWSChunkedEncoding {
    /// "<hex len>\r\n<data>\r\n"; do not use for the final empty chunk (see `unsignedEnd`).
    public static func frameUnsigned(chunk: some Collection<UInt8>) -> [UInt8] {
        var out = Array("\(String(chunk.count, radix: 16))\r\n".utf8)
        out.reserveCapacity(out.count + chunk.count + 2)
        out.append(contentsOf: chunk)
        out.append(contentsOf: [0x0D, 0x0A])
        return out
    }

    /// The final chunk and trailer section: "0\r\nname:value\r\n...\r\n".
    public static func unsignedEnd(trailers: [(name: String, value: String)]) -> [UInt8] {
        Array(("0\r\n" + trailers.map { "\($0.name.asciiLowercased):\($0.value)\r\n" }.joined() + "\r\n").utf8)
    }
}
