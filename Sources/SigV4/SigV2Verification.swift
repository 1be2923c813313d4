import Crypto
import Foundation
import WireFormat

/// Signature Version 2 (`Authorization: AWS AK:sig`, and `AWSAccessKeyId`/`Signature`/`Expires` in the
/// query): the legacy scheme older S3 clients still sign with.
extension SigV4Verifier {
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

    func verifyV2Header(
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

    func verifyV2Query(
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
