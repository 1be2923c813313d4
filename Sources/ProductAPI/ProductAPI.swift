import APIKeys
import Foundation
import HLS
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import S3Client
import VideoContract

/// What a CineScale user touches, served by the gateway; stateless over the buckets (and the key store):
/// every route but the page and streaming takes `Authorization: Bearer <API key>`; a key belongs to a tenant
/// and has scopes (`upload`, `read`, `delete`, `admin`); a video belongs to the tenant whose key created its
/// upload (its id starts with the tenant: `acme_1f0c…`, so every object key of it carries the tenant) and is
/// unknown (404) to every other tenant.
/// - `POST /uploads` → a video id and a presigned PUT URL into the ingest bucket, or for a large file a
///   resumable session (a multipart upload, presigned part URLs in batches); `GET`/`DELETE /uploads/{id}`,
///   `POST /uploads/{id}/parts` and `POST /uploads/{id}/complete` drive it (ResumableUploads.swift);
/// - `GET /videos/{id}` → state, metadata, renditions and thumbnails with signed URLs; `GET /videos` lists;
/// - `GET /stream/{id}/{rendition}` → 302 to a signed URL of that MP4;
/// - `GET /stream/{id}/master.m3u8` and `/stream/{id}/{rendition}/index.m3u8` → playlists rewritten so every
///   URI in them is signed (media playlists by the API, segments and init sections by the store);
/// - `DELETE /videos/{id}` → removes the source and every output.
/// - `POST /keys`, `GET /keys`, `DELETE /keys/{id}` → the tenant's keys (an `admin` key).
/// - `GET /` → the web page (upload, progress, playback).
/// Errors are JSON: `{"error": {"code", "message"}}` (and a `requestId` for the log when the fault is ours:
/// no internal error text ever reaches a client), written by `APIError` alone. docs/openapi.yaml describes it all.
public struct ProductAPI: Sendable {
    let configuration: ProductConfiguration
    /// Talks to the store (reads and deletes).
    let s3: S3Client
    /// Presigns URLs for clients: the store's endpoint as clients reach it.
    let presigner: S3Client
    let signer: StreamSigner
    let keys: any APIKeyStore
    let playbackKeys: any PlaybackKeyStore
    let webhooks: any WebhookStore
    let webhookWakeup = WebhookWakeup()
    let limiter: RateLimiter?
    let cors: CORSPolicy
    let logger: Logger

    public init(
        configuration: ProductConfiguration, s3: S3Client, presigner: S3Client,
        keys: any APIKeyStore & PlaybackKeyStore & WebhookStore, logger: Logger
    ) {
        self.configuration = configuration
        self.s3 = s3
        self.presigner = presigner
        self.signer = StreamSigner(secret: configuration.signingSecret)
        self.keys = keys
        self.playbackKeys = keys
        self.webhooks = keys
        self.limiter = configuration.rateLimit.map { RateLimiter(rate: $0, burst: configuration.rateBurst) }
        self.cors = CORSPolicy(origins: configuration.corsOrigins)
        self.logger = logger
    }

