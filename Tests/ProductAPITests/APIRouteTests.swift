import APIKeys
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import S3Client
import Testing

@testable import ProductAPI

/// Every route of the product API in process (HummingbirdTesting's router client) over the real embedded
/// store (ObjectStore behind S3Server on 127.0.0.1, see `ResumableRouteTests.withAPI`) and a SQLite key store in
/// a temporary directory: each answer the routes give, errors included, with their status, code and headers.
/// The pipeline's objects (upload records, metadata.json, status.json, playlists) are written as the JSON and
/// text the functions write. (The resumable session routes are covered in ResumableUploadTests.swift.)
/// Longer than 500 lines on purpose: one suite over one set of fixtures, a test per route and answer, read top
/// to bottom in the order of docs/openapi.yaml.
@Suite("Product API: every route and its answers")
struct APIRouteTests {
    /// What a route answered, its JSON read.
    struct Answer {
        var status: HTTPResponse.Status
        var headers: HTTPFields
        var body: ByteBuffer
        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body.readableBytesView))) as? [String: Any] ?? [:]
        }
        var error: [String: Any] { json["error"] as? [String: Any] ?? [:] }
        var code: String? { error["code"] as? String }
        var text: String { String(buffer: body) }
    }

    /// A client with a token: `call` sends with `Authorization: Bearer`.
    struct Caller: Sendable {
        let client: any TestClientProtocol
        let token: String?

        func callAsFunction(
            _ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, headers: HTTPFields = [:]
        ) async throws -> Answer {
            try await bytes(method, uri, body.map { ByteBuffer(string: $0) }, headers: headers)
        }

        func bytes(_ method: HTTPRequest.Method, _ uri: String, _ body: ByteBuffer?, headers: HTTPFields = [:])
            async throws -> Answer
        {
            var headers = headers
            if let token { headers[.authorization] = "Bearer \(token)" }
            let response = try await client.executeRequest(uri: uri, method: method, headers: headers, body: body)
            return Answer(status: response.status, headers: response.headers, body: response.body)
        }
    }

    typealias Fixture = (api: ProductAPI, s3: S3Client, keys: SQLiteAPIKeyStore)

    /// The API over a fresh store, `body` given a caller with a key of every scope of tenant `acme`.
    static func withRoutes(
        _ tune: @escaping (inout ProductConfiguration) -> Void = { _ in },
        _ body: @escaping @Sendable (Fixture, Caller) async throws -> Void
    ) async throws {
        try await ResumableRouteTests.withAPI(tune) { api, s3, keys in
            let token = try await keys.create(tenant: "acme", name: "all", scopes: [.upload, .read, .delete, .admin])
                .token
            try await ResumableRouteTests.application(api).test(.router) { client in
                try await body((api, s3, keys), Caller(client: client, token: token))
            }
        }
    }

    // MARK: The pipeline's objects

    static func put(_ s3: S3Client, _ key: String, _ text: String, bucket: String = "media") async throws {
        try await s3.putObject(bucket: bucket, key: key, body: ByteBuffer(string: text))
    }

    static func uploadRecord(_ id: String, policy: String = "public", origins: [String]? = nil) -> String {
        let allowed = origins.map { #","allowedOrigins":[\#($0.map { "\"\($0)\"" }.joined(separator: ","))]"# } ?? ""
        return #"""
            {"videoId":"\#(id)","source":{"bucket":"ingest","key":"uploads/\#(id).mp4"},"fileName":"clip.mp4",
             "contentType":"video/mp4","createdAt":"2026-01-01T00:00:00Z","expiresAt":"2099-01-01T00:00:00Z",
             "playbackPolicy":"\#(policy)"\#(allowed)}
            """#
    }

    /// A ready video: one 360p rendition (MP4 and HLS with an init section and two segments), a poster, an
    /// HLS master; `hls: false` leaves the HLS master out of status.json, `thumbnails: false` the poster.
    static func seedReady(
        _ s3: S3Client, _ id: String, policy: String = "public", origins: [String]? = nil, hls: Bool = true,
        thumbnails: Bool = true, captions: Int = 0, master: String? = nil
    ) async throws {
        try await put(s3, "\(id)/upload.json", uploadRecord(id, policy: policy, origins: origins))
        try await put(
            s3, "\(id)/metadata.json",
            #"{"videoId":"\#(id)","source":{"bucket":"ingest","key":"uploads/\#(id).mp4"},"media":{"duration":8}}"#)
        let caption = (0..<captions).map {
            #"{"name":"subs-\#($0 + 1)","label":"L\#($0)","key":"\#(id)/hls/subs-\#($0 + 1)/captions.vtt","playlist":"\#(id)/hls/subs-\#($0 + 1)/index.m3u8","origin":"upload"}"#
        }
        try await put(
            s3, "\(id)/status.json",
            #"""
            {"videoId":"\#(id)","state":"ready","percent":100,"source":{"bucket":"ingest","key":"uploads/\#(id).mp4"},
             "renditions":[{"name":"360p","width":640,"height":360,"bitRate":800000,"size":1000,"key":"\#(id)/360p.mp4",
                            "playlist":"\#(id)/hls/360p/index.m3u8","bandwidth":900000,"codecs":"avc1.64001e,mp4a.40.2"}]
             \#(hls ? #","hls":"\#(id)/hls/master.m3u8""# : "")
             \#(thumbnails ? #","thumbnails":{"posters":[{"key":"\#(id)/thumbs/poster-0.jpg","time":1,"width":640,"height":360}]}"# : "")
             ,"captions":[\#(caption.joined(separator: ","))]}
            """#)
        try await put(
            s3, "\(id)/hls/master.m3u8",
            master ?? """
                #EXTM3U
                #EXT-X-VERSION:7
                #EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=640x360,CODECS="avc1.64001e,mp4a.40.2"
                360p/index.m3u8

                """)
        try await put(
            s3, "\(id)/hls/360p/index.m3u8",
            """
            #EXTM3U
            #EXT-X-VERSION:7
            #EXT-X-TARGETDURATION:4
            #EXT-X-MEDIA-SEQUENCE:0
            #EXT-X-PLAYLIST-TYPE:VOD
            #EXT-X-MAP:URI="init.mp4"
            #EXTINF:4.0,
            seg-00000.m4s
            #EXTINF:4.0,
            seg-00001.m4s
            #EXT-X-ENDLIST

            """)
    }

    static func expectError(
        _ answer: Answer, _ status: HTTPResponse.Status, _ code: String, _ comment: Comment? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(answer.status == status, comment, sourceLocation: sourceLocation)
        #expect(answer.code == code, comment, sourceLocation: sourceLocation)
        #expect(answer.headers[.contentType] == "application/json", comment, sourceLocation: sourceLocation)
        #expect((answer.error["message"] as? String)?.isEmpty == false, comment, sourceLocation: sourceLocation)
        if status.code < 500 { #expect(answer.error["requestId"] == nil, comment, sourceLocation: sourceLocation) }
    }

    static func expectServerFault(
        _ answer: Answer, _ status: HTTPResponse.Status, _ code: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(answer.status == status && answer.code == code, sourceLocation: sourceLocation)
        let id = answer.error["requestId"] as? String
        #expect(id?.count == 16 && answer.headers[APIError.requestIDHeader] == id, sourceLocation: sourceLocation)
        let message = answer.error["message"] as? String ?? ""
        if status == .internalServerError { #expect(message == "internal error", sourceLocation: sourceLocation) }
        for inside in ["bucket", "Bucket", "5 GiB", "SQLite", "disk", "/tmp"] {
            #expect(!answer.text.contains(inside), "\(inside)", sourceLocation: sourceLocation)
        }
    }

    // MARK: Uploads

    @Test func postUploadsHandsOutAURLOrSaysWhyNot() async throws {
        try await Self.withRoutes({ $0.maxUploadBytes = 1 << 30 }) { _, call in
            let ticket = try await call(.post, "/uploads", #"{"fileName":"a.mov","size":1000}"#)
            #expect(
                ticket.status == .created
                    && (ticket.json["uploadUrl"] as? String)?.hasPrefix("http://127.0.0.1:") == true)
            #expect(
                ticket.json["method"] as? String == "PUT"
                    && (ticket.json["videoId"] as? String)?.hasPrefix("acme_") == true)
            #expect(try await call(.post, "/uploads").status == .created)  // every field optional
            for (body, status, code) in [
                ("not json", HTTPResponse.Status.badRequest, "InvalidRequest"),
                (#"{"size":0}"#, .badRequest, "InvalidRequest"),
                (#"{"playbackPolicy":"secret"}"#, .badRequest, "InvalidRequest"),
                (#"{"allowedOrigins":["app.example"]}"#, .badRequest, "InvalidRequest"),
                (
                    #"{"allowedOrigins":[\#((0..<21).map { "\"https://a\($0).example\"" }.joined(separator: ","))]}"#,
                    .badRequest, "InvalidRequest"
                ),
                (#"{"size":2000000000}"#, .contentTooLarge, "UploadTooLarge"),
                (#"{"fileName":"photo.png"}"#, .unsupportedMediaType, "UnsupportedMediaType"),
                (#"{"contentType":"text/plain"}"#, .unsupportedMediaType, "UnsupportedMediaType"),
                // A body over the route's 64 KiB: Hummingbird's 413, in the API's format.
                (String(repeating: " ", count: 70_000), .contentTooLarge, "ContentTooLarge"),
            ] {
                Self.expectError(try await call(.post, "/uploads", body), status, code, "\(body.prefix(60))")
            }
        }
    }

    @Test func postUploadFormStoresTheFilePart() async throws {
        try await Self.withRoutes({ $0.maxUploadBytes = 1000 }) { fixture, call in
            let form: HTTPFields = [.contentType: "multipart/form-data; boundary=XyZ"]
            func body(_ file: String, name: String = "clip.mp4") -> String {
                "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHoliday\r\n"
                    + "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(name)\"\r\n"
                    + "Content-Type: application/octet-stream\r\n\r\n\(file)\r\n--XyZ--\r\n"
            }
            let created = try await call(.post, "/upload", body("0123456789"), headers: form)
            #expect(created.status == .created && created.json["method"] as? String == "POST")
            let key = try #require((created.json["source"] as? [String: Any])?["key"] as? String)
            #expect(String(buffer: try await fixture.s3.getObject(bucket: "ingest", key: key).body) == "0123456789")

            Self.expectError(
                try await call(.post, "/upload", "{}", headers: [.contentType: "application/json"]),
                .unsupportedMediaType, "UnsupportedMediaType")
            Self.expectError(
                try await call(.post, "/upload", body("x", name: "notes.txt"), headers: form), .unsupportedMediaType,
                "UnsupportedMediaType")
            Self.expectError(
                try await call(
                    .post, "/upload", "--XyZ\r\nContent-Disposition: form-data; name=\"file\"", headers: form),
                .badRequest, "MalformedForm")
            Self.expectError(
                try await call(.post, "/upload", "--XyZ--\r\n", headers: form), .badRequest, "MalformedForm")
            Self.expectError(
                try await call(.post, "/upload", body(String(repeating: "v", count: 2000)), headers: form),
                .contentTooLarge, "UploadTooLarge")
            Self.expectError(
                try await call(.post, "/upload", body(String(repeating: "v", count: 70_000)), headers: form),
                .contentTooLarge, "UploadTooLarge")
        }
    }

    /// The session routes' answers not in ResumableUploadTests: an expired session (410) and a damaged record (502).
    @Test func uploadSessionsExpireAndDamagedRecordsAreTheStoresFault() async throws {
        try await Self.withRoutes { fixture, call in
            func open() async throws -> (session: String, video: String) {
                let created = try await call(.post, "/uploads", #"{"fileName":"a.mp4","size":1000,"resumable":true}"#)
                return (
                    try #require(created.json["sessionId"] as? String), try #require(created.json["videoId"] as? String)
                )
            }
            func rewrite(_ video: String, _ change: (inout [String: Any]) -> Void) async throws {
                let key = "\(video)/upload.json"
                let stored = try await fixture.s3.getObject(bucket: "media", key: key)
                var record = try #require(
                    try JSONSerialization.jsonObject(with: Data(stored.body.readableBytesView)) as? [String: Any])
                change(&record)
                try await fixture.s3.putObject(
                    bucket: "media", key: key,
                    body: ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: record)))
            }
            let expired = try await open()
            try await rewrite(expired.video) { $0["expiresAt"] = "2020-01-01T00:00:00Z" }
            Self.expectError(
                try await call(.post, "/uploads/\(expired.session)/parts", #"{"partNumbers":[1]}"#), .gone,
                "UploadExpired")
            // The store's multipart upload gone (aborted by its lifecycle) while the record stays: expired, not missing.
            let uploadID = try #require(UploadSessionID(expired.session)?.uploadID)
            try await fixture.s3.abortMultipartUpload(
                bucket: "ingest", key: "uploads/\(expired.video).mp4", uploadId: uploadID)
            Self.expectError(try await call(.get, "/uploads/\(expired.session)"), .gone, "UploadExpired")
            Self.expectError(try await call(.post, "/uploads/\(expired.session)/complete"), .gone, "UploadExpired")

            let damaged = try await open()
            try await rewrite(damaged.video) { record in
                var multipart = record["multipart"] as? [String: Any] ?? [:]
                multipart["partCount"] = 7
                record["multipart"] = multipart
            }
            Self.expectError(try await call(.get, "/uploads/\(damaged.session)"), .badGateway, "InvalidObject")
        }
    }

    // MARK: Videos

    @Test func getVideoFollowsThePipelinesObjects() async throws {
        try await Self.withRoutes { fixture, call in
            let s3 = fixture.s3
            try await Self.put(s3, "acme_a1/upload.json", Self.uploadRecord("acme_a1"))
            #expect(try await call(.get, "/videos/acme_a1").json["state"] as? String == "awaiting-upload")
            try await Self.put(s3, "uploads/acme_a1.mp4", "bytes", bucket: "ingest")
            #expect(try await call(.get, "/videos/acme_a1").json["state"] as? String == "probing")
            try await Self.put(
                s3, "acme_a1/metadata.json",
                #"{"videoId":"acme_a1","source":{"bucket":"ingest","key":"uploads/acme_a1.mp4"},"media":{"duration":8}}"#
            )
            let transcoding = try await call(.get, "/videos/acme_a1").json
            #expect(transcoding["state"] as? String == "transcoding" && transcoding["percent"] as? Int == 0)
            try await Self.put(
                s3, "acme_a1/status.json",
                #"{"videoId":"acme_a1","state":"failed","stage":"probe","error":{"code":"NoVideoStream","message":"none"}}"#
            )
            let failed = try await call(.get, "/videos/acme_a1").json
            #expect(
                failed["state"] as? String == "failed"
                    && (failed["error"] as? [String: Any])?["code"] as? String == "NoVideoStream")

            try await Self.seedReady(s3, "acme_r1")
            let ready = try await call(.get, "/videos/acme_r1")
            #expect(
                ready.status == .ok && ready.json["state"] as? String == "ready"
                    && ready.json["hls"] as? String == "/stream/acme_r1/master.m3u8")
            let rendition = try #require((ready.json["renditions"] as? [[String: Any]])?.first)
            #expect(
                (rendition["url"] as? String)?.contains("X-Amz-Signature=") == true
                    && rendition["stream"] as? String == "/stream/acme_r1/360p")

            Self.expectError(try await call(.get, "/videos/acme_none"), .notFound, "NoSuchVideo")
            Self.expectError(try await call(.get, "/videos/other_r1"), .notFound, "NoSuchVideo")
            Self.expectError(try await call(.get, "/videos/.hidden"), .badRequest, "InvalidVideoId")
            try await Self.put(s3, "acme_bad/status.json", "{not json")
            Self.expectError(try await call(.get, "/videos/acme_bad"), .badGateway, "InvalidObject")
        }
    }

    @Test func getVideosListsPagesOfTheTenantsVideos() async throws {
        try await Self.withRoutes { fixture, call in
            for id in ["acme_v1", "acme_v2", "acme_v3", "other_v4"] {
                try await Self.put(fixture.s3, "\(id)/upload.json", Self.uploadRecord(id))
            }
            let first = try await call(.get, "/videos?limit=2")
            #expect(first.status == .ok)
            #expect(
                (first.json["videos"] as? [[String: Any]])?.compactMap { $0["videoId"] as? String } == [
                    "acme_v1", "acme_v2",
                ])
            let cursor = try #require(first.json["nextCursor"] as? String)
            let escaped = cursor.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? cursor
            let second = try await call(.get, "/videos?limit=2&cursor=\(escaped)").json
            #expect((second["videos"] as? [[String: Any]])?.compactMap { $0["videoId"] as? String } == ["acme_v3"])
            #expect(second["nextCursor"] == nil)
            for limit in ["0", "101", "x"] {
                Self.expectError(
                    try await call(.get, "/videos?limit=\(limit)"), .badRequest, "InvalidRequest", "\(limit)")
            }
            Self.expectError(try await call(.get, "/videos?cursor=%21%21%21"), .badRequest, "InvalidCursor")
        }
    }

    @Test func deleteVideoRemovesEverythingOnce() async throws {
        try await Self.withRoutes { fixture, call in
            try await Self.seedReady(fixture.s3, "acme_d1")
            try await Self.put(fixture.s3, "uploads/acme_d1.mp4", "bytes", bucket: "ingest")
            #expect(try await call(.delete, "/videos/acme_d1").status == .noContent)
            #expect(
                try await fixture.s3.listAllObjects(bucket: "media", prefix: "acme_d1/").reduce(into: 0) { count, _ in
                    count += 1
                } == 0)
            Self.expectError(try await call(.get, "/videos/acme_d1"), .notFound, "NoSuchVideo")
            Self.expectError(try await call(.delete, "/videos/acme_d1"), .notFound, "NoSuchVideo")
            Self.expectError(try await call(.delete, "/videos/other_d1"), .notFound, "NoSuchVideo")
            Self.expectError(try await call(.delete, "/videos/a%2Fb"), .badRequest, "InvalidVideoId")
        }
    }

    @Test func postCaptionsAddsATrackOrSaysWhyNot() async throws {
        try await Self.withRoutes { fixture, call in
            let s3 = fixture.s3
            try await Self.seedReady(s3, "acme_c1")
            let vtt = "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nHello\n"
            let added = try await call(.post, "/videos/acme_c1/captions?language=en&label=English", vtt)
            #expect(
                added.status == .created && added.json["name"] as? String == "subs-1"
                    && added.json["origin"] as? String == "upload")
            let master = String(buffer: try await s3.getObject(bucket: "media", key: "acme_c1/hls/master.m3u8").body)
            #expect(master.contains("subs-1/index.m3u8"))
            let srt = "1\n00:00:01,000 --> 00:00:02,000\nHi\n"
            #expect(
                try await call(.post, "/videos/acme_c1/captions?language=pt-BR&label=Portugu%C3%AAs", srt).status
                    == .created)

            let path = "/videos/acme_c1/captions"
            Self.expectError(try await call(.post, "\(path)?language=1x&label=A", vtt), .badRequest, "InvalidLanguage")
            Self.expectError(try await call(.post, "\(path)?language=en", vtt), .badRequest, "InvalidLabel")
            Self.expectError(
                try await call(.post, "\(path)?language=en&label=A", "neither format"), .badRequest, "InvalidCaption")
            Self.expectError(
                try await call.bytes(.post, "\(path)?language=en&label=A", ByteBuffer(bytes: [0xFF, 0xFE, 0x00])),
                .badRequest, "InvalidCaption")
            Self.expectError(
                try await call(
                    .post, "\(path)?language=en&label=A", String(repeating: "x", count: 2 * 1024 * 1024 + 1)),
                .contentTooLarge, "CaptionTooLarge")
            Self.expectError(
                try await call(.post, "/videos/acme_nope/captions?language=en&label=A", vtt), .notFound, "NoSuchVideo")
            try await Self.put(s3, "acme_c2/upload.json", Self.uploadRecord("acme_c2"))
            Self.expectError(
                try await call(.post, "/videos/acme_c2/captions?language=en&label=A", vtt), .conflict, "VideoNotReady")
            try await Self.seedReady(s3, "acme_c3", hls: false)
            Self.expectError(
                try await call(.post, "/videos/acme_c3/captions?language=en&label=A", vtt), .conflict, "NoHLS")
            try await Self.seedReady(s3, "acme_c4", captions: 32)
            Self.expectError(
                try await call(.post, "/videos/acme_c4/captions?language=en&label=A", vtt), .conflict, "TooManyCaptions"
            )
        }
    }

    // MARK: Keys, playback keys, webhooks

    @Test func keysRoutesAnswerAndRefuse() async throws {
        try await Self.withRoutes { _, call in
            let created = try await call(.post, "/keys", #"{"name":"ci","scopes":["read"]}"#)
            #expect(created.status == .created && (created.json["token"] as? String)?.hasPrefix("cs_") == true)
            let id = try #require((created.json["key"] as? [String: Any])?["id"] as? String)
            let listed = try await call(.get, "/keys")
            #expect(listed.status == .ok && (listed.json["keys"] as? [[String: Any]])?.count == 2)
            Self.expectError(
                try await call(.post, "/keys", #"{"scopes":["everything"]}"#), .badRequest, "InvalidRequest")
            Self.expectError(try await call(.post, "/keys", "[]"), .badRequest, "InvalidRequest")
            #expect(try await call(.delete, "/keys/\(id)").status == .noContent)
            Self.expectError(try await call(.delete, "/keys/knope"), .notFound, "NoSuchKey")
        }
    }

    @Test func playbackKeysRoutesAnswerAndRefuse() async throws {
        try await Self.withRoutes { _, call in
            let created = try await call(.post, "/playback-keys", #"{"algorithm":"HS256"}"#)
            #expect(created.status == .created && created.json["secret"] is String)
            let id = try #require((created.json["key"] as? [String: Any])?["id"] as? String)
            let listed = try await call(.get, "/playback-keys")
            #expect(listed.status == .ok && !listed.text.contains(created.json["secret"] as? String ?? "?"))
            for body in [
                #"{"algorithm":"ES256"}"#, #"{"algorithm":"HS256","publicKey":"x"}"#, #"{"algorithm":"RS256"}"#,
                "nonsense",
            ] {
                Self.expectError(
                    try await call(.post, "/playback-keys", body), .badRequest, "InvalidRequest", "\(body)")
            }
            #expect(try await call(.delete, "/playback-keys/\(id)").status == .noContent)
            Self.expectError(try await call(.delete, "/playback-keys/\(id)x"), .notFound, "NoSuchKey")
        }
    }

    @Test func webhooksRoutesAnswerAndRefuse() async throws {
        try await Self.withRoutes({ $0.webhooksMayReachPrivateAddresses = true }) { _, call in
            let created = try await call(
                .post, "/webhooks", #"{"url":"http://127.0.0.1:9/hook","events":["video.created"]}"#)
            #expect(created.status == .created && created.json["secret"] is String)
            let id = try #require((created.json["webhook"] as? [String: Any])?["id"] as? String)
            #expect((try await call(.get, "/webhooks").json["webhooks"] as? [[String: Any]])?.count == 1)
            // An upload's video.created is a delivery of the endpoint, which can be sent again.
            #expect(try await call(.post, "/uploads").status == .created)
            let deliveries = try await call(.get, "/webhooks/\(id)/deliveries")
            let delivery = try #require((deliveries.json["deliveries"] as? [[String: Any]])?.first)
            #expect(delivery["type"] as? String == "video.created")
            let deliveryID = try #require(delivery["id"] as? String)
            #expect(try await call(.post, "/webhooks/\(id)/deliveries/\(deliveryID)/resend").status == .accepted)

            Self.expectError(try await call(.post, "/webhooks", "{}"), .badRequest, "InvalidRequest")
            Self.expectError(
                try await call(.post, "/webhooks", #"{"url":"ftp://x/y","events":["video.ready"]}"#), .badRequest,
                "InvalidWebhookURL")
            Self.expectError(try await call(.get, "/webhooks/\(id)/deliveries?limit=0"), .badRequest, "InvalidRequest")
            Self.expectError(try await call(.get, "/webhooks/wnope/deliveries"), .notFound, "NoSuchWebhook")
            Self.expectError(
                try await call(.post, "/webhooks/\(id)/deliveries/dnope/resend"), .notFound, "NoSuchDelivery")
            #expect(try await call(.delete, "/webhooks/\(id)").status == .noContent)
            Self.expectError(try await call(.delete, "/webhooks/\(id)"), .notFound, "NoSuchWebhook")
        }
    }

    // MARK: Streaming

    @Test func streamRoutesRedirectAndRewriteOrSayWhyNot() async throws {
        try await Self.withRoutes { fixture, call in
            let s3 = fixture.s3
            try await Self.seedReady(s3, "acme_s1")
            let anyone = Caller(client: call.client, token: nil)
            let mp4 = try await anyone(.get, "/stream/acme_s1/360p")
            #expect(mp4.status == .found && mp4.headers[.location]?.contains("acme_s1/360p.mp4?") == true)
            #expect(try await anyone(.get, "/stream/acme_s1/360p.mp4").status == .found)
            #expect(try await anyone(.get, "/stream/acme_s1/thumbnail.jpg").status == .found)
            let master = try await anyone(.get, "/stream/acme_s1/master.m3u8")
            #expect(master.status == .ok && master.headers[.contentType] == "application/vnd.apple.mpegurl")
            let mediaURI = try #require(master.text.split(separator: "\n").first { $0.hasPrefix("360p/index.m3u8?") })
            let media = try await anyone(.get, "/stream/acme_s1/\(mediaURI)")
            #expect(
                media.status == .ok && media.text.contains("X-Amz-Signature=")
                    && media.text.contains("#EXT-X-MAP:URI=\"http"))
            let dash = try await anyone(.get, "/stream/acme_s1/manifest.mpd")
            #expect(dash.status == .ok && dash.headers[.contentType] == "application/dash+xml")

            Self.expectError(try await anyone(.get, "/stream/acme_s1/1080p"), .badRequest, "InvalidResolution")
            Self.expectError(try await anyone(.get, "/stream/acme_s1/audio.m4a"), .notFound, "NoSuchRendition")
            Self.expectError(try await anyone(.get, "/stream/acme_s1/storyboard.vtt"), .notFound, "NoSuchThumbnail")
            Self.expectError(try await anyone(.get, "/stream/acme_s1/storyboard.jpg"), .notFound, "NoSuchThumbnail")
            Self.expectError(try await anyone(.get, "/stream/acme_none/360p"), .notFound, "NoSuchVideo")
            Self.expectError(try await anyone(.get, "/stream/..x/360p"), .badRequest, "InvalidVideoId")
            try await Self.seedReady(s3, "acme_s2", hls: false, thumbnails: false)
            Self.expectError(try await anyone(.get, "/stream/acme_s2/master.m3u8"), .notFound, "NoSuchPlaylist")
            Self.expectError(try await anyone(.get, "/stream/acme_s2/thumbnail.jpg"), .notFound, "NoSuchThumbnail")
            try await Self.seedReady(
                s3, "acme_s3", master: "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhttp://elsewhere.example/x.m3u8\n")
            Self.expectError(try await anyone(.get, "/stream/acme_s3/master.m3u8"), .badGateway, "InvalidPlaylist")
            try await fixture.s3.deleteObject(bucket: "media", key: "acme_s1/hls/360p/index.m3u8")
            Self.expectError(try await anyone(.get, "/stream/acme_s1/manifest.mpd"), .notFound, "NoSuchPlaylist")
            try await Self.put(s3, "acme_s4/upload.json", Self.uploadRecord("acme_s4"))
            try await Self.put(s3, "acme_s4/status.json", #"{"videoId":"acme_s4","state":"transcoding","percent":5}"#)
            Self.expectError(try await anyone(.get, "/stream/acme_s4/360p"), .conflict, "VideoNotReady")
            Self.expectError(try await anyone(.get, "/stream/acme_s4/master.m3u8"), .conflict, "VideoNotReady")
        }
    }

    @Test func signedAndOriginBoundVideosNeedTheirTokenAndOrigin() async throws {
        try await Self.withRoutes { fixture, call in
            try await Self.seedReady(fixture.s3, "acme_p1", policy: "signed")
            try await Self.seedReady(fixture.s3, "acme_o1", origins: ["https://app.example"])
            let anyone = Caller(client: call.client, token: nil)
            Self.expectError(try await anyone(.get, "/stream/acme_p1/360p"), .forbidden, "PlaybackTokenRequired")
            Self.expectError(
                try await anyone(.get, "/stream/acme_p1/360p?token=not.a.token"), .forbidden, "InvalidPlaybackToken")
            let created = try await call(.post, "/playback-keys", #"{"algorithm":"HS256"}"#)
            let kid = try #require((created.json["key"] as? [String: Any])?["id"] as? String)
            var base64 = (created.json["secret"] as? String ?? "").replacingOccurrences(of: "-", with: "+")
                .replacingOccurrences(of: "_", with: "/")
            base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
            let secret = try #require(Data(base64Encoded: base64))
            func token(_ claims: String) -> String {
                let header = Base64URL.encode(Array(#"{"alg":"HS256","kid":"\#(kid)","typ":"JWT"}"#.utf8))
                let input = header + "." + Base64URL.encode(Array(claims.utf8))
                let mac = HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: SymmetricKey(data: secret))
                return input + "." + Base64URL.encode(Array(mac))
            }
            let now = Int(Date().timeIntervalSince1970)
            #expect(
                try await anyone(.get, "/stream/acme_p1/360p?token=\(token(#"{"sub":"acme_p1","exp":\#(now + 600)}"#))")
                    .status == .found)
            Self.expectError(
                try await anyone(
                    .get, "/stream/acme_p1/360p?token=\(token(#"{"sub":"acme_p1","exp":\#(now - 600)}"#))"), .forbidden,
                "ExpiredPlaybackToken")
            Self.expectError(
                try await anyone(
                    .get, "/stream/acme_p1/360p?token=\(token(#"{"sub":"acme_o1","exp":\#(now + 600)}"#))"), .forbidden,
                "InvalidPlaybackToken")
            Self.expectError(
                try await anyone(
                    .get, "/stream/acme_p1/thumbnail.jpg?token=\(token(#"{"sub":"acme_p1","exp":\#(now + 600)}"#))"),
                .forbidden, "InvalidPlaybackToken")

            Self.expectError(try await anyone(.get, "/stream/acme_o1/360p"), .forbidden, "OriginNotAllowed")
            Self.expectError(
                try await anyone(.get, "/stream/acme_o1/360p", headers: [.origin: "https://evil.example"]), .forbidden,
                "OriginNotAllowed")
            #expect(
                try await anyone(.get, "/stream/acme_o1/360p", headers: [.origin: "https://app.example"]).status
                    == .found)
            #expect(
                try await anyone(.get, "/stream/acme_o1/360p", headers: [.referer: "https://app.example/watch"]).status
                    == .found)
        }
    }

    @Test func mediaPlaylistsAndHeldSegmentsCheckTheirSignatures() async throws {
        try await Self.withRoutes({ $0.segmentHoldSeconds = 0 }) { fixture, call in
            try await Self.seedReady(fixture.s3, "acme_m1")
            let anyone = Caller(client: call.client, token: nil)
            let signer = fixture.api.signer
            let later = Int(Date().timeIntervalSince1970) + 600
            let earlier = Int(Date().timeIntervalSince1970) - 600
            func signed(_ path: String, _ expires: Int) -> String {
                "\(path)?\(signer.query(path: path, expires: expires))"
            }

            let playlist = "/stream/acme_m1/360p/index.m3u8"
            #expect(try await anyone(.get, signed(playlist, later)).status == .ok)
            Self.expectError(try await anyone(.get, playlist), .forbidden, "InvalidSignature")
            Self.expectError(try await anyone(.get, signed(playlist, earlier)), .forbidden, "ExpiredURL")
            Self.expectError(
                try await anyone(.get, signed("/stream/acme_m1/999p/index.m3u8", later)), .badRequest,
                "InvalidResolution")
            Self.expectError(
                try await anyone(.get, signed("/stream/acme_m9/360p/index.m3u8", later)), .notFound, "NoSuchVideo")

            let segment = "/stream/acme_m1/360p/seg-00001.m4s"
            Self.expectError(try await anyone(.get, segment), .forbidden, "InvalidSignature")
            Self.expectError(try await anyone(.get, signed(segment, earlier)), .forbidden, "ExpiredURL")
            Self.expectError(
                try await anyone(.get, signed("/stream/acme_m1/360p/notes.txt", later)), .notFound, "NoSuchSegment")
            let waiting = try await anyone(.get, signed(segment, later))
            Self.expectError(waiting, .serviceUnavailable, "SegmentNotReady")
            #expect(waiting.headers[.retryAfter] == "1")
            try await Self.put(fixture.s3, "acme_m1/hls/360p/seg-00001.m4s", "segment")
            let ready = try await anyone(.get, signed(segment, later))
            #expect(ready.status == .found && ready.headers[.location]?.contains("seg-00001.m4s?") == true)
        }
    }

    // MARK: The page, preflights, the server's own failures

    @Test func thePageAndEveryPreflightAnswer() async throws {
        try await Self.withRoutes({ $0.corsOrigins = ["https://app.example"] }) { _, call in
            let anyone = Caller(client: call.client, token: nil)
            for path in ["/", "/index.html"] {
                let page = try await anyone(.get, path)
                #expect(page.status == .ok && page.headers[.contentType]?.hasPrefix("text/html") == true, "\(path)")
            }
            for (path, methods) in [
                ("/uploads", "POST"), ("/uploads/acme_1.eA", "GET, DELETE"), ("/uploads/acme_1.eA/parts", "POST"),
                ("/uploads/acme_1.eA/complete", "POST"), ("/upload", "POST"), ("/videos", "GET"),
                ("/videos/acme_1", "GET, DELETE"),
                ("/videos/acme_1/captions", "POST"), ("/keys", "GET, POST"), ("/keys/k1", "DELETE"),
                ("/webhooks", "GET, POST"),
                ("/webhooks/w1", "DELETE"), ("/webhooks/w1/deliveries", "GET"),
                ("/webhooks/w1/deliveries/d1/resend", "POST"),
                ("/playback-keys", "GET, POST"), ("/playback-keys/p1", "DELETE"), ("/stream/acme_1/360p", "GET"),
                ("/stream/acme_1/360p/index.m3u8", "GET"), ("/stream/acme_1/360p/seg-00000.m4s", "GET"),
            ] {
                let answer = try await anyone(
                    .options, path, headers: [.origin: "https://app.example", .accessControlRequestMethod: "GET"])
                #expect(answer.status == .noContent && answer.headers[.accessControlAllowMethods] == methods, "\(path)")
            }
            // Errors carry the CORS headers too, and expose the request id and Retry-After to the page.
            let refused = try await anyone(.get, "/videos", headers: [.origin: "https://app.example"])
            #expect(
                refused.status == .unauthorized && refused.headers[.accessControlAllowOrigin] == "https://app.example")
            #expect(refused.headers[.accessControlExposeHeaders]?.contains("X-Request-Id") == true)
        }
    }

    /// The server's own failures: the store (502), the key store (503), anything else (500 "internal error"):
    /// only a request id, also in `X-Request-Id`, and nothing of the failure's text.
    @Test func theServersOwnFailuresAnswerOnlyARequestId() async throws {
        // A configured part size over S3's largest: the server's fault, not the request's.
        try await Self.withRoutes({ $0.resumablePartSize = 6 << 30 }) { _, call in
            Self.expectServerFault(
                try await call(.post, "/uploads", #"{"size":1000,"resumable":true}"#), .internalServerError,
                "InternalError")
        }
        try await ResumableRouteTests.withAPI { api, s3, keys in
            let token = try await keys.create(tenant: "acme", name: "", scopes: [.read, .upload]).token
            // A store without the media bucket: every read of it fails.
            var missing = api.configuration
            missing.mediaBucket = "missing"
            let storeless = ProductAPI(configuration: missing, s3: s3, presigner: s3, keys: keys, logger: api.logger)
            try await ResumableRouteTests.application(storeless).test(.router) { client in
                let call = Caller(client: client, token: token)
                Self.expectServerFault(try await call(.get, "/videos"), .badGateway, "StoreError")
                Self.expectServerFault(try await call(.get, "/videos/acme_1"), .badGateway, "StoreError")
            }
            // A key store that cannot be read.
            let keyless = ProductAPI(
                configuration: api.configuration, s3: s3, presigner: s3, keys: FailingKeyStore(keys), logger: api.logger
            )
            try await ResumableRouteTests.application(keyless).test(.router) { client in
                let call = Caller(client: client, token: token)
                Self.expectServerFault(try await call(.get, "/videos"), .serviceUnavailable, "KeyStoreUnavailable")
                Self.expectServerFault(try await call(.get, "/keys"), .serviceUnavailable, "KeyStoreUnavailable")
            }
        }
    }
}

/// A key store whose database cannot be read: every lookup fails as the SQLite store's would.
struct FailingKeyStore: APIKeyStore, PlaybackKeyStore, WebhookStore {
    let base: SQLiteAPIKeyStore
    init(_ base: SQLiteAPIKeyStore) { self.base = base }

    func create(tenant: String, name: String, scopes: [Scope]) async throws -> (key: APIKey, token: String) {
        throw Self.failure
    }
    func list(tenant: String?) async throws -> [APIKey] { throw Self.failure }
    func revoke(id: String, tenant: String?) async throws -> Bool { throw Self.failure }
    func authenticate(token: String) async throws -> APIKey? { throw Self.failure }
    static let failure = APIKeyError(.storage, "SQLite: disk I/O error at /tmp/keys.sqlite")

    func addPlaybackKey(_ key: PlaybackKey) async throws { try await base.addPlaybackKey(key) }
    func playbackKeys(tenant: String) async throws -> [PlaybackKey] { try await base.playbackKeys(tenant: tenant) }
    func playbackKey(id: String) async throws -> PlaybackKey? { try await base.playbackKey(id: id) }
    func revokePlaybackKey(id: String, tenant: String) async throws -> Bool {
        try await base.revokePlaybackKey(id: id, tenant: tenant)
    }
    func addEndpoint(_ endpoint: WebhookEndpoint) async throws { try await base.addEndpoint(endpoint) }
    func endpoints(tenant: String) async throws -> [WebhookEndpoint] { try await base.endpoints(tenant: tenant) }
    func removeEndpoint(id: String, tenant: String) async throws -> Bool {
        try await base.removeEndpoint(id: id, tenant: tenant)
    }
    func enqueue(tenant: String, eventID: String, type: String, body: [UInt8], at: Date) async throws -> Int {
        try await base.enqueue(tenant: tenant, eventID: eventID, type: type, body: body, at: at)
    }
    func claimDue(now: Date, lease: TimeInterval, limit: Int) async throws -> [(WebhookDelivery, WebhookEndpoint)] {
        try await base.claimDue(now: now, lease: lease, limit: limit)
    }
    func record(_ attempt: WebhookAttempt, delivery id: String, at: Date) async throws {
        try await base.record(attempt, delivery: id, at: at)
    }
    func deliveries(endpoint: String, tenant: String, limit: Int) async throws -> [WebhookDelivery] {
        try await base.deliveries(endpoint: endpoint, tenant: tenant, limit: limit)
    }
    func resend(delivery id: String, endpoint: String, tenant: String, at: Date) async throws -> Bool {
        try await base.resend(delivery: id, endpoint: endpoint, tenant: tenant, at: at)
    }
    func pruneDeliveries(endedBefore cutoff: Date) async throws -> Int {
        try await base.pruneDeliveries(endedBefore: cutoff)
    }
}
