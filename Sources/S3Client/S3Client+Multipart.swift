import Foundation
import NIOCore
import S3Wire

extension S3Client {
    /// Starts a multipart upload and returns its upload id.
    public func createMultipartUpload(
        bucket: String,
        key: String,
        contentType: String? = nil,
        metadata: [String: String] = [:]
    ) async throws -> String {
        var op = S3Operation("CreateMultipartUpload", "POST", bucket: bucket, key: key, query: [("uploads", "")])
        if let contentType {
            try Self.validateHeaderValue(contentType, "content type")
            op.headers.append(("content-type", contentType))
        }
        op.headers.append(contentsOf: try Self.metadataHeaders(metadata))
        // Retrying could leave an orphan upload behind; not worth it.
        op.idempotent = false
        return try await Self.parseInitiateMultipartUpload(send(op).xml())
    }

    static func parseInitiateMultipartUpload(_ root: S3XMLElement) throws -> String {
        // Some stores (e.g. gofakes3/rclone) name the root "InitiateMultipartUpload".
        guard root.name != "Error", let uploadId = root.string("UploadId"), !uploadId.isEmpty
        else {
            throw S3ClientError.invalidResponse(
                "expected InitiateMultipartUploadResult with an UploadId, got \(root.name)")
        }
        return uploadId
    }

    /// Uploads one part (1...10000). Every part but the last must be at least 5 MiB.
    public func uploadPart(
        bucket: String,
        key: String,
        uploadId: String,
        partNumber: Int,
        body: ByteBuffer
    ) async throws -> CompletedPart {
        guard (1...S3ClientConfiguration.maximumPartCount).contains(partNumber) else {
            throw S3ClientError.invalidArgument("part number \(partNumber) outside 1...10000")
        }
        let op = S3Operation(
            "UploadPart", "PUT", bucket: bucket, key: key,
            query: [("partNumber", String(partNumber)), ("uploadId", uploadId)], body: body
        )
        let response = try await send(op)
        guard let etag = response.header("etag")?.unquotedETag, !etag.isEmpty else {
            throw S3ClientError.invalidResponse("UploadPart answer has no ETag")
        }
        return CompletedPart(partNumber: partNumber, etag: etag)
    }

    /// Completes an upload from its parts (sorted by part number here).
    @discardableResult
    public func completeMultipartUpload(
        bucket: String,
        key: String,
        uploadId: String,
        parts: [CompletedPart]
    ) async throws -> PutObjectOutput {
        guard !parts.isEmpty else { throw S3ClientError.invalidArgument("a multipart upload needs at least one part") }
        var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        for part in parts.sorted(by: { $0.partNumber < $1.partNumber }) {
            xml +=
                "<Part>" + S3XML.element("PartNumber", String(part.partNumber))
                + S3XML.element("ETag", "\"\(part.etag)\"") + "</Part>"
        }
        xml += "</CompleteMultipartUpload>"
        var op = S3Operation(
            "CompleteMultipartUpload", "POST", bucket: bucket, key: key, query: [("uploadId", uploadId)],
            headers: [("content-type", "application/xml")], body: ByteBuffer(string: xml)
        )
        op.mayEmbedError = true
        let response = try await send(op)
        let etag = try Self.parseCompleteMultipartUpload(response.xml())
        return PutObjectOutput(etag: etag, versionId: response.header("x-amz-version-id"))
    }

    /// The (unquoted) ETag of the completed object.
    static func parseCompleteMultipartUpload(_ root: S3XMLElement) throws -> String {
        guard root.name != "Error", let etag = root.string("ETag") else {
            throw S3ClientError.invalidResponse("expected CompleteMultipartUploadResult with an ETag, got \(root.name)")
        }
        return etag.unquotedETag
    }

    /// Aborts an upload and frees its parts.
    public func abortMultipartUpload(bucket: String, key: String, uploadId: String) async throws {
        _ = try await send(
            S3Operation("AbortMultipartUpload", "DELETE", bucket: bucket, key: key, query: [("uploadId", uploadId)])
        )
    }

    /// One page of the parts uploaded so far.
    public func listParts(
        bucket: String,
        key: String,
        uploadId: String,
        partNumberMarker: Int? = nil,
        maxParts: Int? = nil
    ) async throws -> ListPartsOutput {
        var query: [(name: String, value: String)] = [("uploadId", uploadId)]
        if let maxParts { query.append(("max-parts", String(maxParts))) }
        if let partNumberMarker { query.append(("part-number-marker", String(partNumberMarker))) }
        let root = try await send(S3Operation("ListParts", "GET", bucket: bucket, key: key, query: query)).xml()
        return try Self.parseListParts(root)
    }

    static func parseListParts(_ root: S3XMLElement) throws -> ListPartsOutput {
        guard root.name == "ListPartsResult" else {
            throw S3ClientError.invalidResponse("expected ListPartsResult, got \(root.name)")
        }
        let parts = root.children("Part").compactMap { part -> PartSummary? in
            guard let number = part.int("PartNumber") else { return nil }
            return PartSummary(
                partNumber: number, etag: part.string("ETag")?.unquotedETag ?? "", size: part.int("Size") ?? 0,
                lastModified: part.date("LastModified")
            )
        }
        let marker = root.int("NextPartNumberMarker")
        return ListPartsOutput(
            parts: parts, isTruncated: root.bool("IsTruncated") ?? false, nextPartNumberMarker: marker
        )
    }