    /// The service that delivers the webhooks this API enqueues: the composition root runs it in its group.
    public func makeWebhookSender() -> WebhookSender {
        WebhookSender(
            store: webhooks, wakeup: webhookWakeup, allowPrivate: configuration.webhooksMayReachPrivateAddresses,
            logger: logger)
    }

    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        addPreflights(to: router)
        router.get("/") { _, _ in WebPage.response() }
        router.get("/index.html") { _, _ in WebPage.response() }
        // The API's routes, in a group whose middleware makes every error the API's JSON (APIError.swift).
        let router = router.group().add(middleware: APIErrorMiddleware<Context>(cors: cors, logger: logger))
        router.post("/uploads") { request, _ in
            try await createUpload(request, tenant: try await authenticate(request, .upload).tenant)
        }
        addResumableRoutes(to: router)
        router.post("/upload") { request, _ in
            try await uploadForm(request, tenant: try await authenticate(request, .upload).tenant)
        }
        router.get("/videos") { request, _ in
            try await listVideos(request, tenant: try await authenticate(request, .read).tenant)
        }
        router.get("/videos/:id") { request, context in
            let key = try await authenticate(request, .read)
            return try await video(try owned(context.parameters.get("id") ?? "", by: key))
        }
        router.post("/videos/:id/captions") { request, context in
            let key = try await authenticate(request, .upload)
            return try await addCaption(try owned(context.parameters.get("id") ?? "", by: key), request: request)
        }
        router.delete("/videos/:id") { request, context in
            let key = try await authenticate(request, .delete)
            return try await deleteVideo(try owned(context.parameters.get("id") ?? "", by: key))
        }
        router.post("/keys") { request, _ in
            try await createKey(request, by: try await authenticate(request, .admin))
        }
        router.get("/keys") { request, _ in
            try await listKeys(by: try await authenticate(request, .admin))
        }
        router.delete("/keys/:id") { request, context in
            try await revokeKey(context.parameters.get("id") ?? "", by: try await authenticate(request, .admin))
        }
        router.post("/webhooks") { request, _ in
            try await createWebhook(request, by: try await authenticate(request, .admin))
        }
        router.get("/webhooks") { request, _ in
            try await listWebhooks(by: try await authenticate(request, .admin))
        }
        router.delete("/webhooks/:id") { request, context in
            try await removeWebhook(context.parameters.get("id") ?? "", by: try await authenticate(request, .admin))
        }
        router.get("/webhooks/:id/deliveries") { request, context in
            try await listDeliveries(
                context.parameters.get("id") ?? "", request: request, by: try await authenticate(request, .admin))
        }
        router.post("/webhooks/:id/deliveries/:delivery/resend") { request, context in
            try await resendDelivery(
                context.parameters.get("id") ?? "", delivery: context.parameters.get("delivery") ?? "",
                by: try await authenticate(request, .admin))
        }
        router.post("/playback-keys") { request, _ in
            try await createPlaybackKey(request, by: try await authenticate(request, .admin))
        }
        router.get("/playback-keys") { request, _ in
            try await listPlaybackKeys(by: try await authenticate(request, .admin))
        }
        router.delete("/playback-keys/:id") { request, context in
            try await revokePlaybackKey(context.parameters.get("id") ?? "", by: try await authenticate(request, .admin))
        }
        router.get("/stream/:id/:name") { request, context in
            try await stream(context.parameters.get("id") ?? "", context.parameters.get("name") ?? "", request: request)
        }
        // (The same parameter name as the route above: the router's trie shares the segment.)
        router.get("/stream/:id/:name/index.m3u8") { request, context in
            try await mediaPlaylist(
                context.parameters.get("id") ?? "", context.parameters.get("name") ?? "", request: request)
        }
        router.get("/stream/:id/:name/:segment") { request, context in
            try await heldSegment(
                context.parameters.get("id") ?? "", context.parameters.get("name") ?? "",
                context.parameters.get("segment") ?? "", request: request)
        }
    }

    /// Preflights for every API route, answered by the CORS policy (204 without headers when it allows none).
    func addPreflights<Context: RequestContext>(to router: Router<Context>) {
        let routes: [(String, String)] = [
            ("/uploads", "POST"), ("/uploads/:id", "GET, DELETE"), ("/uploads/:id/parts", "POST"),
            ("/uploads/:id/complete", "POST"), ("/upload", "POST"), ("/videos", "GET"), ("/videos/:id", "GET, DELETE"),
            ("/videos/:id/captions", "POST"), ("/keys", "GET, POST"),
            ("/keys/:id", "DELETE"), ("/webhooks", "GET, POST"), ("/webhooks/:id", "DELETE"),
            ("/webhooks/:id/deliveries", "GET"),
            ("/webhooks/:id/deliveries/:delivery/resend", "POST"), ("/playback-keys", "GET, POST"),
            ("/playback-keys/:id", "DELETE"), ("/stream/:id/:name", "GET"),
            ("/stream/:id/:name/index.m3u8", "GET"), ("/stream/:id/:name/:segment", "GET"),
        ]
        for (path, methods) in routes {
            router.on(RouterPath(path), method: .options) { request, _ in cors.preflight(request, methods: methods) }
        }
    }

    // MARK: Uploads

    static let videoTypes: [String: String] = [
        "mp4": "video/mp4", "m4v": "video/x-m4v", "mov": "video/quicktime", "mkv": "video/x-matroska",
        "webm": "video/webm", "avi": "video/x-msvideo", "ts": "video/mp2t", "mpg": "video/mpeg", "mpeg": "video/mpeg",
        "ogv": "video/ogg", "3gp": "video/3gpp", "flv": "video/x-flv", "wmv": "video/x-ms-wmv", "m2ts": "video/mp2t",
        "mts": "video/mp2t", "vob": "video/mpeg", "mpeg4": "video/mp4", "h264": "video/h264",
    ]

    func createUpload(_ request: Request, tenant: String) async throws -> Response {
        let body = try await request.body.collect(upTo: 64 * 1024)
        var upload = UploadRequest()
        if body.readableBytes > 0 {
            do {
                upload = try JSONDecoder().decode(UploadRequest.self, from: Data(body.readableBytesView))
            } catch {
                throw APIError(
                    400, "InvalidRequest",
                    "The body must be JSON: {\"fileName\", \"contentType\", \"size\"}, all optional.")
            }
        }
        if let size = upload.size {
            guard size > 0 else { throw APIError(400, "InvalidRequest", "size must be a positive number of bytes.") }
            guard size <= configuration.maxUploadBytes else {
                throw APIError(
                    413, "UploadTooLarge",
                    "The file is \(size) bytes; uploads are limited to \(configuration.maxUploadBytes).")
            }
        }
        let (contentType, suffix) = try Self.videoType(fileName: upload.fileName, contentType: upload.contentType)
        var policy = configuration.defaultPlaybackPolicy
        if let asked = upload.playbackPolicy {
            guard let chosen = PlaybackPolicy(rawValue: asked) else {
                throw APIError(400, "InvalidRequest", "playbackPolicy is 'public' or 'signed'.")
            }
            policy = chosen
        }
        let origins = try (upload.allowedOrigins ?? []).map { origin in
            guard origin.count <= 200, Self.origin(of: origin) == origin else {
                throw APIError(
                    400, "InvalidRequest", "allowedOrigins are origins like https://app.example (scheme, host, port).")
            }
            return origin
        }
        guard origins.count <= 20 else { throw APIError(400, "InvalidRequest", "At most 20 allowedOrigins.") }
        let id = Self.newVideoID(tenant: tenant)
        let key = "\(configuration.uploadPrefix)\(id).\(suffix)"
        if try isResumable(size: upload.size, asked: upload.resumable) {
            return try await createSession(
                id: id, key: key, upload: upload, contentType: contentType, policy: policy, origins: origins,
                tenant: tenant)
        }
        let now = Date()
        let expires = now.addingTimeInterval(Double(configuration.uploadExpiry))
        var headers: [String: String] = [:]
        if let size = upload.size { headers["Content-Length"] = String(size) }
        let url = try presigner.presignedURL(
            method: "PUT", bucket: configuration.ingestBucket, key: key, expires: configuration.uploadExpiry,
            headers: headers, date: now)
        let source = SourceObject(bucket: configuration.ingestBucket, key: key, size: upload.size)
        let record = UploadRecord(
            videoId: id, source: source, fileName: upload.fileName, contentType: contentType, size: upload.size,
            createdAt: ISO8601.string(now), expiresAt: ISO8601.string(expires), playbackPolicy: policy,
            allowedOrigins: origins.isEmpty ? nil : origins)
        try await s3.putJSON(record, bucket: configuration.mediaBucket, key: Self.uploadKey(id))
        try await emit(
            "video.created", video: id, tenant: tenant,
            data: [
                "state": .string(VideoState.awaitingUpload.rawValue),
                "fileName": upload.fileName.map(JSONValue.string) ?? .null,
            ])
        logger.info("upload created", metadata: ["cinescale.video": .string(id), "cinescale.key": .string(key)])
        return try Self.json(
            UploadTicket(
                videoId: id, uploadUrl: url.absoluteString, method: "PUT", headers: headers,
                expiresAt: ISO8601.string(expires), source: source, status: "/videos/\(id)"),
            status: .created)
    }

    /// The old CineScale's `POST /upload` (multipart/form-data with a `file` part), kept as a convenience:
    /// the file part streams to the ingest bucket as a multipart upload of 8 MiB parts, so memory stays
    /// bounded whatever the file's size.
    func uploadForm(_ request: Request, tenant: String) async throws -> Response {
        guard let boundary = MultipartParser.boundary(contentType: request.headers[.contentType] ?? "") else {
            throw APIError(415, "UnsupportedMediaType", "POST /upload takes multipart/form-data with a 'file' part.")
        }
        if let length = request.headers[.contentLength].flatMap({ Int64($0) }),
            length > configuration.maxUploadBytes + 64 * 1024
        {
            throw APIError(413, "UploadTooLarge", "Uploads are limited to \(configuration.maxUploadBytes) bytes.")
        }
        var parser = MultipartParser(boundary: boundary)
        var upload: FormUpload?
        var skipping = 0
        do {
            for try await chunk in request.body {
                let events: [MultipartParser.Event]
                do {
                    events = try parser.feed(chunk.readableBytesView)
                } catch {
                    throw APIError(400, "MalformedForm", error.message)
                }
                for event in events {
                    switch event {
                    case .partStart(let headers):
                        let disposition = headers["content-disposition"] ?? ""
                        if upload == nil, disposition.headerParameter("name") == "file" {
                            upload = try await startFormUpload(
                                fileName: disposition.headerParameter("filename"), contentType: headers["content-type"],
                                tenant: tenant)
                        } else {
                            skipping = 0
                        }
                    case .data(let bytes):
                        if let current = upload, !current.finished {
                            try await current.append(bytes)
                        } else {
                            skipping += bytes.count
                            if skipping > 64 * 1024 {
                                throw APIError(400, "MalformedForm", "Only a 'file' part and small fields are taken.")
                            }
                        }
                    case .partEnd:
                        if let current = upload, !current.finished { try await current.finish() }
                    }
                }
            }
        } catch {
            await upload?.abort()
            throw error
        }
        guard parser.isDone, let upload, upload.finished else {
            await upload?.abort()
            throw APIError(400, "MalformedForm", "The form ended before its closing boundary, or had no 'file' part.")
        }
        // The bytes are in the bucket already: created and uploaded at once.
        try await emit(
            "video.created", video: upload.id, tenant: tenant, data: ["state": .string(VideoState.probing.rawValue)])
        try await emit(
            "video.uploaded", video: upload.id, tenant: tenant,
            data: ["state": .string(VideoState.probing.rawValue), "size": .number(Double(upload.size))])
        return try Self.json(
            UploadTicket(
                videoId: upload.id, uploadUrl: "", method: "POST", headers: [:], expiresAt: ISO8601.string(Date()),
                source: SourceObject(bucket: configuration.ingestBucket, key: upload.key, size: upload.size),
                status: "/videos/\(upload.id)"),
            status: .created)
    }

    private func startFormUpload(fileName: String?, contentType: String?, tenant: String) async throws -> FormUpload {
        // Form parts often say application/octet-stream for any file: that says nothing about the type.
        let (type, suffix) = try Self.videoType(
            fileName: fileName, contentType: contentType == "application/octet-stream" ? nil : contentType)
        let id = Self.newVideoID(tenant: tenant)
        let key = "\(configuration.uploadPrefix)\(id).\(suffix)"
        let now = Date()
        try await s3.putJSON(
            UploadRecord(
                videoId: id, source: SourceObject(bucket: configuration.ingestBucket, key: key), fileName: fileName,
                contentType: type, size: nil, createdAt: ISO8601.string(now), expiresAt: ISO8601.string(now),
                playbackPolicy: configuration.defaultPlaybackPolicy),
            bucket: configuration.mediaBucket, key: Self.uploadKey(id))
        return FormUpload(
            id: id, key: key, contentType: type, bucket: configuration.ingestBucket, s3: s3,
            limit: configuration.maxUploadBytes)
    }

    static func uploadKey(_ id: String) -> String { "\(id)/upload.json" }

    /// The content type an upload is stored with (the given one, else the file name's, else video/mp4) and
    /// the extension its key gets; 415 when the type is not video/*.
    static func videoType(fileName: String?, contentType: String?) throws -> (contentType: String, ext: String) {
        let ext = fileExtension(fileName)
        let given = contentType?.isEmpty == false ? contentType : nil
        // A name whose extension is not a video's (photo.png, notes.txt), with no type given, is not taken for one.
        if given == nil, let ext, videoTypes[ext] == nil {
            throw APIError(
                415, "UnsupportedMediaType",
                "'.\(ext)' is not a video file extension; give contentType if it is a video.")
        }
        let type = given ?? ext.flatMap { videoTypes[$0] } ?? "video/mp4"
        guard type.lowercased().hasPrefix("video/") else {
            throw APIError(
                415, "UnsupportedMediaType", "'\(type)' is not a video type; CineScale takes video/* uploads.")
        }
        return (type, ext ?? videoTypes.first { $0.value == type.lowercased() }?.key ?? "mp4")
    }

    /// The tenant, '_', and 96 random bits in lowercase hex: unguessable, safe as a key segment and a file
    /// name, and every object key of the video (`uploads/<id>.mp4`, `<id>/…`) carries its tenant.
    static func newVideoID(tenant: String) -> String { tenant + "_" + RandomBytes.hex(12) }

    /// The tenant a video id names (what precedes its first '_'); nil for an id without one.
    static func tenant(of id: String) -> String? {
        guard let separator = id.firstIndex(of: "_"), separator != id.startIndex else { return nil }
        return String(id[..<separator])
    }

    /// `id`, if it is a valid video id of the key's tenant; another tenant's video is unknown (404), exactly
    /// as a video that does not exist.
    func owned(_ id: String, by key: APIKey) throws -> String {
        try Self.validate(id)
        guard Self.tenant(of: id) == key.tenant else { throw APIError.notFound(id) }
        return id
    }

    /// The file name's extension, lowercased, when it is 1–8 letters or digits.
    static func fileExtension(_ fileName: String?) -> String? {
        guard let name = fileName, let dot = name.lastIndex(of: "."), dot != name.startIndex else { return nil }
        let ext = name[name.index(after: dot)...].lowercased()
        guard (1...8).contains(ext.count), ext.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
            return nil
        }
        return ext
    }

    /// Video ids name key prefixes: letters, digits, '-', '_' and '.', not starting with '.'.
    static func validate(_ id: String) throws {
        guard (1...128).contains(id.utf8.count), !id.hasPrefix("."),
            id.utf8.allSatisfy({
                ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || $0 == 0x2D
                    || $0 == 0x5F || $0 == 0x2E
            })
        else { throw APIError(400, "InvalidVideoId", "A video id is 1–128 letters, digits, '-', '_' or '.'.") }
    }

    // MARK: Helpers

    func optionalJSON<T: Decodable & Sendable>(_ type: T.Type, _ key: String) async throws -> T? {
        do {
            return try await s3.getJSON(T.self, bucket: configuration.mediaBucket, key: key)
        } catch let error as S3Error where error.isNoSuchKey {
            return nil
        } catch is DecodingError {
            logger.error("a stored object is not what the pipeline writes", metadata: ["cinescale.key": .string(key)])
            throw APIError(502, "InvalidObject", "A stored object of this video is damaged.")
        }
    }

    func exists(bucket: String, key: String) async throws -> Bool {
        do {
            _ = try await s3.headObject(bucket: bucket, key: key)
            return true
        } catch let error as S3Error where error.isNotFound {
            return false
        }
    }

    static func requestID() -> String { RandomBytes.hex(8) }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(
            status: status, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoded(value))))
    }

    /// The API's JSON, answers and webhook bodies alike: sorted keys, slashes as they are.
    static func encoded(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    static func playlist(_ text: String) -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/vnd.apple.mpegurl", .cacheControl: "no-store"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}
