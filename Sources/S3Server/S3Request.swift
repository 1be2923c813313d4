import Foundation
import HTTPTypes
import Hummingbird
import SigV4

/// An S3 request after addressing has been resolved: which bucket and key it names, and its decoded query.
struct S3Request: Sendable {
    let method: HTTPRequest.Method
    let bucket: String?
    let key: String?
    /// Decoded query parameters, first value of each name.
    let query: [String: String]
    let headers: HTTPFields
    let requestID: String
    /// `/bucket/key` as named in error documents.
    let resource: String
    /// Set when the bucket came from the Host header (SigV2 signs it as part of the resource).
    let virtualHostedBucket: String?

    /// Resolves path-style (`/bucket/key`) or virtual-host style (`Host: bucket.domain`) addressing.
    init(request: Request, requestID: String, virtualHostDomain: String?) throws {
        self.method = request.method
        self.headers = request.headers
        self.requestID = requestID
        let rawPath = request.uri.path
        guard let path = S3URIEncoding.decode(rawPath) else {
            throw S3ServerError("InvalidURI", .badRequest, "Couldn't parse the specified URI.")
        }
        var query: [String: String] = [:]
        for item in S3URIEncoding.decodeQuery(request.uri.query ?? "") where query[item.name] == nil {
            query[item.name] = item.value
        }
        self.query = query

        var hostBucket: String?
        if let domain = virtualHostDomain, let authority = request.head.authority {
            let host = authority.split(separator: ":", maxSplits: 1).first.map(String.init)?.lowercased() ?? ""
            if host.hasSuffix("." + domain) {
                hostBucket = String(host.dropLast(domain.count + 1))
            }
        }
        var rest = Substring(path)
        if rest.hasPrefix("/") { rest = rest.dropFirst() }
        self.virtualHostedBucket = hostBucket
        if let hostBucket {
            self.bucket = hostBucket
            self.key = rest.isEmpty ? nil : String(rest)
        } else if rest.isEmpty {
            self.bucket = nil
            self.key = nil
        } else if let slash = rest.firstIndex(of: "/") {
            self.bucket = String(rest[..<slash])
            let key = rest[rest.index(after: slash)...]
            self.key = key.isEmpty ? nil : String(key)
        } else {
            self.bucket = String(rest)
            self.key = nil
        }
        self.resource = "/" + [bucket, key].compactMap { $0 }.joined(separator: "/")
    }

    func header(_ name: String) -> String? {
        HTTPField.Name(name).flatMap { headers[$0] }
    }

    func has(_ queryName: String) -> Bool { query[queryName] != nil }

    /// The request as the signature verifier sees it: method, raw path and query, every header, and the host.
    static func incoming(_ request: Request, virtualHostedBucket: String?) -> IncomingRequest {
        var headers: [(name: String, value: String)] = []
        headers.reserveCapacity(request.headers.count + 1)
        if let authority = request.head.authority {
            headers.append((name: "host", value: authority))
        }
        for field in request.headers {
            headers.append((name: field.name.canonicalName, value: field.value))
        }
        return IncomingRequest(
            method: request.method.rawValue, rawPath: request.uri.path, rawQuery: request.uri.query, headers: headers,
            virtualHostedBucket: virtualHostedBucket)
    }
}
