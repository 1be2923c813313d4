import Crypto
import Foundation
import Synchronization
import WireFormat

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

    func secret(for accessKeyId: String) throws(SigV4Error) -> String {
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
