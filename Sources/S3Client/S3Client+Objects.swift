import AsyncHTTPClient
import Foundation
import NIOCore
import S3Wire
import SigV4
import WireFormat

// MARK: - Buckets

extension S3Client {
    /// Creates a bucket. Outside `us-east-1` a `LocationConstraint` naming the region is sent.
    public func createBucket(_ bucket: String) async throws {
        var op = S3Operation("CreateBucket", "PUT", bucket: bucket)
        if configuration.region != "us-east-1", !configuration.region.isEmpty {
            let xml =
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                + S3XML.element("LocationConstraint", configuration.region) + "</CreateBucketConfiguration>"
            op.body = ByteBuffer(string: xml)
            op.headers = [("content-type", "application/xml")]
        }
        _ = try await send(op)
    }

    /// Deletes an empty bucket.
    public func deleteBucket(_ bucket: String) async throws {
        _ = try await send(S3Operation("DeleteBucket", "DELETE", bucket: bucket))
    }

    /// `true` when the bucket exists and is accessible, `false` on 404; other failures throw.
    public func headBucket(_ bucket: String) async throws -> Bool {
        do {
            _ = try await send(S3Operation("HeadBucket", "HEAD", bucket: bucket))
            return true
        } catch let error as S3Error where error.statusCode == 404 {
            return false
        }
    }

    public func listBuckets() async throws -> [BucketSummary] {
        let response = try await send(S3Operation("ListBuckets", "GET"))
        return try Self.parseListBuckets(response.xml())
    }

    static func parseListBuckets(_ root: S3XMLElement) throws -> [BucketSummary] {
        guard root.name == "ListAllMyBucketsResult" else {
            throw S3ClientError.invalidResponse("expected ListAllMyBucketsResult, got \(root.name)")
        }
        return (root.child("Buckets")?.children("Bucket") ?? []).map {
            BucketSummary(name: $0.string("Name") ?? "", creationDate: $0.date("CreationDate"))
        }
    }
}

// MARK: - Objects

extension S3Client {
    static let tokenCharacters = Set(
        "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".utf8)

    /// `x-amz-meta-*` headers, validated: names are HTTP tokens, values printable ASCII.
    static func metadataHeaders(_ metadata: [String: String]) throws -> [(name: String, value: String)] {
        let lowered = Set(metadata.keys.map { $0.lowercased() })
        guard lowered.count == metadata.count else {
            throw S3ClientError.invalidArgument("metadata keys differ only by case")
        }
        return try metadata.sorted { $0.key.lowercased() < $1.key.lowercased() }.map { key, value in
            guard !key.isEmpty, key.utf8.allSatisfy({ tokenCharacters.contains($0) }) else {
                throw S3ClientError.invalidArgument("invalid metadata key \"\(key)\"")
            }
            guard value.utf8.allSatisfy({ ($0 >= 0x20 && $0 < 0x7F) || $0 == 0x09 }) else {
                throw S3ClientError.invalidArgument(
                    "metadata value for \"\(key)\" must be printable US-ASCII (S3 REST limitation)"
                )
            }
            return (name: "x-amz-meta-" + key.lowercased(), value: value.trimmingCharacters(in: .whitespaces))
        }
    }

    static func validateHeaderValue(_ value: String, _ what: String) throws {
        guard value.utf8.allSatisfy({ ($0 >= 0x20 && $0 != 0x7F) || $0 == 0x09 }) else {
            throw S3ClientError.invalidArgument("\(what) contains control characters")
        }
    }

    /// Uploads `body` in one PUT.
    ///
    /// - Parameters:
    ///   - ifNoneMatch: `"*"` to create only if the key does not exist (conditional write).
    ///   - ifMatch: an ETag the current object must have.
    /// - Returns: the ETag (unquoted). When the store answers with a plain MD5 ETag it is
    ///   checked against the bytes sent (`configuration.verifyUploadETag`).
    @discardableResult
    public func putObject(
        bucket: String,
        key: String,
        body: ByteBuffer,
        contentType: String? = nil,
        metadata: [String: String] = [:],
        ifNoneMatch: String? = nil,
        ifMatch: String? = nil
    ) async throws -> PutObjectOutput {
        var op = S3Operation("PutObject", "PUT", bucket: bucket, key: key, body: body)
        if let contentType {
            try Self.validateHeaderValue(contentType, "content type")
            op.headers.append(("content-type", contentType))
        }
        if let ifMatch {
            try Self.validateHeaderValue(ifMatch, "If-Match")
            op.headers.append(("if-match", Self.quoteETag(ifMatch)))
        }
        if let ifNoneMatch {
            try Self.validateHeaderValue(ifNoneMatch, "If-None-Match")
            op.headers.append(("if-none-match", ifNoneMatch == "*" ? "*" : Self.quoteETag(ifNoneMatch)))
        }
        op.headers.append(contentsOf: try Self.metadataHeaders(metadata))
        // A conditional PUT that succeeded but whose answer was lost would fail its retry.
        op.idempotent = ifMatch == nil && ifNoneMatch == nil
        let response = try await send(op)
        guard let etag = response.header("etag")?.unquotedETag else {
            throw S3ClientError.invalidResponse("PutObject answer has no ETag")
        }
        if configuration.verifyUploadETag, Self.isPlainMD5(etag), !Self.hasNonMD5Encryption(response) {
            let local = Hex.encode(MD5.hash(body))
            if local != etag.lowercased() {
                throw S3ClientError.integrity(
                    "ETag \(etag) returned for \(bucket)/\(key) differs from the MD5 \(local) of the bytes sent"
                )
            }
        }
        return PutObjectOutput(etag: etag, versionId: response.header("x-amz-version-id"))
    }

