import APIKeys
import Crypto
import Foundation
import InvocationQueue
import Logging
import PostgresAPIKeys
import PostgresInvocationQueue
import PostgresTestSupport
import Testing

/// The key store's contract, on both backends: a token works until its key is revoked, only its keyed hash is
/// stored, tenants see their own keys, and two handles on one database (two gateways) agree at once.
@Suite struct APIKeyStoreTests {
    let directory: String

    init() throws {
        directory =
            FileManager.default.temporaryDirectory.appendingPathComponent("cinescale-keys-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// Two handles on one store (two gateways on one PostgreSQL database, or two opens of one SQLite file),
    /// run while `body` runs.
    func withStores(
        _ backend: QueueBackend,
        _ body: (any APIKeyStore & PlaybackKeyStore & WebhookStore, any APIKeyStore & PlaybackKeyStore & WebhookStore)
            async throws -> Void
    ) async throws {
        switch backend {
        case .sqlite:
            // The queue's own file: its migration and the keys' live side by side.
            let path = "\(directory)/queue.sqlite"
            _ = try SQLiteInvocationQueue(path: path)
            try await body(try SQLiteAPIKeyStore(path: path), try SQLiteAPIKeyStore(path: path))
            _ = try SQLiteInvocationQueue(path: path)
        case .postgres:
            let url = try #require(try await backend.freshPostgresURL())
            var logger = Logger(label: "test.keys")
            logger.logLevel = .critical
            let configuration = try PostgresQueueConfiguration(url: url)
            let one = PostgresAPIKeyStore(configuration: configuration, logger: logger)
            let two = PostgresAPIKeyStore(configuration: configuration, logger: logger)
            let runs = [Task { try await one.run() }, Task { try await two.run() }]
            defer { for run in runs { run.cancel() } }
            try await body(one, two)
        }
    }

    @Test(arguments: QueueBackend.allCases) func aTokenWorksUntilItsKeyIsRevokedOnEveryHandle(_ backend: QueueBackend)
        async throws
    {
        try await withStores(backend) { one, two in
            let (key, token) = try await one.create(tenant: "acme", name: "ci", scopes: [.read, .upload])
            #expect(key.scopes == [.upload, .read] && key.tenant == "acme" && key.id.count == 17)
            #expect(token.hasPrefix("cs_\(key.id)_") && token.count == 3 + 17 + 1 + 43)
            #expect(try await two.authenticate(token: token) == key)
            // One character changed, a token of another key's id, garbage: nothing.
            var tampered = Array(token)
            tampered[tampered.count - 1] = tampered.last == "A" ? "B" : "A"
            #expect(try await two.authenticate(token: String(tampered)) == nil)
            #expect(try await two.authenticate(token: "cs_k0000000000000000_" + String(token.suffix(43))) == nil)
            #expect(try await two.authenticate(token: "Bearer nonsense") == nil)
            #expect(try await one.revoke(id: key.id, tenant: "other") == false)
            #expect(try await two.revoke(id: key.id, tenant: "acme") == true)
            #expect(try await one.authenticate(token: token) == nil)
            #expect(try await one.list(tenant: "acme").first?.revokedAt != nil)
        }
    }

    @Test(arguments: QueueBackend.allCases) func tenantsSeeTheirOwnKeys(_ backend: QueueBackend) async throws {
        try await withStores(backend) { one, two in
            let a1 = try await one.create(tenant: "a", name: "first", scopes: [.admin]).key
            let b1 = try await one.create(tenant: "b", name: "", scopes: [.read]).key
            let a2 = try await two.create(tenant: "a", name: "second", scopes: [.delete]).key
            #expect(Set(try await two.list(tenant: "a").map(\.id)) == [a1.id, a2.id])
            #expect(try await one.list(tenant: "b") == [b1])
            #expect(Set(try await one.list(tenant: nil).map(\.id)) == [a1.id, a2.id, b1.id])
            #expect(a1.allows(.delete) && !b1.allows(.upload) && a2.allows(.delete) && !a2.allows(.read))
        }
    }

    @Test(arguments: QueueBackend.allCases) func badTenantsNamesAndScopesAreRefused(_ backend: QueueBackend)
        async throws
    {
        try await withStores(backend) { one, _ in
            for tenant in ["", "Acme", "a_b", "-a", String(repeating: "a", count: 33), "a/b"] {
                await #expect(throws: APIKeyError.self) {
                    _ = try await one.create(tenant: tenant, name: "", scopes: [.read])
                }
            }
            await #expect(throws: APIKeyError.self) { _ = try await one.create(tenant: "a", name: "x", scopes: []) }
            await #expect(throws: APIKeyError.self) {
                _ = try await one.create(tenant: "a", name: "a\nb", scopes: [.read])
            }
            let left = try await one.list(tenant: nil)
            #expect(left.isEmpty)
        }
        let scopes = try APIKeyRules.scopes("read, upload,read")
        #expect(scopes == [.upload, .read])
        #expect(throws: APIKeyError.self) { _ = try APIKeyRules.scopes("read,root") }
    }

