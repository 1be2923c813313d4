import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ObjectStore
import S3Wire
import SigV4

extension S3Responder {
    // MARK: PutObject

    func putObject(_ s3: S3Request, bucket: String, key: String, payload: PayloadReader) async throws -> Response {
        let length = try requireLength(s3, payload: payload)
        let metadata = try objectMetadata(from: s3)
        let conditions = try writeConditions(s3)
        let contentMD5 = try validatedContentMD5(s3)
        let writer = try await store.beginPut(bucket: bucket, key: key, expectedSize: length)
        let info: ObjectInfo
        let result: PayloadResult
        do {
            result = try await payload.stream(limit: configuration.maxSinglePutSize) { try await writer.write($0) }
            var metadata = metadata
            for (name, value) in result.checksums { metadata.checksums[Self.checksumAlgorithm(name)] = value }
            info = try await writer.commit(metadata: metadata, conditions: conditions, contentMD5: contentMD5)
        } catch {
            await writer.abort()
            throw error
        }
        var headers: HTTPFields = [.eTag: quoted(info.etag)]
        Self.addChecksumHeaders(result.checksums, to: &headers)
        return Response(status: .ok, headers: headers)
    }

    /// `x-amz-checksum-crc32` → `crc32`: objects keep checksums by algorithm name.
    static func checksumAlgorithm(_ headerName: String) -> String {
        let lowered = headerName.lowercased()
        return lowered.hasPrefix("x-amz-checksum-") ? String(lowered.dropFirst("x-amz-checksum-".count)) : lowered
    }

    /// Echoes verified checksums as `x-amz-checksum-<algorithm>` headers.
    static func addChecksumHeaders(_ checksums: [String: String], to headers: inout HTTPFields) {
        for (name, value) in checksums {
            if let field = HTTPField.Name("x-amz-checksum-\(checksumAlgorithm(name))") { headers[field] = value }
        }
    }

    /// S3 needs to know a PUT's size: Content-Length, or x-amz-decoded-content-length for aws-chunked bodies.
    /// Returns it.
    @discardableResult
    func requireLength(_ s3: S3Request, payload: PayloadReader) throws -> Int {
        if payload.isChunked {
            guard s3.header("x-amz-decoded-content-length") != nil else {
                throw S3ServerError.missingContentLength
            }
        } else if s3.headers[.contentLength] == nil {
            throw S3ServerError.missingContentLength
        }
        if let length = s3.header("x-amz-decoded-content-length") ?? s3.headers[.contentLength] {
            guard let size = Int(length), size >= 0 else {
                throw S3ServerError.invalidArgument("Invalid content length", name: "Content-Length", value: length)
            }
            if size > configuration.maxSinglePutSize {
                throw S3ServerError.entityTooLarge(max: configuration.maxSinglePutSize)
            }
            return size
        }
        return 0
    }

    func validatedContentMD5(_ s3: S3Request) throws -> String? {
        guard let md5 = s3.header("Content-MD5") else { return nil }
        guard let raw = Data(base64Encoded: md5), raw.count == 16 else {
            throw S3ServerError("InvalidDigest", .badRequest, "The Content-MD5 you specified was invalid.")
        }
        return md5
    }

    func writeConditions(_ s3: S3Request) throws -> WriteConditions {
        var conditions = WriteConditions()
        if let value = s3.headers[.ifNoneMatch] {
            // `*`: create only if absent (S3's conditional write); an ETag: replace only if it differs.
            conditions.ifNoneMatch = unquoted(value)
        }
        if let value = s3.headers[.ifMatch] {
            conditions.ifMatch = unquoted(value)
        }
        return conditions
    }

