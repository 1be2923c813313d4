import DurableSQLite
import Foundation
import GRDB

/// The keys in SQLite: a table of their own in the gateway's queue file (`api_key`, its own migration), so a
/// data directory holds the queue and the keys together.
public final class SQLiteAPIKeyStore: APIKeyStore, PlaybackKeyStore, WebhookStore {
    let database: DurableDatabase

    public init(path: String) throws(DurableDatabaseError) {
        var migrator = DatabaseMigrator()
        // Its own identifier: the queue's migrator, on the same file, ignores migrations it does not know.
        migrator.registerMigration("api-keys-v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE api_key (
                        id TEXT PRIMARY KEY NOT NULL,
                        tenant TEXT NOT NULL,
                        name TEXT NOT NULL,
                        scopes TEXT NOT NULL,
                        hash BLOB NOT NULL,
                        created_at REAL NOT NULL,
                        revoked_at REAL
                    );
                    CREATE INDEX api_key_tenant ON api_key(tenant, created_at);
                    """)
        }
        migrator.registerMigration("playback-keys-v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE playback_key (
                        id TEXT PRIMARY KEY NOT NULL,
                        tenant TEXT NOT NULL,
                        algorithm TEXT NOT NULL,
                        material BLOB NOT NULL,
                        created_at REAL NOT NULL,
                        revoked_at REAL
                    );
                    CREATE INDEX playback_key_tenant ON playback_key(tenant, created_at);
                    """)
        }
        migrator.registerMigration("webhooks-v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE webhook_endpoint (
                        id TEXT PRIMARY KEY NOT NULL,
                        tenant TEXT NOT NULL,
                        url TEXT NOT NULL,
                        events TEXT NOT NULL,
                        secret TEXT NOT NULL,
                        created_at REAL NOT NULL
                    );
                    CREATE INDEX webhook_endpoint_tenant ON webhook_endpoint(tenant, created_at);
                    CREATE TABLE webhook_delivery (
                        seq INTEGER PRIMARY KEY AUTOINCREMENT,
                        id TEXT UNIQUE NOT NULL,
                        endpoint_id TEXT NOT NULL,
                        tenant TEXT NOT NULL,
                        event_id TEXT NOT NULL,
                        type TEXT NOT NULL,
                        body BLOB NOT NULL,
                        state TEXT NOT NULL,
                        attempts INTEGER NOT NULL,
                        created_at REAL NOT NULL,
                        next_attempt_at REAL NOT NULL,
                        lease_until REAL NOT NULL DEFAULT 0,
                        delivered_at REAL,
                        last_status INTEGER,
                        last_error TEXT,
                        UNIQUE (endpoint_id, event_id)
                    );
                    CREATE INDEX webhook_delivery_pending ON webhook_delivery(state, endpoint_id, seq);
                    """)
        }
        database = try DurableDatabase(path: path, migrator: migrator)
    }

    // MARK: Playback keys

    public func addPlaybackKey(_ key: PlaybackKey) async throws {
        try APIKeyRules.validate(tenant: key.tenant)
        try await APIKeyStorage.run("adding a playback key") {
            try await database.write { db in
                try db.execute(
                    sql:
                        "INSERT INTO playback_key (id, tenant, algorithm, material, created_at) VALUES (?, ?, ?, ?, ?)",
                    arguments: [
                        key.id, key.tenant, key.algorithm.rawValue, Data(key.material),
                        key.createdAt.timeIntervalSince1970,
                    ])
            }
        }
    }

    public func playbackKeys(tenant: String) async throws -> [PlaybackKey] {
        try await APIKeyStorage.run("listing playback keys") {
            try await database.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT * FROM playback_key WHERE tenant = ? ORDER BY created_at, id", arguments: [tenant]
                ).compactMap(Self.playbackKey)
            }
        }
    }

    public func playbackKey(id: String) async throws -> PlaybackKey? {
        try await APIKeyStorage.run("reading a playback key") {
            try await database.read { db in
                try Row.fetchOne(db, sql: "SELECT * FROM playback_key WHERE id = ?", arguments: [id]).flatMap(
                    Self.playbackKey)
            }
        }
    }

    public func revokePlaybackKey(id: String, tenant: String) async throws -> Bool {
        let now = Date().timeIntervalSince1970
        return try await APIKeyStorage.run("revoking a playback key") {
            try await database.write { db in
                try db.execute(
                    sql: "UPDATE playback_key SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND tenant = ?",
                    arguments: [now, id, tenant])
                return db.changesCount > 0
            }
        }
    }

    static func playbackKey(_ row: Row) -> PlaybackKey? {
        let algorithm: String = row["algorithm"]
        let material: Data = row["material"]
        let revoked: Double? = row["revoked_at"]
        guard let algorithm = PlaybackKey.Algorithm(rawValue: algorithm) else { return nil }
        return PlaybackKey(
            id: row["id"], tenant: row["tenant"], algorithm: algorithm, material: Array(material),
            createdAt: Date(timeIntervalSince1970: row["created_at"]),
            revokedAt: revoked.map(Date.init(timeIntervalSince1970:)))
    }

    public func create(tenant: String, name: String, scopes: [Scope]) async throws -> (key: APIKey, token: String) {
        try APIKeyRules.validate(tenant: tenant)
        try APIKeyRules.validate(name: name, scopes: scopes)
        let (id, token) = APIKeyToken.generate()
        let key = APIKey(id: id, tenant: tenant, name: name, scopes: scopes.sorted(), createdAt: APIKeyRules.now())
        let hash = APIKeyToken.hash(token)
        try await APIKeyStorage.run("creating a key") {
            try await database.write { db in
                try db.execute(
                    sql: "INSERT INTO api_key (id, tenant, name, scopes, hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [
                        key.id, key.tenant, key.name, key.scopes.map(\.rawValue).joined(separator: ","), Data(hash),
                        key.createdAt.timeIntervalSince1970,
                    ])
            }
        }
        return (key, token)
    }

    public func list(tenant: String?) async throws -> [APIKey] {
        try await APIKeyStorage.run("listing keys") { try await listNow(tenant: tenant) }
    }

    private func listNow(tenant: String?) async throws -> [APIKey] {
        try await database.read { db in
            let rows: [Row]
            if let tenant {
                rows = try Row.fetchAll(
                    db, sql: "SELECT * FROM api_key WHERE tenant = ? ORDER BY created_at, id", arguments: [tenant])
            } else {
                rows = try Row.fetchAll(db, sql: "SELECT * FROM api_key ORDER BY tenant, created_at, id")
            }
            return rows.map(Self.key)
        }
    }

    public func revoke(id: String, tenant: String?) async throws -> Bool {
        let now = Date().timeIntervalSince1970
        return try await APIKeyStorage.run("revoking a key") { try await revokeNow(id: id, tenant: tenant, now: now) }
    }

    private func revokeNow(id: String, tenant: String?, now: Double) async throws -> Bool {
        try await database.write { db in
            if let tenant {
                try db.execute(
                    sql: "UPDATE api_key SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? AND tenant = ?",
                    arguments: [now, id, tenant])
            } else {
                try db.execute(
                    sql: "UPDATE api_key SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", arguments: [now, id])
            }
            return db.changesCount > 0
        }
    }

    public func authenticate(token: String) async throws -> APIKey? {
        guard let id = APIKeyToken.keyID(of: token) else { return nil }
        let found = try await APIKeyStorage.run("reading a key") {
            try await database.read { db -> (APIKey, [UInt8])? in
                guard let row = try Row.fetchOne(db, sql: "SELECT * FROM api_key WHERE id = ?", arguments: [id]) else {
                    return nil
                }
                let hash: Data = row["hash"]
                return (Self.key(row), Array(hash))
            }
        }
        guard let (key, hash) = found, APIKeyToken.matches(token, stored: hash), key.revokedAt == nil else {
            return nil
        }
        return key
    }

    static func key(_ row: Row) -> APIKey {
        let scopes: String = row["scopes"]
        let revoked: Double? = row["revoked_at"]
        return APIKey(
            id: row["id"], tenant: row["tenant"], name: row["name"],
            scopes: scopes.split(separator: ",").compactMap { Scope(rawValue: String($0)) },
            createdAt: Date(timeIntervalSince1970: row["created_at"]),
            revokedAt: revoked.map(Date.init(timeIntervalSince1970:)))
    }
}