    static func quoteETag(_ etag: String) -> String {
        etag.hasPrefix("\"") || etag.hasPrefix("W/") ? etag : "\"\(etag)\""
    }

    static func isPlainMD5(_ etag: String) -> Bool {
        etag.utf8.count == 32 && etag.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0 | 0x20) }
    }

    static func hasNonMD5Encryption(_ response: BufferedResponse) -> Bool {
        if let sse = response.header("x-amz-server-side-encryption"), sse.lowercased().contains("kms") { return true }
        return response.header("x-amz-server-side-encryption-customer-algorithm") != nil
    }

    func getOperation(bucket: String, key: String, range: ByteRange?) throws -> S3Operation {
        var op = S3Operation("GetObject", "GET", bucket: bucket, key: key)
        if let range {
            try range.validate()
            op.headers.append(("range", range.headerValue))
        }
        return op
    }

    /// Downloads a whole object (or a range of it) into memory. For large objects use
    /// `getObjectStream` or `downloadObject`.
    public func getObject(bucket: String, key: String, range: ByteRange? = nil) async throws -> GetObjectOutput {
        var op = try getOperation(bucket: bucket, key: key, range: range)
        op.maxResponseBytes = Int.max
        let response = try await send(op)
        var head = ObjectHead(headers: response.headers)
        var body = response.body
        if let range, response.status == 200, head.contentRange == nil {
            // The store ignored the Range header (no Content-Range): cut the slice locally.
            guard let slice = range.resolve(size: body.readableBytes) else {
                throw S3Error(
                    code: "InvalidRange", message: "The requested range is not satisfiable", statusCode: 416,
                    bucket: bucket, key: key
                )
            }
            body = body.getSlice(at: body.readerIndex + slice.lowerBound, length: slice.count)!
            head.contentRange = ContentRange(first: slice.lowerBound, last: slice.upperBound - 1, total: head.size)
            head.contentLength = slice.count
        } else if head.contentLength != body.readableBytes {
            if response.headers.contains(where: { $0.name.lowercased() == "content-length" }) {
                throw S3ClientError.integrity(
                    "GetObject \(bucket)/\(key): Content-Length \(head.contentLength), received \(body.readableBytes) bytes"
                )
            }
            head.contentLength = body.readableBytes
            if head.contentRange == nil { head.size = body.readableBytes }
        }
        return GetObjectOutput(head: head, body: body)
    }

    /// Starts a download and returns the object's head and its body as an async sequence of
    /// buffers. Retries cover the request until the answer head arrives; a failure while
    /// reading the body is thrown by the sequence. The body must be consumed (or dropped).
    public func getObjectStream(
        bucket: String,
        key: String,
        range: ByteRange? = nil
    ) async throws -> (head: ObjectHead, body: S3ObjectBody) {
        let op = try getOperation(bucket: bucket, key: key, range: range)
        let response = try await open(op)
        let head = ObjectHead(headers: response.headers)
        let hasLength = response.headers.contains { $0.name.lowercased() == "content-length" }
        return (head, S3ObjectBody(base: response.body, expectedLength: hasLength ? head.contentLength : nil))
    }

    /// Object metadata. A missing object throws `S3Error` with status 404 and code `NotFound`
    /// (`isNoSuchKey` is true): HEAD answers carry no error body.
    public func headObject(bucket: String, key: String) async throws -> ObjectHead {
        let response = try await send(S3Operation("HeadObject", "HEAD", bucket: bucket, key: key))
        return ObjectHead(headers: response.headers)
    }

    /// Deletes one object; deleting a missing key succeeds (S3 semantics).
    public func deleteObject(bucket: String, key: String) async throws {
        _ = try await send(S3Operation("DeleteObject", "DELETE", bucket: bucket, key: key))
    }

    /// Deletes many objects with `POST ?delete` in batches of 1,000 (quiet mode).
    /// - Returns: the keys that could not be deleted, with their error codes.
    @discardableResult
    public func deleteObjects(bucket: String, keys: [String]) async throws -> [DeleteObjectError] {
        for key in keys { try Self.validateKey(key) }
        var failures: [DeleteObjectError] = []
        var start = 0
        while start < keys.count {
            let batch = keys[start..<min(start + 1000, keys.count)]
            start += batch.count
            var xml = "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>"
            for key in batch {
                xml += "<Object>" + S3XML.element("Key", key) + "</Object>"
            }
            xml += "</Delete>"
            let body = ByteBuffer(string: xml)
            var op = S3Operation(
                "DeleteObjects", "POST", bucket: bucket, query: [("delete", "")],
                headers: [
                    ("content-md5", Data(MD5.hash(body)).base64EncodedString()), ("content-type", "application/xml"),
                ],
                body: body
            )
            op.mayEmbedError = true
            let response = try await send(op)
            failures.append(contentsOf: try Self.parseDeleteResult(response.xml()))
        }
        return failures
    }

    static func parseDeleteResult(_ root: S3XMLElement) throws -> [DeleteObjectError] {
        guard root.name == "DeleteResult" else {
            throw S3ClientError.invalidResponse("expected DeleteResult, got \(root.name)")
        }
        return root.children("Error").map { error in
            DeleteObjectError(
                key: error.string("Key") ?? "", code: error.string("Code") ?? "", message: error.string("Message") ?? ""
            )
        }
    }

    /// Server-side copy (single request, so up to 5 GiB).
    @discardableResult
    public func copyObject(
        sourceBucket: String,
        sourceKey: String,
        bucket: String,
        key: String,
        metadata: MetadataDirective = .copy
    ) async throws -> CopyObjectOutput {
        try Self.validateBucket(sourceBucket)
        try Self.validateKey(sourceKey)
        let source =
            "/" + S3URIEncoding.encode(sourceBucket, encodeSlash: true) + "/"
            + S3URIEncoding.encodePath(sourceKey)
        var op = S3Operation(
            "CopyObject", "PUT", bucket: bucket, key: key, headers: [("x-amz-copy-source", source)]
        )
        switch metadata {
        case .copy:
            op.headers.append(("x-amz-metadata-directive", "COPY"))
        case .replace(let userMetadata, let contentType):
            op.headers.append(("x-amz-metadata-directive", "REPLACE"))
            if let contentType {
                try Self.validateHeaderValue(contentType, "content type")
                op.headers.append(("content-type", contentType))
            }
            op.headers.append(contentsOf: try Self.metadataHeaders(userMetadata))
        }
        op.mayEmbedError = true
        return try await Self.parseCopyObjectResult(send(op).xml())
    }

    static func parseCopyObjectResult(_ root: S3XMLElement) throws -> CopyObjectOutput {
        // Some stores name the root differently; the ETag is what matters.
        guard root.name != "Error", let etag = root.string("ETag") else {
            throw S3ClientError.invalidResponse("expected CopyObjectResult with an ETag, got \(root.name)")
        }
        return CopyObjectOutput(etag: etag.unquotedETag, lastModified: root.date("LastModified"))
    }
}