    /// Content-Type, Content-* headers and x-amz-meta-* user metadata of a write.
    func objectMetadata(from s3: S3Request) throws -> ObjectMetadata {
        var metadata = ObjectMetadata()
        metadata.contentType = s3.headers[.contentType] ?? "binary/octet-stream"
        metadata.contentEncoding = s3.headers[.contentEncoding].flatMap { value in
            // aws-chunked is transfer framing, not a property of the object.
            let kept = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { $0.lowercased() != "aws-chunked" && !$0.isEmpty }
            return kept.isEmpty ? nil : kept.joined(separator: ",")
        }
        metadata.contentDisposition = s3.headers[.contentDisposition]
        metadata.contentLanguage = s3.headers[.contentLanguage]
        metadata.cacheControl = s3.headers[.cacheControl]
        metadata.expires = s3.headers[.expires]
        metadata.acl = try cannedACL(s3)
        var size = 0
        for field in s3.headers {
            let name = field.name.canonicalName
            guard name.hasPrefix("x-amz-meta-") else { continue }
            let short = String(name.dropFirst("x-amz-meta-".count))
            let value = EncodedWord.decode(field.value)
            size += short.utf8.count + value.utf8.count
            if let existing = metadata.userMetadata[short] {
                metadata.userMetadata[short] = existing + "," + value
            } else {
                metadata.userMetadata[short] = value
            }
        }
        if size > 2048 {
            throw S3ServerError(
                "MetadataTooLarge", .badRequest, "Your metadata headers exceed the maximum allowed metadata size.",
                details: [("Size", String(size)), ("MaxSizeAllowed", "2048")])
        }
        return metadata
    }

    // MARK: GetObject / HeadObject

