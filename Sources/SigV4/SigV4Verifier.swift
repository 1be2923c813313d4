import Crypto
import Foundation
import Synchronization
import WireFormat

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

public struct SigV4Verifier: Sendable {
    public let region: String
    public let service: String
    public let allowedClockSkew: TimeInterval
    private let secretKey: @Sendable (String) -> String?
    /// Derived signing keys: four HMACs per request saved; a key changes once a day per credential scope.
    private let signingKeys = SigningKeyCache()

    /// `secretKey` returns the secret for an access key id, nil if unknown (-> InvalidAccessKeyId).
    public init(
        region: String, service: String = "s3", allowedClockSkew: TimeInterval = 900,
        secretKey: @escaping @Sendable (String) -> String?
    ) {
        self.region = region
        self.service = service
        self.allowedClockSkew = allowedClockSkew
        self.secretKey = secretKey
    }

    private static let v4QueryMarkers: Set<String> = ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature"]

    /// True when the request carries no authentication at all (no Authorization header, no SigV4 or SigV2
    /// query parameters).
    public static func isAnonymous(_ request: IncomingRequest) -> Bool {
        let headers = HeaderIndex(request.headers)
        if headers.contains("authorization") { return false }
        let query = S3URIEncoding.decodeQuery(request.rawQuery ?? "")
        return !query.contains {
            v4QueryMarkers.contains($0.name) || $0.name == "AWSAccessKeyId" || $0.name == "Signature"
        }
    }

    /// Verifies header SigV4 (Authorization: AWS4-HMAC-SHA256 ...), query SigV4 (X-Amz-Algorithm...), header
    /// SigV2 (Authorization: AWS AK:sig) and query SigV2 (AWSAccessKeyId/Signature/Expires).
    /// Requests with no auth at all throw `accessDenied` "Anonymous access is not allowed".
    public func verify(_ request: IncomingRequest, now: Date) throws(SigV4Error) -> VerifiedRequest {
        let headers = HeaderIndex(request.headers)
        let query = S3URIEncoding.decodeQuery(request.rawQuery ?? "")
        let hasV4Query = query.contains { Self.v4QueryMarkers.contains($0.name) }
        let hasV2Query = query.contains { $0.name == "AWSAccessKeyId" || $0.name == "Signature" }
        if let auth = headers.first("authorization") {
            if hasV4Query || hasV2Query {
                throw SigV4Error(
                    .invalidArgument,
                    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified"
                )
            }
            if auth.hasPrefix(SigV4Core.algorithm + " ") || auth == SigV4Core.algorithm {
                return try verifyV4Header(request, headers: headers, query: query, authorization: auth, now: now)
            }
            if auth.hasPrefix("AWS4-ECDSA-P256-SHA256") {
                throw SigV4Error(.notImplemented, "Signature Version 4A (AWS4-ECDSA-P256-SHA256) is not supported")
            }
            if auth.hasPrefix("AWS ") {
                return try verifyV2Header(request, headers: headers, authorization: auth, now: now)
            }
            throw SigV4Error(.invalidArgument, "Unsupported Authorization Type")
        }
        if hasV4Query {
            if hasV2Query && query.contains(where: { $0.name == "AWSAccessKeyId" }) {
                throw SigV4Error(.invalidArgument, "Only one auth mechanism allowed")
            }
            return try verifyV4Query(request, headers: headers, query: query, now: now)
        }
        if hasV2Query {
            return try verifyV2Query(request, headers: headers, query: query, now: now)
        }
        throw SigV4Error.anonymous
    }

    // MARK: SigV4 common

    private struct CredentialScope {
        var accessKeyId: String
        var date: String
        var region: String
        var service: String
        var scope: String { SigV4Core.scope(date: date, region: region, service: service) }
    }

