import APIKeys
import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import ObjectStore
import S3Client
import S3Server
import ServiceLifecycle
import SigV4
import Testing

@testable import ProductAPI

@Suite("Resumable uploads: the plan and the session id")
struct ResumablePlanTests {
    static let mib: Int64 = 1 << 20

    @Test func partSizesFitTheFileInTenThousandPartsOfWholeMebibytesAtLeastTheMinimum() throws {
        let one = try PartPlan(size: 1, minimumPartSize: 8 * Self.mib)
        #expect(one.partSize == 8 * Self.mib && one.partCount == 1 && one.length(ofPart: 1) == 1)
        let gigabyte = try PartPlan(size: 1_000_000_000, minimumPartSize: 8 * Self.mib)
        #expect(gigabyte.partSize == 8 * Self.mib && gigabyte.partCount == 120)
        #expect(
            gigabyte.length(ofPart: 119) == 8 * Self.mib
                && gigabyte.length(ofPart: 120) == 1_000_000_000 - 119 * 8 * Self.mib)
        // 100 GiB: 8 MiB would need 12 800 parts; ⌈100 GiB / 10 000⌉ rounded up to whole MiB is 11 MiB.
        let large = try PartPlan(size: 100 << 30, minimumPartSize: 8 * Self.mib)
        #expect(large.partSize == 11 * Self.mib && large.partCount == 9_310)
        // S3's largest object: 525 MiB parts, 9 987 of them.
        let largest = try PartPlan(size: 5 << 40, minimumPartSize: 8 * Self.mib)
        #expect(largest.partSize == 525 * Self.mib && largest.partCount == 9_987)
        #expect(try PartPlan(size: 100 * Self.mib, minimumPartSize: 16 * Self.mib).partCount == 7)
        // Never under S3's 5 MiB, whatever is configured.
        #expect(try PartPlan(size: 100 * Self.mib, minimumPartSize: 1).partSize == 5 * Self.mib)

        for size: Int64 in [
            1, 5 * Self.mib, 8 * Self.mib - 1, 8 * Self.mib, 8 * Self.mib + 1, 80_000 * Self.mib + 7, 1 << 40,
            (5 << 40) - 1,
        ] {
            let plan = try PartPlan(size: size, minimumPartSize: 8 * Self.mib)
            #expect(plan.partCount <= 10_000 && plan.partSize >= 8 * Self.mib && plan.partSize % Self.mib == 0)
            #expect(plan.partSize <= 5 << 30)
            let last = plan.length(ofPart: plan.partCount)
            #expect((1...plan.partSize).contains(last), "\(size)")
            #expect(plan.partSize * Int64(plan.partCount - 1) + last == size, "\(size)")
        }
        #expect(throws: APIError.self) { try PartPlan(size: 0, minimumPartSize: 8 * Self.mib) }
        let tooLarge = #expect(throws: APIError.self) {
            try PartPlan(size: (5 << 40) + 1, minimumPartSize: 8 * Self.mib)
        }
        #expect(tooLarge?.status == 413 && tooLarge?.code == "UploadTooLarge")
    }

    @Test func theSessionIDNamesTheVideoAndTheUploadAndRefusesAnythingElse() {
        for upload in ["2~xyz", "VXBsb2FkIElE+/=.-_", "ü", String(repeating: "a", count: 300)] {
            let id = UploadSessionID(videoID: "acme_0123abcd", uploadID: upload)
            #expect(id.string.hasPrefix("acme_0123abcd."))
            #expect(!id.string.contains("/") && !id.string.contains("+") && !id.string.contains("="))
            #expect(UploadSessionID(id.string) == id)
        }
        let dotted = UploadSessionID(videoID: "a.b_c", uploadID: "x")
        #expect(UploadSessionID(dotted.string) == dotted)
        for bad in [
            "", "acme_1", "acme_1.", ".eA", "acme_1.eA==", "acme_1.e", "ac/me.eA", "acme_1.e!A",
            String(repeating: "a", count: 1030) + ".eA",
        ] {
            #expect(UploadSessionID(bad) == nil, "\(bad)")
        }
    }
}

/// The routes against a real store in process (the S3Server target on 127.0.0.1 and a free port), parts PUT
/// by AsyncHTTPClient to the presigned URLs the API hands out.
@Suite("Resumable upload routes", .serialized)
struct ResumableRouteTests {
    static let credentials = Credentials(accessKeyId: "AKIDRESUMABLE", secretAccessKey: "resumable/test+secret")
    static let mib = 1 << 20

