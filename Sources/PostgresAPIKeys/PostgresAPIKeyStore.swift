import APIKeys
import Foundation
import InvocationQueue
import Logging
import NIOCore
import PostgresInvocationQueue
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// The keys in PostgreSQL (`cinescale_api_key`), in the database the gateways share their queue in: a key
/// created or revoked through one gateway counts on every other at its next request (nothing is cached).
///
/// A `Service`: `run()` owns the connection pool; the composition root runs it in the top-level group, before
/// the servers that authenticate through it, so it stops after them.
public final class PostgresAPIKeyStore: APIKeyStore, PlaybackKeyStore, WebhookStore, Service {
    let client: PostgresClient
    let logger: Logger
    private let migrated = Mutex(false)

    public init(configuration: PostgresQueueConfiguration, logger: Logger) {
        self.logger = logger
        // Key checks are one indexed read each: a few connections serve them.
        let clientConfiguration = configuration.clientConfiguration(maximumConnections: 4)
        var background = logger
        background.logLevel = max(logger.logLevel, .warning)
        client = PostgresClient(configuration: clientConfiguration, backgroundLogger: background)
    }

    public func run() async throws {
        await client.run()
    }

    /// Creates the table if missing (serialised between gateways by an advisory lock); retried by the next
    /// operation after a failure.
    func migrate() async throws {
        if migrated.withLock({ $0 }) { return }
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(8231742)", logger: self.logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS cinescale_api_key (
                    id TEXT PRIMARY KEY,
                    tenant TEXT NOT NULL,
                    name TEXT NOT NULL,
                    scopes TEXT NOT NULL,
                    hash BYTEA NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL,
                    revoked_at DOUBLE PRECISION
                )
                """, logger: self.logger)
            try await connection.query(
                "CREATE INDEX IF NOT EXISTS cinescale_api_key_tenant ON cinescale_api_key (tenant, created_at)",
                logger: self.logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS cinescale_webhook_endpoint (
                    id TEXT PRIMARY KEY,
                    tenant TEXT NOT NULL,
                    url TEXT NOT NULL,
                    events TEXT NOT NULL,
                    secret TEXT NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL
                )
                """, logger: self.logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS cinescale_webhook_delivery (
                    seq BIGSERIAL PRIMARY KEY,
                    id TEXT UNIQUE NOT NULL,
                    endpoint_id TEXT NOT NULL,
                    tenant TEXT NOT NULL,
                    event_id TEXT NOT NULL,
                    type TEXT NOT NULL,
                    body BYTEA NOT NULL,
                    state TEXT NOT NULL,
                    attempts INTEGER NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL,
                    next_attempt_at DOUBLE PRECISION NOT NULL,
                    lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
                    delivered_at DOUBLE PRECISION,
                    last_status INTEGER,
                    last_error TEXT,
                    UNIQUE (endpoint_id, event_id)
                )
                """, logger: self.logger)
            try await connection.query(
                "CREATE INDEX IF NOT EXISTS cinescale_webhook_delivery_pending ON cinescale_webhook_delivery (state, endpoint_id, seq)",
                logger: self.logger)
            try await connection.query(
                """
                CREATE TABLE IF NOT EXISTS cinescale_playback_key (
                    id TEXT PRIMARY KEY,
                    tenant TEXT NOT NULL,
                    algorithm TEXT NOT NULL,
                    material BYTEA NOT NULL,
                    created_at DOUBLE PRECISION NOT NULL,
                    revoked_at DOUBLE PRECISION
                )
                """, logger: self.logger)
        }
        migrated.withLock { $0 = true }
    }

    public func create(tenant: String, name: String, scopes: [Scope]) async throws -> (key: APIKey, token: String) {
        try await APIKeyStorage.run("creating a key") {
            try await createNow(tenant: tenant, name: name, scopes: scopes)
        }
    }

    private func createNow(tenant: String, name: String, scopes: [Scope]) async throws -> (key: APIKey, token: String) {
        try APIKeyRules.validate(tenant: tenant)
        try APIKeyRules.validate(name: name, scopes: scopes)
        try await migrate()
        let (id, token) = APIKeyToken.generate()
        let key = APIKey(id: id, tenant: tenant, name: name, scopes: scopes.sorted(), createdAt: APIKeyRules.now())
        let scopeText = key.scopes.map(\.rawValue).joined(separator: ",")
        let hash = ByteBuffer(bytes: APIKeyToken.hash(token))
        let created = key.createdAt.timeIntervalSince1970
        try await client.query(
            """
            INSERT INTO cinescale_api_key (id, tenant, name, scopes, hash, created_at)
            VALUES (\(key.id), \(key.tenant), \(key.name), \(scopeText), \(hash), \(created))
            """, logger: logger)
        return (key, token)
    }

    public func list(tenant: String?) async throws -> [APIKey] {
        try await APIKeyStorage.run("listing keys") { try await listNow(tenant: tenant) }
    }

    private func listNow(tenant: String?) async throws -> [APIKey] {
        try await migrate()
        let rows = try await client.query(
            """
            SELECT id, tenant, name, scopes, hash, created_at, revoked_at FROM cinescale_api_key
            WHERE \(tenant)::TEXT IS NULL OR tenant = \(tenant) ORDER BY tenant, created_at, id
            """, logger: logger
        ).collect()
        return try rows.map { try Self.key($0).key }
    }

    public func revoke(id: String, tenant: String?) async throws -> Bool {
        try await APIKeyStorage.run("revoking a key") { try await revokeNow(id: id, tenant: tenant) }
    }

    private func revokeNow(id: String, tenant: String?) async throws -> Bool {
        try await migrate()
        let now = Date().timeIntervalSince1970
        let rows = try await client.query(
            """
            UPDATE cinescale_api_key SET revoked_at = COALESCE(revoked_at, \(now))
            WHERE id = \(id) AND (\(tenant)::TEXT IS NULL OR tenant = \(tenant)) RETURNING id
            """, logger: logger
        ).collect()
        return !rows.isEmpty
    }

    public func authenticate(token: String) async throws -> APIKey? {
        try await APIKeyStorage.run("reading a key") { try await authenticateNow(token: token) }
    }

    private func authenticateNow(token: String) async throws -> APIKey? {
        guard let id = APIKeyToken.keyID(of: token) else { return nil }
        try await migrate()
        let rows = try await client.query(
            "SELECT id, tenant, name, scopes, hash, created_at, revoked_at FROM cinescale_api_key WHERE id = \(id)",
            logger: logger
        ).collect()
        guard let row = rows.first else { return nil }
        let (key, hash) = try Self.key(row)
        guard APIKeyToken.matches(token, stored: hash), key.revokedAt == nil else { return nil }
        return key
    }

    // MARK: Playback keys

    public func addPlaybackKey(_ key: PlaybackKey) async throws {
        try APIKeyRules.validate(tenant: key.tenant)
        try await APIKeyStorage.run("adding a playback key") {
            try await migrate()
            let material = ByteBuffer(bytes: key.material)
            let created = key.createdAt.timeIntervalSince1970
            try await client.query(
                """
                INSERT INTO cinescale_playback_key (id, tenant, algorithm, material, created_at)
                VALUES (\(key.id), \(key.tenant), \(key.algorithm.rawValue), \(material), \(created))
                """, logger: logger)
        }
    }

    public func playbackKeys(tenant: String) async throws -> [PlaybackKey] {
        try await APIKeyStorage.run("listing playback keys") {
            try await migrate()
            let rows = try await client.query(
                """
                SELECT id, tenant, algorithm, material, created_at, revoked_at FROM cinescale_playback_key
                WHERE tenant = \(tenant) ORDER BY created_at, id
                """, logger: logger
            ).collect()
            return try rows.compactMap(Self.playbackKey)
        }
    }

    public func playbackKey(id: String) async throws -> PlaybackKey? {
        try await APIKeyStorage.run("reading a playback key") {
            try await migrate()
            let rows = try await client.query(
                """
                SELECT id, tenant, algorithm, material, created_at, revoked_at FROM cinescale_playback_key WHERE id = \(id)
                """, logger: logger
            ).collect()
            return try rows.first.flatMap(Self.playbackKey)
        }
    }

    public func revokePlaybackKey(id: String, tenant: String) async throws -> Bool {
        try await APIKeyStorage.run("revoking a playback key") {
            try await migrate()
            let now = Date().timeIntervalSince1970
            let rows = try await client.query(
                """
                UPDATE cinescale_playback_key SET revoked_at = COALESCE(revoked_at, \(now))
                WHERE id = \(id) AND tenant = \(tenant) RETURNING id
                """, logger: logger
            ).collect()
            return !rows.isEmpty
        }
    }

    static func playbackKey(_ row: PostgresRow) throws -> PlaybackKey? {
        let (id, tenant, algorithm, material, created, revoked) = try row.decode(
            (String, String, String, ByteBuffer, Double, Double?).self)
        guard let algorithm = PlaybackKey.Algorithm(rawValue: algorithm) else { return nil }
        return PlaybackKey(
            id: id, tenant: tenant, algorithm: algorithm, material: Array(material.readableBytesView),
            createdAt: Date(timeIntervalSince1970: created), revokedAt: revoked.map(Date.init(timeIntervalSince1970:)))
    }

    static func key(_ row: PostgresRow) throws -> (key: APIKey, hash: [UInt8]) {
        let (id, tenant, name, scopes, hash, created, revoked) = try row.decode(
            (String, String, String, String, ByteBuffer, Double, Double?).self)
        return (
            APIKey(
                id: id, tenant: tenant, name: name,
                scopes: scopes.split(separator: ",").compactMap { Scope(rawValue: String($0)) },
                createdAt: Date(timeIntervalSince1970: created),
                revokedAt: revoked.map(Date.init(timeIntervalSince1970:))),
            Array(hash.readableBytesView)
        )
    }
}
