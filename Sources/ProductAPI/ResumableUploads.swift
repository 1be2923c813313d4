import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import S3Client
import ServiceLifecycle
import VideoContract
import WireFormat

extension ProductAPI {
    /// Part URLs handed out with a new session; a client asks for the rest in batches.
    static let firstPartBatch = 100
    /// Most part URLs one `POST /uploads/{id}/parts` mints.
    static let largestPartBatch = 1000

    func addResumableRoutes<Context: RequestContext>(to router: RouterGroup<Context>) {
        router.get("/uploads/:id") { request, context in
            let key = try await authenticate(request, .upload)
            return try await sessionView(try await session(context.parameters.get("id") ?? "", tenant: key.tenant))
        }
        router.delete("/uploads/:id") { request, context in
            let key = try await authenticate(request, .upload)
            return try await abortSession(try await session(context.parameters.get("id") ?? "", tenant: key.tenant))
        }
        router.post("/uploads/:id/parts") { request, context in
            let key = try await authenticate(request, .upload)
            return try await partURLs(
                request, try await session(context.parameters.get("id") ?? "", tenant: key.tenant))
        }
        router.post("/uploads/:id/complete") { request, context in
            let key = try await authenticate(request, .upload)
            return try await completeSession(
                request, try await session(context.parameters.get("id") ?? "", tenant: key.tenant))
        }
    }

    /// Whether an upload of `size` bytes is resumable: asked for, or over the threshold (or over what one
    /// PUT may carry).
    func isResumable(size: Int64?, asked: Bool?) throws -> Bool {
        switch asked {
        case true?:
            guard size != nil else {
                throw APIError(400, "InvalidRequest", "A resumable upload needs the file's size.")
            }
            return true
        case false?:
            if let size, size > PartPlan.maximumPartSize {
                throw APIError(
                    400, "InvalidRequest", "One PUT takes at most 5 GiB; this file needs a resumable upload.")
            }
            return false
        case nil:
            guard let size else { return false }
            return size > configuration.resumableThreshold || size > PartPlan.maximumPartSize
        }
    }

    /// Opens the multipart upload (at the key one PUT would use, so the store's notification and all after it
    /// are the same) and writes the video's upload record naming it.
    func createSession(
        id: String, key: String, upload: UploadRequest, contentType: String, policy: PlaybackPolicy, origins: [String],
        tenant: String
    ) async throws -> Response {
        let plan = try PartPlan(size: upload.size ?? 0, minimumPartSize: configuration.resumablePartSize)
        // The type goes to the store as a header here (one PUT leaves it to the client): visible ASCII only.
        guard contentType.utf8.count <= 200, contentType.utf8.allSatisfy({ (0x20...0x7E).contains($0) }) else {
            throw APIError(400, "InvalidRequest", "contentType must be a plain MIME type like video/mp4.")
        }
        let now = Date()
        let expires = now.addingTimeInterval(Double(configuration.resumableExpiry))
        let uploadID = try await s3.createMultipartUpload(
            bucket: configuration.ingestBucket, key: key, contentType: contentType)
        let source = SourceObject(bucket: configuration.ingestBucket, key: key, size: plan.size)
        let record = UploadRecord(
            videoId: id, source: source, fileName: upload.fileName, contentType: contentType, size: plan.size,
            createdAt: ISO8601.string(now), expiresAt: ISO8601.string(expires), playbackPolicy: policy,
            allowedOrigins: origins.isEmpty ? nil : origins,
            multipart: MultipartRecord(uploadId: uploadID, partSize: plan.partSize, partCount: plan.partCount))
        do {
            try await s3.putJSON(record, bucket: configuration.mediaBucket, key: Self.uploadKey(id))
        } catch {
            try? await s3.abortMultipartUpload(bucket: configuration.ingestBucket, key: key, uploadId: uploadID)
            throw error
        }
        try await emit(
            "video.created", video: id, tenant: tenant,
            data: [
                "state": .string(VideoState.awaitingUpload.rawValue),
                "fileName": upload.fileName.map(JSONValue.string) ?? .null,
            ])
        let session = UploadSessionID(videoID: id, uploadID: uploadID)
        let (parts, urlsExpire) = try presignParts(
            Array(1...min(plan.partCount, Self.firstPartBatch)), key: key, plan: plan,
            uploadID: uploadID, sessionExpires: expires, now: now)
        logger.info(
            "resumable upload created",
            metadata: [
                "cinescale.video": .string(id), "cinescale.key": .string(key),
                "cinescale.parts": .stringConvertible(plan.partCount),
                "cinescale.part_size": .stringConvertible(plan.partSize),
            ])
        return try Self.json(
            UploadSession(
                videoId: id, sessionId: session.string, size: plan.size, partSize: plan.partSize,
                partCount: plan.partCount,
                expiresAt: ISO8601.string(expires), parts: parts, urlsExpireAt: ISO8601.string(urlsExpire),
                source: source,
                status: "/videos/\(id)", session: "/uploads/\(session.string)"),
            status: .created)
    }