/// The body of a streamed download: an `AsyncSequence` of `ByteBuffer`s that throws if the
/// connection fails or fewer/more bytes than announced arrive.
public struct S3ObjectBody: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer

    let base: HTTPClientResponse.Body
    let expectedLength: Int?

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: HTTPClientResponse.Body.AsyncIterator
        let expectedLength: Int?
        var received = 0

        public mutating func next() async throws -> ByteBuffer? {
            if let chunk = try await base.next() {
                received += chunk.readableBytes
                if let expectedLength, received > expectedLength {
                    throw S3ClientError.integrity("object body longer than its Content-Length \(expectedLength)")
                }
                return chunk
            }
            if let expectedLength, received != expectedLength {
                throw S3ClientError.integrity(
                    "object body ended after \(received) of \(expectedLength) bytes"
                )
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: base.makeAsyncIterator(), expectedLength: expectedLength)
    }

    /// Reads the whole body into one buffer; throws if it exceeds `maxBytes`.
    public func collect(upTo maxBytes: Int) async throws -> ByteBuffer {
        var buffer = ByteBuffer()
        if let expectedLength {
            guard expectedLength <= maxBytes else {
                throw S3ClientError.invalidArgument("object body of \(expectedLength) bytes exceeds \(maxBytes)")
            }
            buffer.reserveCapacity(expectedLength)
        }
        for try await var chunk in self {
            guard buffer.readableBytes + chunk.readableBytes <= maxBytes else {
                throw S3ClientError.invalidArgument("object body exceeds \(maxBytes) bytes")
            }
            buffer.writeBuffer(&chunk)
        }
        return buffer
    }
}