    /// Aborts an upload from a context that may already be cancelled (runs in its own task).
    func abortQuietly(bucket: String, key: String, uploadId: String) async {
        let client = self
        let result = await Task {
            try await client.abortMultipartUpload(bucket: bucket, key: key, uploadId: uploadId)
        }.result
        if case .failure(let error) = result {
            logger.warning(
                "could not abort multipart upload",
                metadata: [
                    "cinescale.s3.bucket": "\(bucket)", "cinescale.s3.key": "\(key)",
                    "cinescale.s3.upload_id": "\(uploadId)", "cinescale.s3.error": "\(Self.describe(error))",
                ]
            )
        }
    }
}

extension S3Client {
    /// Every part uploaded so far, following `NextPartNumberMarker` through all pages (S3 answers at most
    /// 1 000 parts a page; an upload may have 10 000).
    public func listAllParts(bucket: String, key: String, uploadId: String) async throws -> [PartSummary] {
        var parts: [PartSummary] = []
        var marker: Int?
        while true {
            let page = try await listParts(bucket: bucket, key: key, uploadId: uploadId, partNumberMarker: marker)
            parts += page.parts
            guard page.isTruncated else { return parts }
            guard let next = page.nextPartNumberMarker ?? page.parts.last?.partNumber, next != marker else {
                throw S3ClientError.invalidResponse("truncated ListParts without a new NextPartNumberMarker")
            }
            marker = next
        }
    }

    /// One page of the multipart uploads in progress in `bucket` whose key starts with `prefix`.
    public func listMultipartUploads(
        bucket: String,
        prefix: String? = nil,
        keyMarker: String? = nil,
        uploadIdMarker: String? = nil,
        maxUploads: Int? = nil
    ) async throws -> ListMultipartUploadsOutput {
        var query: [(name: String, value: String)] = [("uploads", "")]
        if let prefix { query.append(("prefix", prefix)) }
        if let keyMarker { query.append(("key-marker", keyMarker)) }
        if let uploadIdMarker { query.append(("upload-id-marker", uploadIdMarker)) }
        if let maxUploads { query.append(("max-uploads", String(maxUploads))) }
        let root = try await send(S3Operation("ListMultipartUploads", "GET", bucket: bucket, query: query)).xml()
        return try Self.parseListMultipartUploads(root)
    }

    static func parseListMultipartUploads(_ root: S3XMLElement) throws -> ListMultipartUploadsOutput {
        guard root.name == "ListMultipartUploadsResult" else {
            throw S3ClientError.invalidResponse("expected ListMultipartUploadsResult, got \(root.name)")
        }
        let uploads = root.children("Upload").compactMap { upload -> MultipartUploadSummary? in
            guard let key = upload.string("Key"), let id = upload.string("UploadId") else { return nil }
            return MultipartUploadSummary(key: key, uploadId: id, initiated: upload.date("Initiated"))
        }
        func nonEmpty(_ value: String?) -> String? { value?.isEmpty == false ? value : nil }
        return ListMultipartUploadsOutput(
            uploads: uploads, isTruncated: root.bool("IsTruncated") ?? false,
            nextKeyMarker: nonEmpty(root.string("NextKeyMarker")),
            nextUploadIdMarker: nonEmpty(root.string("NextUploadIdMarker")))
    }

    /// Every multipart upload in progress under `prefix`, following the key and upload-id markers.
    public func listAllMultipartUploads(bucket: String, prefix: String? = nil) async throws -> [MultipartUploadSummary]
    {
        var uploads: [MultipartUploadSummary] = []
        var keyMarker: String?
        var uploadIdMarker: String?
        while true {
            let page = try await listMultipartUploads(
                bucket: bucket, prefix: prefix, keyMarker: keyMarker, uploadIdMarker: uploadIdMarker)
            uploads += page.uploads
            guard page.isTruncated else { return uploads }
            let nextKey = page.nextKeyMarker ?? page.uploads.last?.key
            let nextID = page.nextUploadIdMarker ?? page.uploads.last?.uploadId
            guard let nextKey, nextKey != keyMarker || nextID != uploadIdMarker else {
                throw S3ClientError.invalidResponse("truncated ListMultipartUploads without new markers")
            }
            (keyMarker, uploadIdMarker) = (nextKey, nextID)
        }
    }

    /// A presigned URL for one `UploadPart` (PUT `?partNumber=N&uploadId=…`), valid `expires` seconds. With
    /// `contentLength` the length is signed: the store refuses a part of any other size.
    public func presignedUploadPartURL(
        bucket: String, key: String, uploadId: String, partNumber: Int, contentLength: Int64? = nil, expires: Int,
        date: Date = Date()
    ) throws -> URL {
        guard (1...S3ClientConfiguration.maximumPartCount).contains(partNumber) else {
            throw S3ClientError.invalidArgument("part number \(partNumber) outside 1...10000")
        }
        return try presignedURL(
            method: "PUT", bucket: bucket, key: key, expires: expires,
            headers: contentLength.map { ["Content-Length": String($0)] } ?? [:],
            query: [("partNumber", String(partNumber)), ("uploadId", uploadId)], date: date)
    }
}
