import APIKeys
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import S3Client
import SigV4
import Testing

@testable import ProductAPI

/// The product API's routes in process (HummingbirdTesting's router test client): authentication, scopes,
/// the keys routes and what a failure of the store looks like to a client. The store is an address where
/// nothing listens: every route here either answers before the store or shows how its failure is reported.
@Suite("Product API routes")
struct RouteTests {
    let directory: String
    let keys: SQLiteAPIKeyStore

    init() throws {
        directory =
            FileManager.default.temporaryDirectory.appendingPathComponent("cinescale-routes-\(UUID().uuidString)").path
        keys = try SQLiteAPIKeyStore(path: "\(directory)/keys.sqlite")
    }

    func app(_ configuration: ProductConfiguration = ProductConfiguration(signingSecret: Array("secret".utf8)))
        -> some ApplicationProtocol
    {
        var retry = S3RetryPolicy.default
        retry.maxAttempts = 1
        let s3 = S3Client(
            configuration: S3ClientConfiguration(
                endpoint: URL(string: "http://127.0.0.1:9")!,
                credentials: Credentials(accessKeyId: "a", secretAccessKey: "b"),
                timeout: .seconds(2), retry: retry))
        let api = ProductAPI(
            configuration: configuration, s3: s3, presigner: s3, keys: keys,
            logger: .init(label: "test"))
        let router = Router()
        api.addRoutes(to: router)
        return Application(router: router)
    }

    static func bearer(_ token: String) -> HTTPFields { [.authorization: "Bearer \(token)"] }

    static func error(_ buffer: ByteBuffer) -> [String: String] {
        let object = (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) as? [String: Any]
        return (object?["error"] as? [String: String]) ?? [:]
    }

    @Test func everyRouteButThePageAndStreamingNeedsAKeyWithItsScope() async throws {
        let reader = try await keys.create(tenant: "acme", name: "reader", scopes: [.read]).token
        try await app().test(.router) { client in
            for (method, path) in [
                (HTTPRequest.Method.get, "/videos"), (.get, "/videos/acme_1"), (.delete, "/videos/acme_1"),
                (.post, "/uploads"),
                (.post, "/upload"), (.get, "/keys"), (.post, "/keys"), (.delete, "/keys/k1"), (.get, "/playback-keys"),
                (.post, "/videos/acme_1/captions?language=en&label=English"),
            ] {
                try await client.execute(uri: path, method: method) { response in
                    #expect(response.status == .unauthorized, "\(method) \(path)")
                    #expect(response.headers[.wwwAuthenticate] == #"Bearer realm="cinescale""#)
                    #expect(Self.error(response.body)["code"] == "Unauthorized")
                }
            }
            try await client.execute(uri: "/", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/videos", method: .get, headers: [.authorization: "Basic YTpi"]) {
                #expect($0.status == .unauthorized)
            }
            // A read key: 403 where it lacks the scope (before the store is asked anything).
            for (method, path) in [
                (HTTPRequest.Method.post, "/uploads"), (.delete, "/videos/acme_1"), (.get, "/keys"),
                (.post, "/videos/acme_1/captions?language=en&label=English"),
            ] {
                try await client.execute(uri: path, method: method, headers: Self.bearer(reader)) { response in
                    #expect(response.status == .forbidden, "\(method) \(path)")
                    #expect(Self.error(response.body)["code"] == "Forbidden")
                }
            }
            // Another tenant's video id is unknown, exactly as one that does not exist would be.
            try await client.execute(uri: "/videos/other_0123", method: .get, headers: Self.bearer(reader)) {
                response in
                #expect(response.status == .notFound)
                #expect(Self.error(response.body)["code"] == "NoSuchVideo")
            }
        }
    }