    /// Presigned UploadPart URLs, each signing its part's length; they live `uploadExpiry`, never past the session.
    func presignParts(
        _ numbers: [Int], key: String, plan: PartPlan, uploadID: String, sessionExpires: Date, now: Date
    ) throws -> ([PartURL], Date) {
        let lifetime = min(configuration.uploadExpiry, Int(sessionExpires.timeIntervalSince(now).rounded(.down)))
        guard lifetime >= 1 else {
            throw APIError(410, "UploadExpired", "This upload session has expired; start a new upload.")
        }
        let parts = try numbers.map { number in
            let length = plan.length(ofPart: number)
            let url = try presigner.presignedUploadPartURL(
                bucket: configuration.ingestBucket, key: key, uploadId: uploadID, partNumber: number,
                contentLength: length,
                expires: lifetime, date: now)
            return PartURL(
                partNumber: number, url: url.absoluteString, size: length, headers: ["Content-Length": String(length)])
        }
        return (parts, now.addingTimeInterval(Double(lifetime)))
    }

    /// An open or finished session of the tenant's: its record, plan and ids.
    struct Session: Sendable {
        var id: UploadSessionID
        var record: UploadRecord
        var plan: PartPlan
        var expires: Date
    }

    func session(_ text: String, tenant: String) async throws -> Session {
        let unknown = APIError(404, "NoSuchUpload", "There is no upload session '\(text.prefix(200))'.")
        guard let id = UploadSessionID(text), Self.tenant(of: id.videoID) == tenant else { throw unknown }
        guard let record = try await optionalJSON(UploadRecord.self, Self.uploadKey(id.videoID)),
            let multipart = record.multipart, multipart.uploadId == id.uploadID, let size = record.size
        else { throw unknown }
        let plan = try PartPlan(size: size, minimumPartSize: multipart.partSize)
        guard plan.partSize == multipart.partSize, plan.partCount == multipart.partCount else {
            logger.error("an upload record's plan does not add up", metadata: ["cinescale.video": .string(id.videoID)])
            throw APIError(502, "InvalidObject", "The upload session's record is damaged.")
        }
        let expires = ISO8601Date.parse(record.expiresAt) ?? .distantPast
        return Session(id: id, record: record, plan: plan, expires: expires)
    }

    /// The parts stored so far; nil when the store no longer has the multipart upload (completed, aborted or
    /// expired).
    func storedParts(_ session: Session) async throws -> [PartSummary]? {
        do {
            return try await s3.listAllParts(
                bucket: session.record.source.bucket, key: session.record.source.key, uploadId: session.id.uploadID)
        } catch let error as S3Error where error.isNoSuchUpload || error.isNoSuchKey {
            return nil
        }
    }

    /// Why a session's multipart upload is gone: completed (the object is there), else expired or aborted.
    func goneSession(_ session: Session) async throws -> APIError? {
        if try await exists(bucket: session.record.source.bucket, key: session.record.source.key) { return nil }
        if Date() >= session.expires {
            return APIError(
                410, "UploadExpired", "This upload session expired at \(session.record.expiresAt); start a new upload.")
        }
        return APIError(404, "NoSuchUpload", "Upload session '\(session.id.string)' was aborted.")
    }

    func sessionView(_ session: Session) async throws -> Response {
        var view = UploadSessionView(
            videoId: session.id.videoID, sessionId: session.id.string, state: "open", size: session.plan.size,
            partSize: session.plan.partSize, partCount: session.plan.partCount, expiresAt: session.record.expiresAt,
            parts: [],
            storedBytes: 0, missingParts: [])
        guard let stored = try await storedParts(session) else {
            if let gone = try await goneSession(session) { throw gone }
            view.state = "completed"
            view.storedBytes = session.plan.size
            return try Self.json(view)
        }
        let good = Self.goodParts(stored, plan: session.plan)
        view.parts = good.values.sorted { $0.partNumber < $1.partNumber }.map {
            .init(
                partNumber: $0.partNumber, size: Int64($0.size), etag: $0.etag,
                lastModified: $0.lastModified.map(ISO8601.string))
        }
        view.storedBytes = view.parts.reduce(0) { $0 + $1.size }
        view.missingParts = (1...session.plan.partCount).filter { good[$0] == nil }
        return try Self.json(view)
    }

    /// Stored parts inside the plan with the length it gives them, by number.
    static func goodParts(_ stored: [PartSummary], plan: PartPlan) -> [Int: PartSummary] {
        var good: [Int: PartSummary] = [:]
        for part in stored
        where (1...plan.partCount).contains(part.partNumber) && Int64(part.size) == plan.length(ofPart: part.partNumber)
        {
            good[part.partNumber] = part
        }
        return good
    }