    @Test(arguments: QueueBackend.allCases) func playbackKeysAreTheTenantsAndRevocable(_ backend: QueueBackend)
        async throws
    {
        try await withStores(backend) { one, two in
            let secret = PlaybackKey(
                id: PlaybackKey.generateID(), tenant: "acme", algorithm: .hs256, material: PlaybackKey.generateSecret(),
                createdAt: APIKeyRules.now())
            let pem = PlaybackKey(
                id: PlaybackKey.generateID(), tenant: "acme", algorithm: .rs256,
                material: Array("-----BEGIN PUBLIC KEY-----".utf8),
                createdAt: APIKeyRules.now())
            try await one.addPlaybackKey(secret)
            try await one.addPlaybackKey(pem)
            #expect(try await two.playbackKey(id: secret.id) == secret)
            #expect(Set(try await two.playbackKeys(tenant: "acme").map(\.id)) == [secret.id, pem.id])
            #expect(try await two.playbackKeys(tenant: "other").isEmpty)
            #expect(try await one.revokePlaybackKey(id: secret.id, tenant: "other") == false)
            #expect(try await one.revokePlaybackKey(id: secret.id, tenant: "acme") == true)
            #expect(try await two.playbackKey(id: secret.id)?.revokedAt != nil)
            #expect(try await two.playbackKey(id: "p0000000000000000") == nil)
        }
    }