    @Test func anAdminKeyManagesItsTenantsKeysAndARevokedOneStopsAtOnce() async throws {
        let admin = try await keys.create(tenant: "acme", name: "admin", scopes: [.admin]).token
        let elsewhere = try await keys.create(tenant: "other", name: "", scopes: [.admin]).key
        try await app().test(.router) { client in
            let created = try await client.execute(
                uri: "/keys", method: .post, headers: Self.bearer(admin),
                body: ByteBuffer(string: #"{"name":"ci","scopes":["upload","read"]}"#))
            #expect(created.status == .created)
            let body = try JSONSerialization.jsonObject(with: Data(created.body.readableBytesView)) as? [String: Any]
            let token = try #require(body?["token"] as? String)
            let id = try #require((body?["key"] as? [String: Any])?["id"] as? String)
            try await client.execute(uri: "/keys", method: .get, headers: Self.bearer(admin)) { response in
                let text = String(buffer: response.body)
                #expect(
                    response.status == .ok && text.contains(id) && !text.contains(token) && !text.contains(elsewhere.id)
                )
            }
            try await client.execute(
                uri: "/keys", method: .post, headers: Self.bearer(admin), body: ByteBuffer(string: "{}")
            ) {
                #expect($0.status == .badRequest)
            }
            try await client.execute(uri: "/keys/\(elsewhere.id)", method: .delete, headers: Self.bearer(admin)) {
                #expect($0.status == .notFound)
            }
            try await client.execute(uri: "/keys/\(id)", method: .delete, headers: Self.bearer(admin)) {
                #expect($0.status == .noContent)
            }
            try await client.execute(uri: "/videos", method: .get, headers: Self.bearer(token)) {
                #expect($0.status == .unauthorized)
            }
        }
    }

    @Test func aStoreFailureAnswersARequestIdAndNothingOfTheServersInsides() async throws {
        let reader = try await keys.create(tenant: "acme", name: "", scopes: [.read]).token
        try await app().test(.router) { client in
            try await client.execute(uri: "/videos", method: .get, headers: Self.bearer(reader)) { response in
                // (A connection the store refuses is a transport error, not an S3 answer: 500.)
                #expect(response.status.code >= 500)
                let text = String(buffer: response.body)
                let error = Self.error(response.body)
                #expect(["StoreError", "InternalError"].contains(error["code"]) && error["requestId"]?.count == 16)
                #expect(response.headers[HTTPField.Name("X-Request-Id")!] == error["requestId"])
                #expect(!text.contains("127.0.0.1") && !text.lowercased().contains("connect") && !text.contains("S3"))
            }
        }
    }

    @Test func aKeyOverItsRateGets429WithRetryAfterAndOthersAreNotSlowed() async throws {
        let busy = try await keys.create(tenant: "acme", name: "", scopes: [.admin]).token
        let calm = try await keys.create(tenant: "acme", name: "", scopes: [.admin]).token
        // A rate so low that no token comes back however slowly this machine runs the requests (a test at 0.5/s
        // failed on a loaded machine: the fourth request came 5 s after the first, a token had refilled).
        let configuration = ProductConfiguration(signingSecret: Array("s".utf8), rateLimit: 0.001, rateBurst: 3)
        try await app(configuration).test(.router) { client in
            for _ in 0..<3 {
                try await client.execute(uri: "/keys", method: .get, headers: Self.bearer(busy)) {
                    #expect($0.status == .ok)
                }
            }
            try await client.execute(uri: "/keys", method: .get, headers: Self.bearer(busy)) { response in
                #expect(response.status == .tooManyRequests && Self.error(response.body)["code"] == "TooManyRequests")
                // (1 - tokens) / rate: a token takes 1 000 s at this rate; less what refilled meanwhile.
                let retryAfter = response.headers[.retryAfter].flatMap { Int($0) } ?? 0
                #expect((900...1000).contains(retryAfter), "\(retryAfter)")
            }
            try await client.execute(uri: "/keys", method: .get, headers: Self.bearer(calm)) {
                #expect($0.status == .ok)
            }
        }
        let limiter = RateLimiter(rate: 10, burst: 1)
        let start = ContinuousClock.now
        #expect(limiter.take("k", now: start) == nil && limiter.take("k", now: start) != nil)
        #expect(limiter.take("k", now: start + .milliseconds(100)) == nil)
    }

    @Test func corsAnswersPreflightsAndDecoratesAnswersForAllowedOriginsOnly() async throws {
        let configuration = ProductConfiguration(signingSecret: Array("s".utf8), corsOrigins: ["https://app.example"])
        try await app(configuration).test(.router) { client in
            let preflight: HTTPFields = [.origin: "https://app.example", .accessControlRequestMethod: "POST"]
            try await client.execute(uri: "/uploads", method: .options, headers: preflight) { response in
                #expect(response.status == .noContent)
                #expect(response.headers[.accessControlAllowOrigin] == "https://app.example")
                #expect(response.headers[.accessControlAllowHeaders]?.contains("Authorization") == true)
            }
            try await client.execute(uri: "/videos", method: .get, headers: [.origin: "https://app.example"]) {
                response in
                #expect(
                    response.status == .unauthorized
                        && response.headers[.accessControlAllowOrigin] == "https://app.example")
            }
            try await client.execute(uri: "/videos", method: .get, headers: [.origin: "https://evil.example"]) {
                response in
                #expect(response.headers[.accessControlAllowOrigin] == nil)
            }
        }
    }

