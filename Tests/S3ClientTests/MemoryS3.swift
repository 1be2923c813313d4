import FakeHTTPServer
import Foundation
import SigV4
import WireFormat

@testable import S3Client

/// A tiny in-memory S3 (path style, one bucket namespace) behind `withFakeServer`, with hooks
/// to inject failures. Enough to exercise the client's wire behaviour without a real store.
/// `@unchecked Sendable`: the store's state is behind `lock`; the hooks (`intercept`, `pageSize`, `rangeMode`)
/// are set by the test between requests, never while one is being served.
final class MemoryS3: @unchecked Sendable {
    struct Object {
        var body: [UInt8]
        var etag: String
        var contentType: String?
        var metadata: [(String, String)]
    }

    private let lock = NSLock()
    private var objects: [String: Object] = [:]  // "bucket/key"
    private var uploads: [String: [Int: [UInt8]]] = [:]
    private var nextUpload = 0
    private(set) var aborted: [String] = []
    private(set) var maxConcurrentParts = 0
    private var inFlightParts = 0
    /// Return a response to short-circuit a request (failure injection).
    var intercept: (@Sendable (FakeRequest) -> FakeResponse?)?
    /// Objects per listing page.
    var pageSize = 1000
    enum RangeMode { case standard, ignore, status200 }
    /// `.ignore`: answer the whole object; `.status200`: partial body with Content-Range but
    /// status 200 (as gofakes3/rclone does).
    var rangeMode = RangeMode.standard

    func object(_ bucket: String, _ key: String) -> Object? {
        lock.withLock { objects["\(bucket)/\(key)"] }
    }

    var abortedUploads: [String] { lock.withLock { aborted } }
    var openUploads: Int { lock.withLock { uploads.count } }
    var peakParts: Int { lock.withLock { maxConcurrentParts } }

    func handle(_ request: FakeRequest) async -> FakeResponse {
        if let intercept, let response = intercept(request) { return response }
        guard let path = request.decodedPath, path.hasPrefix("/") else { return .error(400, code: "InvalidURI") }
        let trimmed = path.dropFirst()
        let slash = trimmed.firstIndex(of: "/")
        let bucket = String(slash.map { trimmed[..<$0] } ?? trimmed)
        let key = slash.map { String(trimmed[trimmed.index(after: $0)...]) } ?? ""
        let id = "\(bucket)/\(key)"
        let q = request.query

        if request.method == "PUT", let part = request.queryValue("partNumber"),
            let upload = request.queryValue("uploadId")
        {
            lock.withLock {
                inFlightParts += 1
                maxConcurrentParts = max(maxConcurrentParts, inFlightParts)
            }
            // Hold the first part until a second one is in flight (or 2 s pass), so that a client that sends
            // parts in parallel is seen doing so even on a loaded machine, and a sequential one is not.
            let deadline = ContinuousClock.now + .seconds(2)
            while lock.withLock({ maxConcurrentParts < 2 }), ContinuousClock.now < deadline {
                try? await Task.sleep(for: .milliseconds(5))
            }
            try? await Task.sleep(for: .milliseconds(20))
            return lock.withLock {
                inFlightParts -= 1
                guard uploads[upload] != nil else { return .error(404, code: "NoSuchUpload") }
                uploads[upload]![Int(part)!] = request.body
                return FakeResponse(status: 200, headers: [("ETag", "\"\(Hex.encode(MD5.hash(request.body)))\"")])
            }
        }

        return lock.withLock { () -> FakeResponse in
            switch request.method {
            case "POST" where q.contains { $0.name == "uploads" }:
                nextUpload += 1
                let upload = "up-\(nextUpload)"
                uploads[upload] = [:]
                return .xml(
                    200,
                    "<InitiateMultipartUploadResult><Bucket>\(bucket)</Bucket><Key>k</Key><UploadId>\(upload)</UploadId></InitiateMultipartUploadResult>"
                )
            case "POST" where request.queryValue("uploadId") != nil:
                let upload = request.queryValue("uploadId")!
                guard let parts = uploads.removeValue(forKey: upload),
                    let root = try? S3XML.parse(Data(request.body))
                else { return .error(404, code: "NoSuchUpload") }
                var body: [UInt8] = []
                var md5s: [UInt8] = []
                for part in root.children("Part") {
                    guard let n = part.int("PartNumber"), let bytes = parts[n],
                        part.string("ETag")?.unquotedETag == Hex.encode(MD5.hash(bytes))
                    else { return .error(400, code: "InvalidPart") }
                    body += bytes
                    md5s += MD5.hash(bytes)
                }
                let etag = Hex.encode(MD5.hash(md5s)) + "-\(root.children("Part").count)"
                objects[id] = Object(body: body, etag: etag, contentType: nil, metadata: [])
                return .xml(
                    200,
                    "<CompleteMultipartUploadResult><Bucket>\(bucket)</Bucket><Key>k</Key><ETag>\"\(etag)\"</ETag></CompleteMultipartUploadResult>"
                )
            case "DELETE" where request.queryValue("uploadId") != nil:
                let upload = request.queryValue("uploadId")!
                uploads.removeValue(forKey: upload)
                aborted.append(upload)
                return FakeResponse(status: 204)
            case "PUT":
                let etag = Hex.encode(MD5.hash(request.body))
                let meta = request.headers.filter { $0.name.lowercased().hasPrefix("x-amz-meta-") }
                    .map { ($0.name.lowercased(), $0.value) }
                objects[id] = Object(
                    body: request.body, etag: etag, contentType: request.header("content-type"), metadata: meta
                )
                return FakeResponse(status: 200, headers: [("ETag", "\"\(etag)\"")])
            case "GET" where key.isEmpty && request.queryValue("list-type") == "2":
                return list(bucket: bucket, request: request)
            case "GET", "HEAD":
                guard let object = objects[id] else {
                    return request.method == "HEAD" ? FakeResponse(status: 404) : .error(404, code: "NoSuchKey")
                }
                var headers: [(name: String, value: String)] = [
                    ("ETag", "\"\(object.etag)\""), ("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT"),
                ]
                if let ct = object.contentType { headers.append(("Content-Type", ct)) }
                headers += object.metadata.map { (name: $0.0, value: $0.1) }
                if rangeMode != .ignore, let range = request.header("range"),
                    let r = parseRange(range, size: object.body.count)
                {
                    headers.append(("Content-Range", "bytes \(r.lowerBound)-\(r.upperBound - 1)/\(object.body.count)"))
                    return FakeResponse(
                        status: rangeMode == .standard ? 206 : 200, headers: headers, body: Array(object.body[r]))
                }
                return FakeResponse(status: 200, headers: headers, body: object.body)
            case "DELETE":
                objects.removeValue(forKey: id)
                return FakeResponse(status: 204)
            default:
                return .error(501, code: "NotImplemented")
            }
        }
    }

