import Foundation
import Logging
import PollState
import PostgresNIO
import Synchronization

/// `PollStateStore` in the PostgreSQL database of the shared invocation queue (`cinescale_poll_source`,
/// `cinescale_poll_object`): one seen state for every gateway that polls a source, so that a gateway joining
/// the fleet (`startFrom: beginning`) or coming back after more than `queue.retention` sees what the others
/// have already turned into events, instead of emitting again objects whose invocations — and dedupe keys —
/// have been pruned.
///
/// Several gateways scan and record at once. Two that list the same new object both emit it (the queue's
/// dedupe key makes one invocation) and both record it: an upsert, idempotent. What `record` must not do is
/// undo another gateway's newer write, so:
/// - an upsert replaces a row only with a version whose sequencer sorts later (`PollScan.sequencer`:
///   LastModified first, so a later write of the key sorts later) — a gateway whose listing predates another's
///   never moves a key back to the older version;
/// - a removal deletes a row only while it still has the ETag the removing gateway saw
///   (`DELETE … WHERE key = … AND etag = …`) — a deletion computed from a stale listing leaves alone the newer
///   version another gateway has just recorded.
/// Each `record` is one transaction that first upserts the source's row: that row lock serialises the records
/// of one source across the fleet, so two gateways' upserts of overlapping keys cannot deadlock.
///
/// It runs on the queue's connection pool (`PostgresInvocationQueue.client`), which runs for longer than the
/// gateway's poll sources (the queue is a service stopped after the gateway): no second pool, no second set of
/// connections per gateway.
public final class PostgresPollState: PollStateStore {
    let client: PostgresClient
    let logger: Logger
    private let migrated = Mutex(false)

    public var isShared: Bool { true }

    /// `client` must be running (`PostgresClient.run()`) while the state is used.
    public init(client: PostgresClient, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    static let schemaStatements = [
        """
        CREATE TABLE IF NOT EXISTS cinescale_poll_source (
            id TEXT PRIMARY KEY,
            first_scan_at DOUBLE PRECISION NOT NULL,
            last_scan_at DOUBLE PRECISION NOT NULL
        )
        """,
        // COLLATE "C": sequencers are compared byte by byte (upper-case hex), whatever the database's locale.
        """
        CREATE TABLE IF NOT EXISTS cinescale_poll_object (
            source TEXT NOT NULL,
            key TEXT NOT NULL,
            etag TEXT NOT NULL,
            sequencer TEXT COLLATE "C" NOT NULL,
            PRIMARY KEY (source, key)
        )
        """,
    ]

    /// Creates the tables if missing (serialised between gateways by an advisory lock of its own); retried by
    /// the next operation after a failure.
    func migrate() async throws {
        if migrated.withLock({ $0 }) { return }
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(8231743)", logger: self.logger)
            for statement in Self.schemaStatements {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: self.logger)
            }
        }
        migrated.withLock { $0 = true }
    }

    public func load(source: String) async throws -> [String: SeenObject]? {
        try await migrate()
        return try await client.withConnection { connection in
            let scanned = try await connection.query(
                "SELECT 1 FROM cinescale_poll_source WHERE id = \(source)", logger: self.logger
            ).collect()
            // A source row is written in the same transaction as its objects: present, its objects follow.
            guard !scanned.isEmpty else { return nil }
            var seen: [String: SeenObject] = [:]
            let rows = try await connection.query(
                "SELECT key, etag, sequencer FROM cinescale_poll_object WHERE source = \(source)", logger: self.logger)
            for try await (key, etag, sequencer) in rows.decode((String, String, String).self) {
                seen[key] = SeenObject(etag: etag, sequencer: sequencer)
            }
            return seen
        }
    }

    public func record(source: String, seen: [String: SeenObject], removed: [String: SeenObject]) async throws {
        try await migrate()
        let now = Date().timeIntervalSince1970
        // Arrays, one statement each however many keys (a `startFrom: now` baseline may be the whole bucket).
        let upserts = seen.sorted { $0.key < $1.key }
        let keys = upserts.map(\.key)
        let etags = upserts.map(\.value.etag)
        let sequencers = upserts.map(\.value.sequencer)
        let removals = removed.sorted { $0.key < $1.key }
        let removedKeys = removals.map(\.key)
        let removedETags = removals.map(\.value.etag)
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query(
                """
                INSERT INTO cinescale_poll_source (id, first_scan_at, last_scan_at) VALUES (\(source), \(now), \(now))
                ON CONFLICT (id) DO UPDATE SET last_scan_at = EXCLUDED.last_scan_at
                """, logger: self.logger)
            if !keys.isEmpty {
                try await connection.query(
                    """
                    INSERT INTO cinescale_poll_object (source, key, etag, sequencer)
                    SELECT \(source), k, e, s FROM UNNEST(\(keys)::TEXT[], \(etags)::TEXT[], \(sequencers)::TEXT[]) AS u(k, e, s)
                    ON CONFLICT (source, key) DO UPDATE SET etag = EXCLUDED.etag, sequencer = EXCLUDED.sequencer
                        WHERE cinescale_poll_object.sequencer < EXCLUDED.sequencer
                    """, logger: self.logger)
            }
            if !removedKeys.isEmpty {
                try await connection.query(
                    """
                    DELETE FROM cinescale_poll_object o
                    USING UNNEST(\(removedKeys)::TEXT[], \(removedETags)::TEXT[]) AS r(k, e)
                    WHERE o.source = \(source) AND o.key = r.k AND o.etag = r.e
                    """, logger: self.logger)
            }
        }
    }
}