    private func parseCredential(_ credential: String, code: SigV4Error.Code) throws(SigV4Error) -> CredentialScope {
        // "<AKID>/YYYYMMDD/REGION/SERVICE/aws4_request"; the access key id may itself hold '/', so the scope is
        // the last four fields.
        let malformed = SigV4Error(
            code,
            "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\"."
        )
        let u = credential.utf8
        var slashes: [String.Index] = []
        var i = u.endIndex
        while i > u.startIndex && slashes.count < 4 {
            u.formIndex(before: &i)
            if u[i] == UInt8(ascii: "/") { slashes.append(i) }
        }
        guard slashes.count == 4 else { throw malformed }
        // slashes[3] < slashes[2] < slashes[1] < slashes[0]
        func field(_ from: String.Index, _ to: String.Index) -> String { String(credential[u.index(after: from)..<to]) }
        let terminal = String(credential[u.index(after: slashes[0])...])
        let cred = CredentialScope(
            accessKeyId: String(credential[..<slashes[3]]), date: field(slashes[3], slashes[2]),
            region: field(slashes[2], slashes[1]), service: field(slashes[1], slashes[0]))
        guard !cred.date.isEmpty, !cred.region.isEmpty, !cred.service.isEmpty, !terminal.isEmpty else {
            throw malformed
        }
        guard !cred.accessKeyId.isEmpty else {
            throw SigV4Error(code, "The Credential is mal-formed; the access key id is empty.")
        }
        guard terminal == "aws4_request" else {
            throw SigV4Error(
                code,
                "The Credential is mal-formed; incorrect terminal \"\(terminal)\". This endpoint uses \"aws4_request\"."
            )
        }
        guard cred.date.utf8.count == 8, cred.date.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
            throw SigV4Error(
                code,
                "The Credential is mal-formed; invalid date \"\(cred.date)\". This date is not in the format \"yyyyMMdd\"."
            )
        }
        guard cred.region == region else {
            throw SigV4Error(
                code,
                "The authorization header is malformed; the region '\(cred.region)' is wrong; expecting '\(region)'")
        }
        guard cred.service == service else {
            throw SigV4Error(
                code,
                "The Credential is mal-formed; incorrect service \"\(cred.service)\". This endpoint belongs to \"\(service)\"."
            )
        }
        return cred
    }

    private func secret(for accessKeyId: String) throws(SigV4Error) -> String {
        guard let s = secretKey(accessKeyId) else { throw SigV4Error.unknownKey }
        return s
    }

    private func classify(
        payloadHash: String, signature: String, datetime: String, cred: CredentialScope, key: [UInt8]
    ) throws(SigV4Error) -> PayloadExpectation {
        func chunked(_ mode: AWSChunkedContext.Mode) -> PayloadExpectation {
            .awsChunked(
                AWSChunkedContext(
                    mode: mode, seedSignature: signature, datetime: datetime, scope: cred.scope, signingKey: key))
        }
        switch payloadHash {
        case PayloadSignature.unsignedPayloadValue: return .unsigned
        case PayloadSignature.streamingSignedValue: return chunked(.signed)
        case PayloadSignature.streamingSignedTrailerValue: return chunked(.signedWithTrailer)
        case PayloadSignature.streamingUnsignedTrailerValue: return chunked(.unsignedWithTrailer)
        case "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER":
            throw SigV4Error(.notImplemented, "Signature Version 4A streaming payloads are not supported")
        default:
            guard Hex.isSHA256Hex(payloadHash) else {
                throw SigV4Error(
                    .invalidArgument,
                    "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a valid sha256 value."
                )
            }
            return .sha256(hex: payloadHash.asciiLowercased)
        }
    }

    private func checkSignature(
        request: IncomingRequest, headers: HeaderIndex, canonicalQuery: String, signedHeaders: [String],
        payloadHash: String, datetime: String, cred: CredentialScope, key: [UInt8], provided: String
    ) throws(SigV4Error) -> String {
        guard let uri = S3URIEncoding.canonicalURI(rawPath: request.rawPath) else {
            throw SigV4Error(.invalidURI, "Couldn't parse the specified URI.")
        }
        let canonical = SigV4Core.canonicalRequest(
            method: request.method.uppercased(), canonicalURI: uri, canonicalQuery: canonicalQuery,
            canonicalHeaders: SigV4Core.canonicalHeaders(headers, signed: signedHeaders),
            signedHeaders: signedHeaders.joined(separator: ";"), payloadHash: payloadHash)
        let sts = SigV4Core.stringToSign(datetime: datetime, scope: cred.scope, canonicalRequest: canonical)
        let expected = Hex.encode(SigV4Core.hmac(key, sts))
        guard ConstantTime.equal(expected, provided.asciiLowercased) else {
            throw SigV4Error.signatureMismatch(stringToSign: sts, canonicalRequest: canonical)
        }
        return expected
    }

    private static func parseSignedHeaders(_ s: String) -> [String] {
        var names: [String] = []
        var start = s.utf8.startIndex
        let end = s.utf8.endIndex
        while start <= end {
            let stop = s.utf8[start...].firstIndex(of: UInt8(ascii: ";")) ?? end
            let name = String(s[start..<stop]).httpTrimmed.asciiLowercased
            if !name.isEmpty { names.append(name) }
            guard stop < end else { break }
            start = s.utf8.index(after: stop)
        }
        return names
    }

    /// "Credential=…, SignedHeaders=…, Signature=…" (any order, whitespace around the parts; the last of a
    /// repeated name wins; unknown names ignored).
    static func authorizationFields(_ u: Substring.UTF8View) -> (
        credential: String?, signedHeaders: String?, signature: String?
    ) {
        var result: (credential: String?, signedHeaders: String?, signature: String?) = (nil, nil, nil)
        var start = u.startIndex
        while start < u.endIndex {
            let stop = u[start...].firstIndex(of: UInt8(ascii: ",")) ?? u.endIndex
            var lo = start
            var hi = stop
            while lo < hi && u[lo].isHTTPWhitespace { u.formIndex(after: &lo) }
            while hi > lo && u[u.index(before: hi)].isHTTPWhitespace { u.formIndex(before: &hi) }
            if let eq = u[lo..<hi].firstIndex(of: UInt8(ascii: "=")) {
                var nameEnd = eq
                while nameEnd > lo && u[u.index(before: nameEnd)].isHTTPWhitespace { u.formIndex(before: &nameEnd) }
                var valueStart = u.index(after: eq)
                while valueStart < hi && u[valueStart].isHTTPWhitespace { u.formIndex(after: &valueStart) }
                let name = u[lo..<nameEnd]
                let value = String(Substring(u[valueStart..<hi]))
                if name.elementsEqual("Credential".utf8) {
                    result.credential = value
                } else if name.elementsEqual("SignedHeaders".utf8) {
                    result.signedHeaders = value
                } else if name.elementsEqual("Signature".utf8) {
                    result.signature = value
                }
            }
            guard stop < u.endIndex else { break }
            start = u.index(after: stop)
        }
        return result
    }

    // MARK: SigV4 header

    private func verifyV4Header(
        _ request: IncomingRequest, headers: HeaderIndex, query: [(name: String, value: String)],
        authorization: String, now: Date
    ) throws(SigV4Error) -> VerifiedRequest {
        let malformed = SigV4Error.Code.authorizationHeaderMalformed
        let fields = Self.authorizationFields(authorization.utf8.dropFirst(SigV4Core.algorithm.utf8.count))
        guard let credential = fields.credential, let signedList = fields.signedHeaders,
            let provided = fields.signature
        else {
            throw SigV4Error(
                malformed,
                "The authorization header is malformed; it must contain Credential, SignedHeaders and Signature.")
        }
        let cred = try parseCredential(credential, code: malformed)
        let signedHeaders = Self.parseSignedHeaders(signedList)
        guard signedHeaders.contains("host") else {
            throw SigV4Error(malformed, "The authorization header is malformed; SignedHeaders must include host.")
        }
        let secret = try secret(for: cred.accessKeyId)

        let datetime: String
        let requestDate: Date
        if let x = headers.first("x-amz-date") {
            guard let d = AMZDate.parseISO8601Basic(x) else { throw SigV4Error.missingDate }
            datetime = x
            requestDate = d
        } else if let h = headers.first("date"), let d = AMZDate.parseHTTPDate(h) {
            datetime = AMZDate.iso8601Basic(d)
            requestDate = d
        } else {
            throw SigV4Error.missingDate
        }
        guard datetime.prefix(8) == cred.date else {
            throw SigV4Error(
                malformed,
                "The authorization header is malformed; Invalid credential date \"\(cred.date)\". This date is not the same as X-Amz-Date: \"\(datetime.prefix(8))\"."
            )
        }
        guard abs(requestDate.timeIntervalSince(now)) <= allowedClockSkew else { throw SigV4Error.skewed }

        guard let payloadHash = headers.first("x-amz-content-sha256") else {
            throw SigV4Error(.invalidRequest, "Missing required header for this request: x-amz-content-sha256")
        }
        let key = signingKeys.key(secret: secret, date: cred.date, region: cred.region, service: cred.service)
        // Classify first so a malformed x-amz-content-sha256 reports InvalidArgument.
        _ = try classify(payloadHash: payloadHash, signature: "", datetime: datetime, cred: cred, key: key)
        let signature = try checkSignature(
            request: request, headers: headers, canonicalQuery: S3URIEncoding.canonicalQuery(query),
            signedHeaders: signedHeaders, payloadHash: payloadHash, datetime: datetime, cred: cred, key: key,
            provided: provided)
        return VerifiedRequest(
            accessKeyId: cred.accessKeyId, scheme: .sigV4Header,
            payload: try classify(
                payloadHash: payloadHash, signature: signature, datetime: datetime, cred: cred, key: key),
            sessionToken: headers.first("x-amz-security-token"))
    }

    // MARK: SigV4 query

    private func verifyV4Query(
        _ request: IncomingRequest, headers: HeaderIndex, query: [(name: String, value: String)], now: Date
    ) throws(SigV4Error) -> VerifiedRequest {
        let code = SigV4Error.Code.authorizationQueryParametersError
        func param(_ name: String) -> String? { query.first { $0.name == name }?.value }
        guard let algorithm = param("X-Amz-Algorithm"), let credential = param("X-Amz-Credential"),
            let signature = param("X-Amz-Signature"), let datetime = param("X-Amz-Date"),
            let signedList = param("X-Amz-SignedHeaders"), let expiresRaw = param("X-Amz-Expires")
        else {
            throw SigV4Error(
                code,
                "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters."
            )
        }
        guard algorithm == SigV4Core.algorithm else {
            if algorithm == "AWS4-ECDSA-P256-SHA256" {
                throw SigV4Error(.notImplemented, "Signature Version 4A (AWS4-ECDSA-P256-SHA256) is not supported")
            }
            throw SigV4Error(code, "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
        }
        guard let requestDate = AMZDate.parseISO8601Basic(datetime) else {
            throw SigV4Error(code, "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
        }
        guard let expires = Int(expiresRaw) else {
            throw SigV4Error(code, "X-Amz-Expires should be a number")
        }
        guard expires >= 1 else { throw SigV4Error(code, "X-Amz-Expires must be non-negative and non-zero") }
        guard expires <= 604_800 else {
            throw SigV4Error(code, "X-Amz-Expires must be less than a week (in seconds) that is 604800")
        }
        let cred = try parseCredential(credential, code: code)
        guard datetime.prefix(8) == cred.date else {
            throw SigV4Error(
                code,
                "Invalid credential date \"\(cred.date)\". This date is not the same as X-Amz-Date: \"\(datetime.prefix(8))\"."
            )
        }
        let signedHeaders = Self.parseSignedHeaders(signedList)
        guard signedHeaders.contains("host") else {
            throw SigV4Error(code, "X-Amz-SignedHeaders must include host")
        }
        let secret = try secret(for: cred.accessKeyId)
        if requestDate.timeIntervalSince(now) > allowedClockSkew { throw SigV4Error.notYetValid }
        if now.timeIntervalSince(requestDate) > TimeInterval(expires) { throw SigV4Error.expired }

        let payloadHash = param("X-Amz-Content-Sha256") ?? PayloadSignature.unsignedPayloadValue
        let key = signingKeys.key(secret: secret, date: cred.date, region: cred.region, service: cred.service)
        _ = try classify(payloadHash: payloadHash, signature: "", datetime: datetime, cred: cred, key: key)
        let computed = try checkSignature(
            request: request, headers: headers,
            canonicalQuery: S3URIEncoding.canonicalQuery(query.filter { $0.name != "X-Amz-Signature" }),
            signedHeaders: signedHeaders, payloadHash: payloadHash, datetime: datetime, cred: cred, key: key,
            provided: signature)
        return VerifiedRequest(
            accessKeyId: cred.accessKeyId, scheme: .sigV4Query,
            payload: try classify(
                payloadHash: payloadHash, signature: computed, datetime: datetime, cred: cred, key: key),
            sessionToken: param("X-Amz-Security-Token") ?? headers.first("x-amz-security-token"))
    }

    // MARK: SigV2

    /// Sub-resources botocore's HmacV1Auth includes in the canonical resource (the reference client).
    static let botocoreSubresources: Set<String> = [
        "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber", "policy",
        "requestPayment", "torrent", "versioning", "versionId", "versions", "website", "uploads", "uploadId",
        "response-content-type", "response-content-language", "response-expires", "response-cache-control",
        "response-content-disposition", "response-content-encoding", "delete", "lifecycle", "tagging", "restore",
        "storageClass", "notification", "replication", "analytics", "metrics", "inventory", "select",
        "select-type", "object-lock",
    ]
    /// A wider list (S3 documentation, MinIO), tried when the botocore list does not verify.
    static let extendedSubresources: Set<String> = botocoreSubresources.union([
        "encryption", "legal-hold", "retention", "intelligent-tiering", "ownershipControls", "publicAccessBlock",
        "policyStatus", "website", "attributes",
    ])

    /// Canonical resource: the path as received (with "/bucket" for virtual-hosted requests) plus the
    /// sub-resources of the query, sorted by name, values percent-decoded.
    static func v2Resource(_ request: IncomingRequest, subresources: Set<String>) -> String {
        var resource = ""
        if let bucket = request.virtualHostedBucket, !bucket.isEmpty { resource = "/" + bucket }
        resource += request.rawPath.isEmpty ? "/" : request.rawPath
        guard let raw = request.rawQuery, !raw.isEmpty else { return resource }
        var picked: [(name: String, item: String)] = []
        for part in raw.split(separator: "&", omittingEmptySubsequences: true) {
            if let eq = part.firstIndex(of: "=") {
                let name = String(part[..<eq])
                guard subresources.contains(name) else { continue }
                let rawValue = String(part[part.index(after: eq)...])
                picked.append((name, name + "=" + (S3URIEncoding.decode(rawValue) ?? rawValue)))
            } else {
                let name = String(part)
                guard subresources.contains(name) else { continue }
                picked.append((name, name))
            }
        }
        guard !picked.isEmpty else { return resource }
        // Stable sort by name (Python's sort, which botocore uses, is stable).
        let sorted = picked.enumerated().sorted { a, b in
            let an = Array(a.element.name.utf8)
            let bn = Array(b.element.name.utf8)
            return an == bn ? a.offset < b.offset : an.lexicographicallyPrecedes(bn)
        }
        return resource + "?" + sorted.map(\.element.item).joined(separator: "&")
    }

    private static func v2Resources(_ request: IncomingRequest) -> [String] {
        let a = v2Resource(request, subresources: botocoreSubresources)
        let b = v2Resource(request, subresources: extendedSubresources)
        var candidates = a == b ? [a] : [a, b]
        // botocore's HmacV1 signs a path-style bucket request (CreateBucket, ListObjects) over `/bucket/` while
        // it sends `/bucket`: the same resource, so both spellings are accepted.
        let path = request.rawPath
        if request.virtualHostedBucket == nil, path.count > 1, path.hasPrefix("/"), !path.dropFirst().contains("/") {
            let slashed = IncomingRequest(
                method: request.method, rawPath: path + "/", rawQuery: request.rawQuery, headers: request.headers,
                virtualHostedBucket: nil)
            candidates += [v2Resource(slashed, subresources: botocoreSubresources)]
        }
        return candidates
    }

    /// x-amz-* headers: lowercased, values trimmed, duplicates joined with ','.
    private static func amzHeaders(_ headers: HeaderIndex) -> [String: String] {
        var out: [String: String] = [:]
        for (name, values) in headers.values where name.hasPrefix("x-amz-") {
            out[name] = values.map(\.httpTrimmed).joined(separator: ",")
        }
        return out
    }

    private static func v2StringToSign(
        method: String, contentMD5: String, contentType: String, date: String, amz: [String: String],
        resource: String
    ) -> String {
        var s = "\(method)\n\(contentMD5)\n\(contentType)\n\(date)\n"
        for name in amz.keys.sorted(by: { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }) {
            s += "\(name):\(amz[name]!)\n"
        }
        return s + resource
    }

    private static func v2Sign(_ secret: String, _ stringToSign: String) -> String {
        let mac = HMAC<Insecure.SHA1>.authenticationCode(
            for: Array(stringToSign.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return Data(mac).base64EncodedString()
    }

    private func checkV2(secret: String, candidates: [String], provided: String) throws(SigV4Error) {
        // A '+' that arrived unencoded in a query string was form-decoded to ' '.
        let provided = provided.replacingOccurrences(of: " ", with: "+")
        var matched = false
        for sts in candidates where ConstantTime.equal(Self.v2Sign(secret, sts), provided) { matched = true }
        guard matched else { throw SigV4Error.signatureMismatch(stringToSign: candidates.first) }
    }

    private func verifyV2Header(
        _ request: IncomingRequest, headers: HeaderIndex, authorization: String, now: Date
    ) throws(SigV4Error) -> VerifiedRequest {
        let credentials = authorization.dropFirst("AWS ".count)
        guard let colon = credentials.lastIndex(of: ":"), colon != credentials.startIndex else {
            throw SigV4Error(
                .invalidArgument, "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature")
        }
        let accessKeyId = String(credentials[..<colon]).httpTrimmed
        let provided = String(credentials[credentials.index(after: colon)...]).httpTrimmed
        let secret = try secret(for: accessKeyId)

        let amzDate = headers.first("x-amz-date")
        guard let dateValue = amzDate ?? headers.first("date"), let requestDate = AMZDate.parseHTTPDate(dateValue)
        else { throw SigV4Error.missingDate }
        guard abs(requestDate.timeIntervalSince(now)) <= allowedClockSkew else { throw SigV4Error.skewed }

        let method = request.method.uppercased()
        let md5 = headers.first("content-md5") ?? ""
        let type = headers.first("content-type") ?? ""
        let amz = Self.amzHeaders(headers)
        var candidates: [String] = []
        for resource in Self.v2Resources(request) {
            candidates.append(
                Self.v2StringToSign(
                    method: method, contentMD5: md5, contentType: type,
                    date: amzDate == nil ? (headers.first("date") ?? "") : "",
                    amz: amz, resource: resource))
            if let amzDate {
                // The RESTAuthentication "Delete" example: x-amz-date's value in the Date position.
                var withoutDate = amz
                withoutDate["x-amz-date"] = nil
                candidates.append(
                    Self.v2StringToSign(
                        method: method, contentMD5: md5, contentType: type, date: amzDate, amz: withoutDate,
                        resource: resource))
            }
        }
        try checkV2(secret: secret, candidates: candidates, provided: provided)
        return VerifiedRequest(
            accessKeyId: accessKeyId, scheme: .sigV2Header, payload: .unsigned,
            sessionToken: headers.first("x-amz-security-token"))
    }

    private func verifyV2Query(
        _ request: IncomingRequest, headers: HeaderIndex, query: [(name: String, value: String)], now: Date
    ) throws(SigV4Error) -> VerifiedRequest {
        func param(_ name: String) -> String? { query.first { $0.name == name }?.value }
        guard let accessKeyId = param("AWSAccessKeyId"), let provided = param("Signature"),
            let expiresRaw = param("Expires")
        else {
            throw SigV4Error(
                .accessDenied,
                "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters")
        }
        guard let expires = Int(expiresRaw.httpTrimmed) else {
            throw SigV4Error(.accessDenied, "Invalid date (should be seconds since epoch): \(expiresRaw)")
        }
        let secret = try secret(for: accessKeyId)
        if AMZDate.epochSeconds(now) > expires { throw SigV4Error.expired }

        // botocore moves Content-MD5, Content-Type and x-amz-* headers into the query string.
        var amz = Self.amzHeaders(headers)
        for item in query {
            let lower = item.name.asciiLowercased
            if lower.hasPrefix("x-amz-") { amz[lower] = item.value.httpTrimmed }
        }
        let md5 = query.first { $0.name.asciiLowercased == "content-md5" }?.value ?? headers.first("content-md5") ?? ""
        let type =
            query.first { $0.name.asciiLowercased == "content-type" }?.value ?? headers.first("content-type") ?? ""
        let candidates = Self.v2Resources(request).map {
            Self.v2StringToSign(
                method: request.method.uppercased(), contentMD5: md5, contentType: type, date: expiresRaw.httpTrimmed,
                amz: amz, resource: $0)
        }
        try checkV2(secret: secret, candidates: candidates, provided: provided)
        return VerifiedRequest(
            accessKeyId: accessKeyId, scheme: .sigV2Query, payload: .unsigned,
            sessionToken: amz["x-amz-security-token"])
    }
}

/// A small cache of derived SigV4 signing keys, keyed by the secret and the credential scope.
final class SigningKeyCache: Sendable {
    private struct Scope: Hashable {
        var secret: String
        var date: String
        var region: String
        var service: String
    }

    private let keys = Mutex<[Scope: [UInt8]]>([:])
    private static let capacity = 64

    func key(secret: String, date: String, region: String, service: String) -> [UInt8] {
        let scope = Scope(secret: secret, date: date, region: region, service: service)
        if let key = keys.withLock({ $0[scope] }) { return key }
        let key = SigV4Core.signingKey(secret: secret, date: date, region: region, service: service)
        keys.withLock { keys in
            if keys.count >= Self.capacity { keys.removeAll(keepingCapacity: true) }
            keys[scope] = key
        }
        return key
    }
}
