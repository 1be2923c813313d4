import DurableSQLite
import Foundation
import GRDB

/// The version of an object a poll source has turned into an event.
public struct SeenObject: Sendable, Hashable {
    /// The listing's ETag (without quotes), or `size:<n>/<last modified>` for a store that lists none.
    public var etag: String
    /// The sequencer its event carried (see `PollScan.sequencer`): a removal record names the version removed.
    public var sequencer: String

    public init(etag: String, sequencer: String) {
        self.etag = etag
        self.sequencer = sequencer
    }
}

/// The durable seen state of the poll sources: per source, key → the version last turned into an event.
/// Written only after the events of those versions are committed to the invocation queue (and observed), so a
/// crash at any point leaves at worst versions that are emitted again — which the queue's dedupe keys absorb.
///
/// Two implementations: `SQLitePollState` (one gateway, a file of its own) and `PostgresPollState` (the
/// database of the shared queue: one state for every gateway of the fleet, written concurrently; in the
/// `PostgresInvocationQueue` target, so the gateway links no PostgreSQL driver — the composition root hands it in). So that
/// concurrent writers cannot undo each other, `record` never replaces a version by one whose sequencer sorts
/// earlier, and drops a key only while it still holds the version the caller saw removed.
public protocol PollStateStore: Sendable {
    /// Whether other gateways write the same state: the poll source then reads it again before every scan,
    /// so that it diffs against what the fleet has turned into events, not only against its own scans.
    var isShared: Bool { get }
    /// The seen objects of `source`; nil when no scan of it has ever been recorded (its first scan).
    func load(source: String) async throws -> [String: SeenObject]?
    /// Durably records `seen` (added, or replacing a version whose sequencer sorts earlier), drops each key of
    /// `removed` whose recorded ETag is still the one given (the version the listing no longer had), and marks
    /// `source` as scanned — atomically.
    func record(source: String, seen: [String: SeenObject], removed: [String: SeenObject]) async throws
}

extension PollStateStore {
    public var isShared: Bool { false }
}

/// `PollStateStore` in a SQLite file of its own (WAL, fsync'd group commits through `DurableDatabase`),
/// `poll.sqlite` beside the gateway's queue file by default.
///
/// A file of its own rather than a table in the queue's, so the queue's schema stays the queue's. Used with the
/// SQLite queue, and with the shared PostgreSQL one only when `EventSourcesConfiguration.pollStatePath` names a file
/// (then this gateway's state is its own: see `PostgresPollState` for why the fleet should share one).
public final class SQLitePollState: PollStateStore {
    let database: DurableDatabase

    public init(path: String) throws(DurableDatabaseError) {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE poll_source (
                        id TEXT PRIMARY KEY NOT NULL,
                        first_scan_at REAL NOT NULL,
                        last_scan_at REAL NOT NULL
                    );
                    CREATE TABLE poll_object (
                        source TEXT NOT NULL,
                        key TEXT NOT NULL,
                        etag TEXT NOT NULL,
                        sequencer TEXT NOT NULL,
                        PRIMARY KEY (source, key)
                    ) WITHOUT ROWID;
                    """)
        }
        database = try DurableDatabase(path: path, migrator: migrator)
    }

    public func load(source: String) async throws -> [String: SeenObject]? {
        try await database.read { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM poll_source WHERE id = ?", arguments: [source]) != nil
            else {
                return nil
            }
            var seen: [String: SeenObject] = [:]
            let rows = try Row.fetchCursor(
                db, sql: "SELECT key, etag, sequencer FROM poll_object WHERE source = ?", arguments: [source])
            while let row = try rows.next() {
                let key: String = row["key"]
                seen[key] = SeenObject(etag: row["etag"], sequencer: row["sequencer"])
            }
            return seen
        }
    }

    public func record(source: String, seen: [String: SeenObject], removed: [String: SeenObject]) async throws {
        let now = Date().timeIntervalSince1970
        try await database.write { db in
            try db.cachedStatement(
                sql: """
                    INSERT INTO poll_source (id, first_scan_at, last_scan_at) VALUES (?, ?, ?)
                    ON CONFLICT (id) DO UPDATE SET last_scan_at = excluded.last_scan_at
                    """
            ).execute(arguments: [source, now, now])
            // The same rules as the shared state's (`PollStateStore.record`), although one gateway writes here.
            let upsert = try db.cachedStatement(
                sql: """
                    INSERT INTO poll_object (source, key, etag, sequencer) VALUES (?, ?, ?, ?)
                    ON CONFLICT (source, key) DO UPDATE SET etag = excluded.etag, sequencer = excluded.sequencer
                        WHERE poll_object.sequencer < excluded.sequencer
                    """)
            for (key, object) in seen {
                try upsert.execute(arguments: [source, key, object.etag, object.sequencer])
            }
            let delete = try db.cachedStatement(
                sql: "DELETE FROM poll_object WHERE source = ? AND key = ? AND etag = ?")
            for (key, object) in removed { try delete.execute(arguments: [source, key, object.etag]) }
        }
    }
}