    /// A store, the two buckets, and the API over it; `body` gets the API, its S3 client and the keys.
    static func withAPI(
        _ tune: (inout ProductConfiguration) -> Void = { _ in },
        _ body: @Sendable (ProductAPI, S3Client, SQLiteAPIKeyStore) async throws -> Void
    ) async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(
            "cinescale-resumable-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: root) }
        var logger = Logger(label: "test.resumable")
        logger.logLevel = .warning
        let store = try await ObjectStore(
            configuration: ObjectStoreConfiguration(root: "\(root)/store", fsync: false), logger: logger)
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = S3Server.makeApplication(
            store: store, configuration: S3ServerConfiguration(credentials: [credentials]), port: 0, logger: logger,
            onRunning: { portContinuation.yield($0) })
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        var configuration = ProductConfiguration(
            resumableThreshold: 10 * Int64(mib), resumablePartSize: 5 * Int64(mib), signingSecret: Array("secret".utf8))
        tune(&configuration)
        let fixed = configuration
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            do {
                let s3 = S3Client(
                    configuration: S3ClientConfiguration(
                        endpoint: URL(string: "http://127.0.0.1:\(port)")!, credentials: credentials))
                try await s3.createBucket(fixed.ingestBucket)
                try await s3.createBucket(fixed.mediaBucket)
                let keys = try SQLiteAPIKeyStore(path: "\(root)/keys.sqlite")
                let api = ProductAPI(configuration: fixed, s3: s3, presigner: s3, keys: keys, logger: logger)
                try await body(api, s3, keys)
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }

    static func application(_ api: ProductAPI) -> some ApplicationProtocol {
        let router = Router()
        api.addRoutes(to: router)
        return Application(router: router)
    }

    static func json(_ buffer: ByteBuffer) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) as? [String: Any] ?? [:]
    }

    static func code(_ buffer: ByteBuffer) -> String? { (json(buffer)["error"] as? [String: Any])?["code"] as? String }

    static func put(_ url: String, _ bytes: [UInt8]) async throws -> Int {
        var request = HTTPClientRequest(url: url)
        request.method = .PUT
        request.headers.add(name: "Content-Length", value: String(bytes.count))
        request.body = .bytes(ByteBuffer(bytes: bytes))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        _ = try await response.body.collect(upTo: 1 << 20)
        return Int(response.status.code)
    }

    @Test func aSessionIsOpenedResumedCompletedAndItsErrorsAreTheAPIs() async throws {
        try await Self.withAPI { api, s3, keys in
            let token = try await keys.create(tenant: "acme", name: "", scopes: [.upload, .read, .delete]).token
            let other = try await keys.create(tenant: "other", name: "", scopes: [.upload]).token
            let auth: HTTPFields = [.authorization: "Bearer \(token)", .contentType: "application/json"]
            let size = 12 * Self.mib + 5
            let file = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 13) }
            try await Self.application(api).test(.router) { client in
                // Small files still get one PUT; `resumable` forces either.
                let small = try await client.execute(
                    uri: "/uploads", method: .post, headers: auth,
                    body: ByteBuffer(string: #"{"fileName":"s.mp4","size":1000}"#))
                #expect(small.status == .created && Self.json(small.body)["uploadUrl"] != nil)
                let forced = try await client.execute(
                    uri: "/uploads", method: .post, headers: auth,
                    body: ByteBuffer(string: #"{"fileName":"s.mp4","size":1000,"resumable":true}"#))
                #expect(forced.status == .created && Self.json(forced.body)["partCount"] as? Int == 1)

                let created = try await client.execute(
                    uri: "/uploads", method: .post, headers: auth,
                    body: ByteBuffer(string: #"{"fileName":"big.mp4","size":\#(size)}"#))
                #expect(created.status == .created)
                let session = Self.json(created.body)
                let sessionID = try #require(session["sessionId"] as? String)
                let videoID = try #require(session["videoId"] as? String)
                #expect(session["partSize"] as? Int == 5 * Self.mib && session["partCount"] as? Int == 3)
                #expect(session["session"] as? String == "/uploads/\(sessionID)" && session["uploadUrl"] == nil)
                let parts = try #require(session["parts"] as? [[String: Any]])
                #expect(parts.map { $0["partNumber"] as? Int } == [1, 2, 3])
                #expect(parts.map { $0["size"] as? Int } == [5 * Self.mib, 5 * Self.mib, 2 * Self.mib + 5])
                let urls = parts.compactMap { $0["url"] as? String }
                func slice(_ number: Int) -> [UInt8] {
                    Array(file[((number - 1) * 5 * Self.mib)..<min(size, number * 5 * Self.mib)])
                }
                // The multipart upload is at the key one PUT would have used.
                let source = try #require(session["source"] as? [String: Any])
                #expect(source["key"] as? String == "uploads/\(videoID).mp4")

                #expect(try await Self.put(urls[0], slice(1)) == 200)
                #expect(try await Self.put(urls[2], slice(3)) == 200)
                // The URL signs the part's length: another length is refused by the store.
                #expect(try await Self.put(urls[1], Array(slice(2).dropLast())) == 403)

                try await client.execute(uri: "/uploads/\(sessionID)", method: .get, headers: auth) { response in
                    let view = Self.json(response.body)
                    #expect(response.status == .ok && view["state"] as? String == "open")
                    #expect((view["parts"] as? [[String: Any]])?.map { $0["partNumber"] as? Int } == [1, 3])
                    #expect(view["missingParts"] as? [Int] == [2])
                    #expect(view["storedBytes"] as? Int == 7 * Self.mib + 5)
                }
                try await client.execute(uri: "/uploads/\(sessionID)/complete", method: .post, headers: auth) {
                    response in
                    #expect(response.status == .conflict && Self.code(response.body) == "IncompleteUpload")
                }
                for (body, code) in [
                    (#"{"partNumbers":[4]}"#, "InvalidPartNumber"), (#"{"partNumbers":[0]}"#, "InvalidPartNumber"),
                    (#"{"partNumbers":[]}"#, "InvalidRequest"), ("nonsense", "InvalidRequest"),
                ] {
                    try await client.execute(
                        uri: "/uploads/\(sessionID)/parts", method: .post, headers: auth, body: ByteBuffer(string: body)
                    ) {
                        #expect($0.status == .badRequest && Self.code($0.body) == code, "\(body)")
                    }
                }
                let minted = try await client.execute(
                    uri: "/uploads/\(sessionID)/parts", method: .post, headers: auth,
                    body: ByteBuffer(string: #"{"partNumbers":[2,2]}"#))
                let fresh = try #require(
                    (Self.json(minted.body)["parts"] as? [[String: Any]])?.compactMap { $0["url"] as? String })
                #expect(fresh.count == 1)
                #expect(try await Self.put(fresh[0], slice(2)) == 200)

                // Another tenant does not see the session; a read-only key may not touch it.
                try await client.execute(
                    uri: "/uploads/\(sessionID)", method: .get, headers: [.authorization: "Bearer \(other)"]
                ) {
                    #expect($0.status == .notFound && Self.code($0.body) == "NoSuchUpload")
                }
                // A forged pairing of this video with another upload id is unknown too.
                let forged = UploadSessionID(videoID: videoID, uploadID: "not-its-upload").string
                try await client.execute(uri: "/uploads/\(forged)", method: .get, headers: auth) {
                    #expect($0.status == .notFound)
                }

                try await client.execute(
                    uri: "/uploads/\(sessionID)/complete", method: .post, headers: auth,
                    body: ByteBuffer(
                        string:
                            #"{"parts":[{"partNumber":1,"etag":"x"},{"partNumber":2,"etag":"y"},{"partNumber":3,"etag":"z"}]}"#
                    )
                ) { #expect($0.status == .badRequest && Self.code($0.body) == "InvalidPart") }
                try await client.execute(uri: "/uploads/\(sessionID)/complete", method: .post, headers: auth) {
                    response in
                    #expect(response.status == .ok && Self.json(response.body)["state"] as? String == "completed")
                }
                let stored = try await s3.getObject(bucket: "ingest", key: "uploads/\(videoID).mp4")
                #expect(Array(buffer: stored.body) == file && stored.head.contentType == "video/mp4")
                // Completing again answers the same (a client whose answer was lost retries); the session reads completed.
                try await client.execute(uri: "/uploads/\(sessionID)/complete", method: .post, headers: auth) {
                    #expect($0.status == .ok)
                }
                try await client.execute(uri: "/uploads/\(sessionID)", method: .get, headers: auth) {
                    #expect(Self.json($0.body)["state"] as? String == "completed")
                }
                try await client.execute(uri: "/uploads/\(sessionID)", method: .delete, headers: auth) {
                    #expect($0.status == .conflict && Self.code($0.body) == "UploadCompleted")
                }
                try await client.execute(uri: "/videos/\(videoID)", method: .get, headers: auth) {
                    #expect(Self.json($0.body)["state"] as? String == "probing")
                }

                // Aborted: the parts and the video go.
                let second = Self.json(
                    try await client.execute(
                        uri: "/uploads", method: .post, headers: auth,
                        body: ByteBuffer(string: #"{"fileName":"b.mp4","size":\#(size)}"#)
                    ).body)
                let secondID = try #require(second["sessionId"] as? String)
                try await client.execute(uri: "/uploads/\(secondID)", method: .delete, headers: auth) {
                    #expect($0.status == .noContent)
                }
                try await client.execute(uri: "/uploads/\(secondID)", method: .get, headers: auth) {
                    #expect($0.status == .notFound && Self.code($0.body) == "NoSuchUpload")
                }
                try await client.execute(
                    uri: "/videos/\(second["videoId"] as? String ?? "")", method: .get, headers: auth
                ) {
                    #expect($0.status == .notFound)
                }
                #expect(try await s3.listAllMultipartUploads(bucket: "ingest").count == 1)  // the forced one above
                // Deleting the video of an open session aborts its multipart upload too.
                let forcedVideo = try #require(Self.json(forced.body)["videoId"] as? String)
                try await client.execute(uri: "/videos/\(forcedVideo)", method: .delete, headers: auth) {
                    #expect($0.status == .noContent)
                }
                #expect(try await s3.listAllMultipartUploads(bucket: "ingest").isEmpty)
            }
        }
    }

    @Test func errorsBeforeTheStore() async throws {
        try await Self.withAPI { api, _, keys in
            let token = try await keys.create(tenant: "acme", name: "", scopes: [.upload]).token
            let reader = try await keys.create(tenant: "acme", name: "", scopes: [.read]).token
            let auth: HTTPFields = [.authorization: "Bearer \(token)"]
            try await Self.application(api).test(.router) { client in
                for (body, status, code) in [
                    (#"{"resumable":true}"#, HTTPResponse.Status.badRequest, "InvalidRequest"),
                    (#"{"resumable":false,"size":6442450944}"#, .badRequest, "InvalidRequest"),
                    (#"{"size":21474836481}"#, .contentTooLarge, "UploadTooLarge"),
                ] {
                    try await client.execute(
                        uri: "/uploads", method: .post, headers: auth, body: ByteBuffer(string: body)
                    ) {
                        #expect($0.status == status && Self.code($0.body) == code, "\(body)")
                    }
                }
                for path in ["/uploads/nonsense", "/uploads/acme_1.!!", "/uploads/other_0123.eA"] {
                    try await client.execute(uri: path, method: .get, headers: auth) {
                        #expect($0.status == .notFound && Self.code($0.body) == "NoSuchUpload", "\(path)")
                    }
                }
                for (method, path) in [
                    (HTTPRequest.Method.get, "/uploads/acme_1.eA"), (.delete, "/uploads/acme_1.eA"),
                    (.post, "/uploads/acme_1.eA/parts"),
                    (.post, "/uploads/acme_1.eA/complete"),
                ] {
                    try await client.execute(uri: path, method: method, headers: [.authorization: "Bearer \(reader)"]) {
                        #expect($0.status == .forbidden, "\(method) \(path)")
                    }
                    try await client.execute(uri: path, method: method) { #expect($0.status == .unauthorized) }
                }
            }
        }
    }

    @Test func theJanitorAbortsSessionsOlderThanTheExpiryOnly() async throws {
        try await Self.withAPI({ $0.resumableExpiry = 3600 }) { api, s3, keys in
            let token = try await keys.create(tenant: "acme", name: "", scopes: [.upload]).token
            try await Self.application(api).test(.router) { client in
                for _ in 0..<2 {
                    try await client.execute(
                        uri: "/uploads", method: .post, headers: [.authorization: "Bearer \(token)"],
                        body: ByteBuffer(string: #"{"fileName":"a.mp4","size":20000000}"#)
                    ) { #expect($0.status == .created) }
                }
            }
            let other = try await s3.createMultipartUpload(bucket: "ingest", key: "elsewhere/x.mp4")
            let janitor = api.makeUploadJanitor()
            #expect(janitor.interval == .seconds(360))
            #expect(await janitor.sweep(now: Date()) == 0)
            #expect(await janitor.sweep(now: Date().addingTimeInterval(3601)) == 2)
            // Only the API's own (under the uploads prefix) are its business.
            #expect(try await s3.listAllMultipartUploads(bucket: "ingest").map(\.uploadId) == [other])
        }
    }
}