    func getObject(_ s3: S3Request, bucket: String, key: String, head: Bool, access: Access) async throws -> Response {
        var partRange: Range<Int>?
        if let text = s3.query["partNumber"] {
            guard let number = Int(text), (1...10_000).contains(number) else {
                throw S3ServerError.invalidArgument(
                    "Part number must be an integer between 1 and 10000, inclusive", name: "partNumber", value: text)
            }
            guard s3.headers[.range] == nil else {
                throw S3ServerError.invalidRequest("Cannot specify both Range header and partNumber query parameter")
            }
            partRange = 0..<0  // resolved below, once the object is open
        }
        // The reader holds the version it opened; dropping it closes its descriptor, so early exits
        // (HEAD, 304, errors) need no explicit close.
        let reader = try await access.read { try await store.openObject(bucket: bucket, key: key) }
        let info = reader.info
        try access.check(info)
        if partRange != nil, let number = s3.query["partNumber"].flatMap({ Int($0) }) {
            guard let range = info.partRange(number) else {
                if info.partCount != nil && info.partSizes == nil {
                    throw S3ServerError.invalidRequest(
                        "The object's part sizes were not recorded (it was completed before the store kept them); read it with a Range header."
                    )
                }
                throw S3ServerError(
                    "InvalidPartNumber", .rangeNotSatisfiable, "The requested partnumber is not satisfiable",
                    details: [
                        ("PartNumberRequested", String(number)), ("ActualPartCount", String(info.partCount ?? 1)),
                    ])
            }
            partRange = range
        }

        switch try evaluateReadConditions(s3, info: info) {
        case .notModified:
            var headers: HTTPFields = [.eTag: quoted(info.etag), .lastModified: S3Date.rfc1123(info.lastModified)]
            headers[.cacheControl] = info.metadata.cacheControl
            return Response(status: .notModified, headers: headers)
        case .preconditionFailed:
            throw S3ServerError.preconditionFailed
        case nil:
            break
        }

        var status = HTTPResponse.Status.ok
        var offset = 0
        var length = info.size
        var range = ByteRangeRequest.parse(s3.headers[.range], size: info.size)
        if let partRange {
            // S3 answers a part with 206 and its Content-Range, even when it is the whole object (an empty one: 200).
            range = partRange.isEmpty ? .whole : .range(partRange.lowerBound, partRange.upperBound - 1)
        }
        // Checksums describe the whole object; S3 sends none with a part of it.
        var headers = objectHeaders(info, s3: s3, wholeObject: range == .whole)
        if partRange != nil {
            headers[HTTPField.Name("x-amz-mp-parts-count")!] = String(info.partCount ?? 1)
        }
        switch range {
        case .whole:
            break
        case .range(let lower, let upper):
            status = .partialContent
            offset = lower
            length = upper - lower + 1
            headers[.contentRange] = "bytes \(lower)-\(upper)/\(info.size)"
        case .unsatisfiable:
            throw S3ServerError(
                "InvalidRange", .rangeNotSatisfiable, "The requested range is not satisfiable",
                details: [("RangeRequested", s3.headers[.range] ?? ""), ("ActualObjectSize", String(info.size))],
                headers: [.contentRange: "bytes */\(info.size)"])
        }
        headers[.contentLength] = String(length)
        if head {
            return Response(status: status, headers: headers)
        }
        let chunkSize = configuration.readChunkSize
        let body = ResponseBody(contentLength: length) { [offset, length] writer in
            // Read-ahead: the next chunk is read from disk while the current one goes to the socket.
            let end = offset + length
            var position = offset
            var current = try await reader.read(offset: position, length: min(chunkSize, end - position))
            while true {
                guard current.readableBytes > 0 else {
                    throw S3ServerError("InternalError", .internalServerError, "object shorter than recorded")
                }
                position += current.readableBytes
                guard position < end else {
                    try await writer.write(current)
                    break
                }
                let nextOffset = position
                async let next = reader.read(offset: nextOffset, length: min(chunkSize, end - nextOffset))
                try await writer.write(current)
                current = try await next
            }
            try await reader.close()
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }

    /// The headers describing an object, with `response-*` query overrides applied.
    func objectHeaders(_ info: ObjectInfo, s3: S3Request, wholeObject: Bool) -> HTTPFields {
        var headers: HTTPFields = [
            .eTag: quoted(info.etag),
            .lastModified: S3Date.rfc1123(info.lastModified),
            .acceptRanges: "bytes",
            .contentType: info.metadata.contentType ?? "binary/octet-stream",
        ]
        let m = info.metadata
        headers[.contentEncoding] = m.contentEncoding
        headers[.contentDisposition] = m.contentDisposition
        headers[.contentLanguage] = m.contentLanguage
        headers[.cacheControl] = m.cacheControl
        headers[.expires] = m.expires
        for (name, value) in m.userMetadata.sorted(by: { $0.key < $1.key }) {
            if let field = HTTPField.Name("x-amz-meta-\(name)") { headers[field] = EncodedWord.encode(value) }
        }
        if let parts = info.partCount {
            headers[HTTPField.Name("x-amz-mp-parts-count")!] = String(parts)
        }
        if wholeObject, s3.header("x-amz-checksum-mode")?.uppercased() == "ENABLED" {
            for (name, value) in m.checksums.sorted(by: { $0.key < $1.key }) {
                if let field = HTTPField.Name("x-amz-checksum-\(name)") { headers[field] = value }
            }
        }
        let overrides: [(String, HTTPField.Name)] = [
            ("response-content-type", .contentType), ("response-content-language", .contentLanguage),
            ("response-expires", .expires), ("response-cache-control", .cacheControl),
            ("response-content-disposition", .contentDisposition), ("response-content-encoding", .contentEncoding),
        ]
        for (parameter, field) in overrides {
            if let value = s3.query[parameter] { headers[field] = value }
        }
        return headers
    }

    enum ReadConditionFailure { case notModified, preconditionFailed }

    /// RFC 7232 order, as S3 applies it: If-Match, else If-Unmodified-Since; If-None-Match, else If-Modified-Since.
    func evaluateReadConditions(_ s3: S3Request, info: ObjectInfo) throws -> ReadConditionFailure? {
        let modified = info.lastModified.timeIntervalSince1970.rounded(.down)
        if let ifMatch = s3.headers[.ifMatch] {
            if !etagList(ifMatch, matches: info.etag) { return .preconditionFailed }
        } else if let since = s3.headers[.ifUnmodifiedSince].flatMap(S3Date.parseHTTP) {
            if modified > since.timeIntervalSince1970 { return .preconditionFailed }
        }
        if let ifNoneMatch = s3.headers[.ifNoneMatch] {
            if etagList(ifNoneMatch, matches: info.etag) { return .notModified }
        } else if let since = s3.headers[.ifModifiedSince].flatMap(S3Date.parseHTTP) {
            if modified <= since.timeIntervalSince1970 { return .notModified }
        }
        return nil
    }

    func etagList(_ header: String, matches etag: String) -> Bool {
        header.split(separator: ",").contains { item in
            let value = item.trimmingCharacters(in: .whitespaces)
            return value == "*" || unquoted(value.hasPrefix("W/") ? String(value.dropFirst(2)) : value) == etag
        }
    }

    // MARK: GetObjectAttributes

    /// GetObjectAttributes: the attributes named in `x-amz-object-attributes` (ETag, Checksum, ObjectParts,
    /// StorageClass, ObjectSize); the parts of a multipart object are paged by `x-amz-max-parts` and
    /// `x-amz-part-number-marker`.
    func getObjectAttributes(_ s3: S3Request, bucket: String, key: String, access: Access) async throws -> Response {
        let known: Set<String> = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
        let asked = Set(
            (s3.header("x-amz-object-attributes") ?? "").split(separator: ",").map {
                $0.trimmingCharacters(in: .whitespaces)
            }.filter { !$0.isEmpty })
        guard !asked.isEmpty else {
            throw S3ServerError.invalidArgument(
                "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty",
                name: "x-amz-object-attributes")
        }
        if let unknown = asked.subtracting(known).sorted().first {
            throw S3ServerError.invalidArgument(
                "Invalid attribute name specified.", name: "x-amz-object-attributes", value: unknown)
        }
        if let version = s3.query["versionId"], version != "null" {
            throw S3ServerError(
                "NoSuchVersion", .notFound, "The specified version does not exist.", details: [("VersionId", version)])
        }
        let info = try await access.read { try await store.headObject(bucket: bucket, key: key) }
        try access.check(info)
        var xml = S3XMLWriter(root: "GetObjectAttributesResponse")
        if asked.contains("ETag") { xml.element("ETag", info.etag) }
        if asked.contains("Checksum"), !info.metadata.checksums.isEmpty {
            xml.group("Checksum") { xml in
                for (name, value) in info.metadata.checksums.sorted(by: { $0.key < $1.key }) {
                    xml.element("Checksum" + name.uppercased(), value)
                }
            }
        }
        if asked.contains("ObjectParts"), let count = info.partCount {
            let maxParts = min(Int(s3.header("x-amz-max-parts") ?? "1000") ?? 1000, 1000)
            let marker = Int(s3.header("x-amz-part-number-marker") ?? "0") ?? 0
            let sizes = info.partSizes ?? []
            let numbers = sizes.indices.map { $0 + 1 }.filter { $0 > marker }
            let page = numbers.prefix(max(0, maxParts))
            xml.group("ObjectParts") { xml in
                xml.element("PartsCount", count)
                xml.element("PartNumberMarker", marker)
                if page.count < numbers.count, let last = page.last { xml.element("NextPartNumberMarker", last) }
                xml.element("MaxParts", maxParts)
                xml.element("IsTruncated", page.count < numbers.count)
                for number in page {
                    xml.group("Part") {
                        $0.element("PartNumber", number)
                        $0.element("Size", sizes[number - 1])
                    }
                }
            }
        }
        if asked.contains("StorageClass") { xml.element("StorageClass", "STANDARD") }
        if asked.contains("ObjectSize") { xml.element("ObjectSize", info.size) }
        return Self.xmlResponse(xml.finish(), headers: [.lastModified: S3Date.rfc1123(info.lastModified)])
    }

    // MARK: CopyObject

    func copyObject(_ s3: S3Request, bucket: String, key: String, access: Access) async throws -> Response {
        let source = try copySource(s3)
        try await authorizeCopySource(source, access: access)
        let directive = (s3.header("x-amz-metadata-directive") ?? "COPY").uppercased()
        let metadataDirective: MetadataDirective
        switch directive {
        case "COPY":
            if source.bucket == bucket && source.key == key {
                throw S3ServerError.invalidRequest(
                    "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
                )
            }
            metadataDirective = .copy
        case "REPLACE":
            metadataDirective = .replace(try objectMetadata(from: s3))
        default:
            throw S3ServerError.invalidArgument(
                "Unknown metadata directive.", name: "x-amz-metadata-directive", value: directive)
        }
        let info = try await store.copyObject(
            from: ObjectLocation(bucket: source.bucket, key: source.key),
            to: ObjectLocation(bucket: bucket, key: key),
            metadata: metadataDirective,
            conditions: try writeConditions(s3),
            sourceConditions: copySourceConditions(s3),
            acl: try cannedACL(s3))
        var xml = S3XMLWriter(root: "CopyObjectResult")
        xml.element("LastModified", S3Date.iso8601(info.lastModified))
        xml.element("ETag", quoted(info.etag))
        return Self.xmlResponse(xml.finish())
    }

    /// `x-amz-copy-source-if-*`, checked by the store against the exact source version it copies.
    func copySourceConditions(_ s3: S3Request) -> CopySourceConditions {
        CopySourceConditions(
            ifMatch: s3.header("x-amz-copy-source-if-match"),
            ifNoneMatch: s3.header("x-amz-copy-source-if-none-match"),
            ifModifiedSince: s3.header("x-amz-copy-source-if-modified-since").flatMap(S3Date.parseHTTP),
            ifUnmodifiedSince: s3.header("x-amz-copy-source-if-unmodified-since").flatMap(S3Date.parseHTTP))
    }

    /// Parses `x-amz-copy-source`: `bucket/key` or `/bucket/key`, URL-encoded, optionally `?versionId=`.
    func copySource(_ s3: S3Request) throws -> (bucket: String, key: String) {
        var raw = s3.header("x-amz-copy-source") ?? ""
        if let question = raw.firstIndex(of: "?") {
            let query = raw[raw.index(after: question)...]
            if query.hasPrefix("versionId=") && query != "versionId=null" {
                throw S3ServerError.notImplemented("versioned copy source")
            }
            raw = String(raw[..<question])
        }
        guard let decoded = S3URIEncoding.decode(raw) else {
            throw S3ServerError.invalidArgument("Invalid copy source encoding", name: "x-amz-copy-source", value: raw)
        }
        var path = Substring(decoded)
        if path.hasPrefix("/") { path = path.dropFirst() }
        guard let slash = path.firstIndex(of: "/"), slash != path.startIndex, path.index(after: slash) < path.endIndex
        else {
            throw S3ServerError.invalidArgument(
                "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
                name: "x-amz-copy-source", value: raw)
        }
        return (String(path[..<slash]), String(path[path.index(after: slash)...]))
    }

    // MARK: DeleteObjects

    func deleteObjects(_ s3: S3Request, bucket: String, payload: PayloadReader) async throws -> Response {
        let body = try await payload.collect(limit: 2 * 1024 * 1024)
        let data = Data(body.readableBytesView)
        if let md5 = s3.header("Content-MD5") {
            guard Data(base64Encoded: md5) == Data(Insecure.MD5.hash(data: data)) else {
                throw S3ServerError(
                    "BadDigest", .badRequest, "The Content-MD5 you specified did not match what we received.")
            }
        }
        guard let root = try? S3XMLElement.parse(data), root.name == "Delete" else { throw S3ServerError.malformedXML }
        let quiet = root.string("Quiet")?.lowercased() == "true"
        let keys = root.children("Object").compactMap { $0.string("Key") }
        guard keys.count == root.children("Object").count, !keys.isEmpty, keys.count <= 1000 else {
            throw S3ServerError.malformedXML
        }
        _ = try await store.bucketInfo(bucket)
        let results = try await store.deleteObjects(bucket: bucket, keys: keys)
        var xml = S3XMLWriter(root: "DeleteResult")
        for result in results {
            if let error = result.error {
                xml.group("Error") {
                    $0.element("Key", result.key)
                    $0.element("Code", error.code.rawValue)
                    $0.element("Message", error.message)
                }
            } else if !quiet {
                xml.group("Deleted") { $0.element("Key", result.key) }
            }
        }
        return Self.xmlResponse(xml.finish())
    }
}