    @Test(arguments: QueueBackend.allCases) func webhookDeliveriesGoOneAtATimePerEndpointInOrder(
        _ backend: QueueBackend
    ) async throws {
        try await withStores(backend) { one, two in
            let now = Date(timeIntervalSince1970: 1_000_000)
            let a = WebhookEndpoint(
                id: "wa", tenant: "acme", url: "https://a.example/hook", events: ["video.created", "video.ready"],
                secret: "s1",
                createdAt: now)
            let b = WebhookEndpoint(
                id: "wb", tenant: "acme", url: "https://b.example/hook", events: ["video.ready"], secret: "s2",
                createdAt: now)
            let other = WebhookEndpoint(
                id: "wc", tenant: "other", url: "https://c.example", events: ["video.ready"], secret: "s3",
                createdAt: now)
            for endpoint in [a, b, other] { try await one.addEndpoint(endpoint) }
            #expect(Set(try await two.endpoints(tenant: "acme").map(\.id)) == ["wa", "wb"])
            #expect(
                try await one.enqueue(
                    tenant: "acme", eventID: "e1", type: "video.created", body: Array("1".utf8), at: now) == 1)
            #expect(
                try await one.enqueue(
                    tenant: "acme", eventID: "e2", type: "video.ready", body: Array("2".utf8), at: now) == 2)
            #expect(
                try await two.enqueue(
                    tenant: "acme", eventID: "e2", type: "video.ready", body: Array("2".utf8), at: now) == 0)
            #expect(
                try await one.enqueue(
                    tenant: "acme", eventID: "e3", type: "video.created", body: Array("3".utf8), at: now) == 1)

            // Each endpoint's oldest only, and a claim is leased: the other handle (another gateway) gets nothing.
            let first = try await one.claimDue(now: now, lease: 60, limit: 10)
            #expect(Set(first.map { "\($0.1.id):\($0.0.eventID)" }) == ["wa:e1", "wb:e2"])
            #expect(try await two.claimDue(now: now, lease: 60, limit: 10).isEmpty)
            let a1 = try #require(first.first { $0.1.id == "wa" }?.0)
            let b1 = try #require(first.first { $0.1.id == "wb" }?.0)
            #expect(a1.body == Array("1".utf8) && first.first { $0.1.id == "wa" }?.1.secret == "s1")
            // A failed attempt retried later holds back the endpoint's later events (order), not other endpoints'.
            try await one.record(
                WebhookAttempt(state: .pending, status: 503, error: nil, nextAttemptAt: now.addingTimeInterval(30)),
                delivery: a1.id,
                at: now)
            try await one.record(
                WebhookAttempt(state: .delivered, status: 200, error: nil, nextAttemptAt: now), delivery: b1.id, at: now
            )
            #expect(try await two.claimDue(now: now.addingTimeInterval(1), lease: 60, limit: 10).isEmpty)
            let retried = try await two.claimDue(now: now.addingTimeInterval(31), lease: 60, limit: 10)
            #expect(retried.map(\.0.eventID) == ["e1"] && retried.first?.0.attempts == 1)
            try await two.record(
                WebhookAttempt(state: .delivered, status: 204, error: nil, nextAttemptAt: now), delivery: a1.id, at: now
            )
            #expect(
                try await one.claimDue(now: now.addingTimeInterval(32), lease: 60, limit: 10).map(\.0.eventID) == ["e2"]
            )

            // The record of an endpoint, newest first; a delivered event re-sent goes again.
            let listed = try await one.deliveries(endpoint: "wa", tenant: "acme", limit: 10)
            #expect(
                listed.map(\.eventID) == ["e3", "e2", "e1"] && listed.last?.state == .delivered
                    && listed.last?.lastStatus == 204)
            #expect(try await one.deliveries(endpoint: "wa", tenant: "other", limit: 10).isEmpty)
            #expect(
                try await two.resend(delivery: b1.id, endpoint: "wb", tenant: "acme", at: now.addingTimeInterval(40)))
            #expect(
                try await one.claimDue(now: now.addingTimeInterval(200), lease: 60, limit: 10).contains {
                    $0.0.id == b1.id
                })
            // Ended deliveries are pruned after their retention; pending ones never.
            #expect(try await one.pruneDeliveries(endedBefore: now.addingTimeInterval(-1)) == 0)
            let before = try await one.deliveries(endpoint: "wa", tenant: "acme", limit: 10).count
            #expect(try await two.pruneDeliveries(endedBefore: now.addingTimeInterval(1)) >= 1)
            let after = try await one.deliveries(endpoint: "wa", tenant: "acme", limit: 10)
            #expect(after.count < before && after.allSatisfy { $0.state == .pending || $0.id == b1.id })
            // Removing an endpoint drops what it had not received.
            #expect(try await one.removeEndpoint(id: "wa", tenant: "other") == false)
            #expect(try await one.removeEndpoint(id: "wa", tenant: "acme"))
            #expect(
                try await one.claimDue(now: now.addingTimeInterval(400), lease: 60, limit: 10).allSatisfy {
                    $0.1.id != "wa"
                })
        }
        #expect(
            WebhookSignature.sign(body: Array("{}".utf8), secret: "whsec_test", timestamp: 1_700_000_000)
                == "t=1700000000,v1=" + HMACHex.of("1700000000.{}", key: "whsec_test"))
    }

    @Test func theDatabaseHoldsNoTokenOnlyItsKeyedHash() async throws {
        let path = "\(directory)/keys.sqlite"
        let store = try SQLiteAPIKeyStore(path: path)
        let (_, token) = try await store.create(tenant: "acme", name: "ci", scopes: [.admin])
        let secret = String(token.suffix(43))
        let bytes =
            try Data(contentsOf: URL(fileURLWithPath: path + "-wal")) + Data(contentsOf: URL(fileURLWithPath: path))
        #expect(bytes.range(of: Data(secret.utf8)) == nil)
        #expect(bytes.range(of: Data(APIKeyToken.hash(token))) != nil)
    }
}

/// An independent HMAC-SHA256 (hex) to check the signature format against.
enum HMACHex {
    static func of(_ message: String, key: String) -> String {
        HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: Array(key.utf8)))
            .map { String(format: "%02x", $0) }.joined()
    }
}