    @Test func webhooksToPrivateAddressesAreRefusedUnlessTheOperatorAllowsThem() async throws {
        let admin = try await keys.create(tenant: "acme", name: "", scopes: [.admin]).token
        try await app().test(.router) { client in
            for (url, code) in [
                ("http://127.0.0.1:8080/hook", "WebhookURLNotAllowed"),
                ("http://169.254.169.254/latest/meta-data", "WebhookURLNotAllowed"),
                ("http://10.1.2.3/x", "WebhookURLNotAllowed"), ("http://[::1]:9/x", "WebhookURLNotAllowed"),
                ("http://localhost/x", "WebhookURLNotAllowed"), ("ftp://example.com/x", "InvalidWebhookURL"),
                ("https://user:pw@example.com/x", "InvalidWebhookURL"),
            ] {
                let body = ByteBuffer(string: #"{"url":"\#(url)","events":["video.ready"]}"#)
                try await client.execute(uri: "/webhooks", method: .post, headers: Self.bearer(admin), body: body) {
                    response in
                    #expect(response.status == .badRequest && Self.error(response.body)["code"] == code, "\(url)")
                }
            }
            let unknown = ByteBuffer(string: #"{"url":"http://127.0.0.1/x","events":["video.exploded"]}"#)
            try await client.execute(uri: "/webhooks", method: .post, headers: Self.bearer(admin), body: unknown) {
                #expect($0.status == .badRequest)
            }
        }
        let allowed = ProductConfiguration(signingSecret: Array("s".utf8), webhooksMayReachPrivateAddresses: true)
        try await app(allowed).test(.router) { client in
            let body = ByteBuffer(string: #"{"url":"http://127.0.0.1:8080/hook","events":["video.ready"]}"#)
            try await client.execute(uri: "/webhooks", method: .post, headers: Self.bearer(admin), body: body) {
                #expect($0.status == .created)
            }
        }
        for address in [
            "127.0.0.1", "10.0.0.1", "172.20.1.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1",
            "fe80::1", "fd00::1", "::ffff:127.0.0.1",
        ] {
            #expect(WebhookTarget.isPrivate(address), "\(address)")
        }
        for address in ["93.184.216.34", "172.32.0.1", "8.8.8.8", "2606:4700::1111"] {
            #expect(!WebhookTarget.isPrivate(address), "\(address)")
        }
    }

    /// The sender's wakeup: a signal given before a wait ends it at once; a wait without one lasts its timeout
    /// (every time: a timed-out wait once finished an AsyncStream and every later wait returned at once); a
    /// cancelled wait ends.
    @Test func theWebhookSendersWakeupWaitsAndWakes() async throws {
        // Each wait says why it ended, so nothing here depends on how fast a loaded machine runs it.
        let wakeup = WebhookWakeup()
        wakeup.signal()
        #expect(await wakeup.wait(.seconds(3600)) == .signalled)  // a signal given before the wait
        for _ in 0..<3 {
            #expect(await wakeup.wait(.milliseconds(50)) == .timedOut)  // none left over
        }
        let waiting = Task { await wakeup.wait(.seconds(3600)) }
        wakeup.signal()
        #expect(await waiting.value == .signalled)
        let cancelled = Task { await wakeup.wait(.seconds(3600)) }
        cancelled.cancel()
        #expect(await cancelled.value == .cancelled)
        // A signal given as a wait times out is never lost: that wait or the next one takes it.
        for _ in 0..<20 {
            let racing = Task { await wakeup.wait(.milliseconds(1)) }
            wakeup.signal()
            if await racing.value != .signalled { #expect(await wakeup.wait(.seconds(3600)) == .signalled) }
        }
        #expect(await wakeup.wait(.milliseconds(50)) == .timedOut)
    }

    @Test func playbackTokenHeadersAndOrigins() {
        // {"alg":"HS256","kid":"p0123456789abcdef","typ":"JWT"}
        let header = Data(#"{"alg":"HS256","kid":"p0123456789abcdef","typ":"JWT"}"#.utf8).base64EncodedString()
            .replacingOccurrences(of: "=", with: "")
        #expect(ProductAPI.keyID(ofJWT: header + ".e30.sig") == "p0123456789abcdef")
        #expect(ProductAPI.keyID(ofJWT: "not a token") == nil && ProductAPI.keyID(ofJWT: "") == nil)
        #expect(ProductAPI.origin(of: "https://app.example/watch?v=1") == "https://app.example")
        #expect(ProductAPI.origin(of: "http://localhost:8080/") == "http://localhost:8080")
        #expect(ProductAPI.origin(of: "app.example") == nil)
        let grant = PlaybackGrant(expires: Date(timeIntervalSince1970: 1_000_100))
        #expect(grant.lifetime(900, now: Date(timeIntervalSince1970: 1_000_000)) == 100)
        #expect(PlaybackGrant().lifetime(900) == 900)
    }
}