    func partURLs(_ request: Request, _ session: Session) async throws -> Response {
        struct Asked: Decodable { var partNumbers: [Int] }
        let body = try await request.body.collect(upTo: 256 * 1024)
        guard let asked = try? JSONDecoder().decode(Asked.self, from: Data(body.readableBytesView)) else {
            throw APIError(400, "InvalidRequest", "The body must be JSON: {\"partNumbers\": [1, 2, …]}.")
        }
        var numbers: [Int] = []
        var seen = Set<Int>()
        for number in asked.partNumbers where seen.insert(number).inserted { numbers.append(number) }
        guard !numbers.isEmpty, numbers.count <= Self.largestPartBatch else {
            throw APIError(400, "InvalidRequest", "Ask for 1–\(Self.largestPartBatch) part numbers at a time.")
        }
        if let wrong = numbers.first(where: { !(1...session.plan.partCount).contains($0) }) {
            throw APIError(
                400, "InvalidPartNumber",
                "Part \(wrong) is not a part of this upload: its parts are 1–\(session.plan.partCount).")
        }
        let now = Date()
        guard now < session.expires else {
            throw APIError(
                410, "UploadExpired", "This upload session expired at \(session.record.expiresAt); start a new upload.")
        }
        let (parts, expires) = try presignParts(
            numbers, key: session.record.source.key, plan: session.plan, uploadID: session.id.uploadID,
            sessionExpires: session.expires, now: now)
        return try Self.json(PartURLBatch(parts: parts, urlsExpireAt: ISO8601.string(expires)))
    }

    func completeSession(_ request: Request, _ session: Session) async throws -> Response {
        struct Asked: Decodable {
            struct Part: Decodable {
                var partNumber: Int
                var etag: String?
                // S3's own spelling, for clients that pass UploadPart answers through.
                var ETag: String?
            }
            var parts: [Part]?
        }
        let body = try await request.body.collect(upTo: 2 << 20)
        var asked = Asked()
        if body.readableBytes > 0 {
            do {
                asked = try JSONDecoder().decode(Asked.self, from: Data(body.readableBytesView))
            } catch {
                throw APIError(
                    400, "InvalidRequest",
                    "The body is empty or JSON: {\"parts\": [{\"partNumber\": 1, \"etag\": \"…\"}, …]}.")
            }
        }
        let done = CompletedUpload(
            videoId: session.id.videoID, sessionId: session.id.string, size: session.plan.size,
            source: session.record.source,
            status: "/videos/\(session.id.videoID)")
        guard let stored = try await storedParts(session) else {
            // Completed before (a retried complete whose answer was lost): the same answer.
            if let gone = try await goneSession(session) { throw gone }
            return try Self.json(done)
        }
        let good = Self.goodParts(stored, plan: session.plan)
        let missing = (1...session.plan.partCount).filter { good[$0] == nil }
        guard missing.isEmpty else {
            let listed = missing.prefix(10).map(String.init).joined(separator: ", ") + (missing.count > 10 ? ", …" : "")
            throw APIError(
                409, "IncompleteUpload",
                "\(missing.count) of \(session.plan.partCount) parts are not stored (with their planned size) yet: \(listed)."
            )
        }
        if let named = asked.parts {
            guard named.map(\.partNumber).sorted() == Array(1...session.plan.partCount) else {
                throw APIError(400, "InvalidPart", "parts must name every part 1–\(session.plan.partCount) once.")
            }
            for part in named {
                let etag = (part.etag ?? part.ETag ?? "").trimmingCharacters(in: CharacterSet(charactersIn: "\" "))
                guard etag == good[part.partNumber]?.etag else {
                    throw APIError(
                        400, "InvalidPart",
                        "Part \(part.partNumber)'s ETag is not the stored part's: it was sent again or not at all.")
                }
            }
        }
        let parts = (1...session.plan.partCount).map { CompletedPart(partNumber: $0, etag: good[$0]!.etag) }
        do {
            try await s3.completeMultipartUpload(
                bucket: session.record.source.bucket, key: session.record.source.key, uploadId: session.id.uploadID,
                parts: parts)
        } catch let error as S3Error where error.isNoSuchUpload {
            // Another complete won the race.
            if let gone = try await goneSession(session) { throw gone }
        }
        logger.info(
            "resumable upload completed",
            metadata: [
                "cinescale.video": .string(session.id.videoID),
                "cinescale.parts": .stringConvertible(session.plan.partCount),
            ])
        return try Self.json(done)
    }

    func abortSession(_ session: Session) async throws -> Response {
        do {
            try await s3.abortMultipartUpload(
                bucket: session.record.source.bucket, key: session.record.source.key, uploadId: session.id.uploadID)
        } catch let error as S3Error where error.isNoSuchUpload {
            if try await exists(bucket: session.record.source.bucket, key: session.record.source.key) {
                throw APIError(
                    409, "UploadCompleted",
                    "This upload is complete; DELETE /videos/\(session.id.videoID) removes the video.")
            }
        }
        // The video had nothing but its upload record: it goes with the session.
        try await s3.deleteObject(bucket: configuration.mediaBucket, key: Self.uploadKey(session.id.videoID))
        if let tenant = Self.tenant(of: session.id.videoID) {
            try await emit("video.deleted", video: session.id.videoID, tenant: tenant, data: [:])
        }
        logger.info("resumable upload aborted", metadata: ["cinescale.video": .string(session.id.videoID)])
        return Response(status: .noContent)
    }
}
