import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import ObjectStore
import S3Wire
import SigV4

extension S3Responder {
    func createMultipartUpload(_ s3: S3Request, bucket: String, key: String) async throws -> Response {
        let metadata = try objectMetadata(from: s3)
        let uploadID = try await store.createMultipartUpload(bucket: bucket, key: key, metadata: metadata)
        var xml = S3XMLWriter(root: "InitiateMultipartUploadResult")
        xml.element("Bucket", bucket)
        xml.element("Key", key)
        xml.element("UploadId", uploadID)
        var headers: HTTPFields = [:]
        if let algorithm = s3.header("x-amz-checksum-algorithm") {
            headers[HTTPField.Name("x-amz-checksum-algorithm")!] = algorithm
        }
        return Self.xmlResponse(xml.finish(), headers: headers)
    }

    func uploadPart(
        _ s3: S3Request, bucket: String, key: String, uploadID: String, payload: PayloadReader
    ) async throws -> Response {
        let number = try Self.partNumber(s3)
        let length = try requireLength(s3, payload: payload)
        let contentMD5 = try validatedContentMD5(s3)
        let writer = try await store.beginPart(
            bucket: bucket, key: key, uploadId: uploadID, partNumber: number, expectedSize: length)
        let part: PartInfo
        let result: PayloadResult
        do {
            result = try await payload.stream(limit: configuration.maxSinglePutSize) { try await writer.write($0) }
            part = try await writer.commit(contentMD5: contentMD5)
        } catch {
            await writer.abort()
            throw error
        }
        var headers: HTTPFields = [.eTag: quoted(part.etag)]
        Self.addChecksumHeaders(result.checksums, to: &headers)
        return Response(status: .ok, headers: headers)
    }

    /// UploadPartCopy: a part from (a range of) an existing object — what aws-cli and boto3 send for copies
    /// over 8 MB (`aws s3 cp s3://a/x s3://b/x`, `aws s3 mv`, boto3's managed `copy()`).
    func uploadPartCopy(
        _ s3: S3Request, bucket: String, key: String, uploadID: String, access: Access
    ) async throws -> Response {
        let number = try Self.partNumber(s3)
        let source = try copySource(s3)
        try await authorizeCopySource(source, access: access)
        var range: ClosedRange<Int>?
        if let text = s3.header("x-amz-copy-source-range") {
            range = try Self.copySourceRange(text)
        }
        let (part, _) = try await store.copyPart(
            from: ObjectLocation(bucket: source.bucket, key: source.key), range: range,
            sourceConditions: copySourceConditions(s3), bucket: bucket, key: key, uploadId: uploadID, partNumber: number
        )
        var xml = S3XMLWriter(root: "CopyPartResult")
        xml.element("LastModified", S3Date.iso8601(part.lastModified))
        xml.element("ETag", quoted(part.etag))
        return Self.xmlResponse(xml.finish())
    }

    /// `?partNumber=` of UploadPart and UploadPartCopy: 1 to 10 000.
    static func partNumber(_ s3: S3Request) throws -> Int {
        guard let number = s3.query["partNumber"].flatMap({ Int($0) }), (1...10_000).contains(number) else {
            throw S3ServerError.invalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive", name: "partNumber",
                value: s3.query["partNumber"])
        }
        return number
    }

    /// `x-amz-copy-source-range: bytes=first-last`, both zero-based and inclusive (the only form S3 takes).
    static func copySourceRange(_ text: String) throws -> ClosedRange<Int> {
        let invalid = S3ServerError.invalidArgument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
            name: "x-amz-copy-source-range", value: text)
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix("bytes=") else { throw invalid }
        let bounds = trimmed.dropFirst("bytes=".count).split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 2, let first = Int(bounds[0]), let last = Int(bounds[1]), first >= 0, last >= first else {
            throw invalid
        }
        return first...last
    }

    func completeMultipartUpload(
        _ s3: S3Request, bucket: String, key: String, uploadID: String, payload: PayloadReader
    ) async throws -> Response {
        let body = try await payload.collect(limit: 4 * 1024 * 1024)
        guard let root = try? S3XMLElement.parse(Data(body.readableBytesView)), root.name == "CompleteMultipartUpload"
        else {
            throw S3ServerError.malformedXML
        }
        var parts: [CompletedPart] = []
        for element in root.children("Part") {
            guard let number = element.string("PartNumber").flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }),
                let etag = element.string("ETag")
            else {
                throw S3ServerError.malformedXML
            }
            parts.append(CompletedPart(partNumber: number, etag: unquoted(etag)))
        }
        guard !parts.isEmpty else {
            throw S3ServerError(
                "MalformedXML", .badRequest,
                "The XML you provided was not well-formed or did not validate against our published schema.")
        }
        let info = try await store.completeMultipartUpload(
            bucket: bucket, key: key, uploadId: uploadID, parts: parts, conditions: try writeConditions(s3))
        var xml = S3XMLWriter(root: "CompleteMultipartUploadResult")
        xml.element("Location", "/\(bucket)/\(S3URIEncoding.encodePath(key))")
        xml.element("Bucket", bucket)
        xml.element("Key", key)
        xml.element("ETag", quoted(info.etag))
        return Self.xmlResponse(xml.finish())
    }

    func listParts(_ s3: S3Request, bucket: String, key: String, uploadID: String) async throws -> Response {
        let marker = Int(s3.query["part-number-marker"] ?? "0") ?? 0
        let maxParts = min(Int(s3.query["max-parts"] ?? "1000") ?? 1000, 1000)
        let listing = try await store.listParts(
            bucket: bucket, key: key, uploadId: uploadID, partNumberMarker: marker, maxParts: maxParts)
        var xml = S3XMLWriter(root: "ListPartsResult")
        xml.element("Bucket", bucket)
        xml.element("Key", key)
        xml.element("UploadId", uploadID)
        let owner = try await ownerID(of: bucket)
        for role in ["Initiator", "Owner"] {
            xml.group(role) {
                $0.element("ID", owner)
                $0.element("DisplayName", owner)
            }
        }
        xml.element("StorageClass", "STANDARD")
        xml.element("PartNumberMarker", marker)
        if let next = listing.nextPartNumberMarker { xml.element("NextPartNumberMarker", next) }
        xml.element("MaxParts", maxParts)
        xml.element("IsTruncated", listing.isTruncated)
        for part in listing.parts {
            xml.group("Part") {
                $0.element("PartNumber", part.partNumber)
                $0.element("LastModified", S3Date.iso8601(part.lastModified))
                $0.element("ETag", quoted(part.etag))
                $0.element("Size", part.size)
            }
        }
        return Self.xmlResponse(xml.finish())
    }

    func listMultipartUploads(_ s3: S3Request, bucket: String) async throws -> Response {
        let prefix = s3.query["prefix"] ?? ""
        let uploads = try await store.listMultipartUploads(bucket: bucket, prefix: prefix)
        var xml = S3XMLWriter(root: "ListMultipartUploadsResult")
        xml.element("Bucket", bucket)
        xml.element("KeyMarker", "")
        xml.element("UploadIdMarker", "")
        xml.element("Prefix", prefix)
        xml.element("MaxUploads", 1000)
        xml.element("IsTruncated", false)
        for upload in uploads {
            xml.group("Upload") {
                $0.element("Key", upload.key)
                $0.element("UploadId", upload.uploadId)
                $0.element("StorageClass", "STANDARD")
                $0.element("Initiated", S3Date.iso8601(upload.initiated))
            }
        }
        return Self.xmlResponse(xml.finish())
    }
}