    private func parseRange(_ header: String, size: Int) -> Range<Int>? {
        guard header.hasPrefix("bytes=") else { return nil }
        let spec = header.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false)
        guard spec.count == 2 else { return nil }
        if spec[0].isEmpty, let n = Int(spec[1]) { return max(0, size - n)..<size }
        guard let a = Int(spec[0]) else { return nil }
        let b = spec[1].isEmpty ? size - 1 : min(Int(spec[1])!, size - 1)
        return a..<(b + 1)
    }

    /// Caller holds the lock.
    private func list(bucket: String, request: FakeRequest) -> FakeResponse {
        let prefix = request.queryValue("prefix") ?? ""
        let delimiter = request.queryValue("delimiter")
        let after = request.queryValue("continuation-token") ?? request.queryValue("start-after") ?? ""
        let urlEncoding = request.queryValue("encoding-type") == "url"
        func enc(_ s: String) -> String {
            guard urlEncoding else { return S3XML.escape(s) }
            return S3URIEncoding.encode(s, encodeSlash: true).replacingOccurrences(of: "%20", with: "+")
        }
        let keys = objects.keys.filter { $0.hasPrefix(bucket + "/") }.map { String($0.dropFirst(bucket.count + 1)) }
            .filter { $0.hasPrefix(prefix) && $0 > after }.sorted()
        var contents = ""
        var prefixes: [String] = []
        var count = 0
        var last = ""
        var truncated = false
        for key in keys {
            if count == pageSize {
                truncated = true
                break
            }
            if let delimiter, let r = key.dropFirst(prefix.count).range(of: delimiter) {
                let common = String(key[..<r.upperBound])
                if prefixes.last != common {
                    prefixes.append(common)
                    count += 1
                }
                last = key
                continue
            }
            let object = objects["\(bucket)/\(key)"]!
            contents +=
                "<Contents><Key>\(enc(key))</Key><Size>\(object.body.count)</Size><ETag>\"\(object.etag)\"</ETag><LastModified>2020-01-01T00:00:00.000Z</LastModified></Contents>"
            count += 1
            last = key
        }
        let xml = """
            <ListBucketResult><Name>\(bucket)</Name><Prefix>\(enc(prefix))</Prefix><KeyCount>\(count)</KeyCount>\
            <IsTruncated>\(truncated)</IsTruncated>\(urlEncoding ? "<EncodingType>url</EncodingType>" : "")\
            \(truncated ? "<NextContinuationToken>\(S3XML.escape(last))</NextContinuationToken>" : "")\
            \(contents)\(prefixes.map { "<CommonPrefixes><Prefix>\(enc($0))</Prefix></CommonPrefixes>" }.joined())\
            </ListBucketResult>
            """
        return .xml(200, xml)
    }
}
