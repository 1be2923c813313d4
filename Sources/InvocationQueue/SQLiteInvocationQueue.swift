import DurableSQLite
import Foundation
import GRDB

/// The gateway's durable queue of asynchronous invocations, in SQLite (WAL, fsync per group commit).
///
/// `enqueue` returns once the rows are on disk, so an event acknowledged after it survives a crash. Rows are
/// deduplicated on `dedupeKey` (unique). The dispatcher keeps its own schedule in memory and records every
/// transition here; after a crash, `recover()` turns interrupted attempts back into queued ones.
public final class SQLiteInvocationQueue: DurableInvocationQueue {
    public let database: DurableDatabase

    public init(path: String) throws(DurableDatabaseError) {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE invocation (
                        id TEXT PRIMARY KEY NOT NULL,
                        function TEXT NOT NULL,
                        source TEXT NOT NULL,
                        dedupe_key TEXT UNIQUE,
                        payload BLOB NOT NULL,
                        state TEXT NOT NULL,
                        attempts INTEGER NOT NULL,
                        max_attempts INTEGER NOT NULL,
                        created_at REAL NOT NULL,
                        expires_at REAL NOT NULL,
                        next_attempt_at REAL NOT NULL,
                        started_at REAL,
                        finished_at REAL,
                        duration_ms REAL,
                        error_type TEXT,
                        error_message TEXT
                    );
                    CREATE INDEX invocation_state ON invocation(state, next_attempt_at);
                    CREATE INDEX invocation_created ON invocation(created_at);
                    """)
        }
        database = try DurableDatabase(path: path, migrator: migrator)
    }

    // MARK: Writes

    /// Inserts `invocations` in one durable transaction (shared with concurrent callers). Duplicates of an
    /// existing dedupe key are not inserted.
    public func enqueue(_ invocations: [QueuedInvocation]) async throws -> [EnqueueResult] {
        try await database.write { db in
            var results: [EnqueueResult] = []
            results.reserveCapacity(invocations.count)
            for invocation in invocations {
                if let key = invocation.dedupeKey,
                    let existing = try String.fetchOne(
                        db.cachedStatement(sql: "SELECT id FROM invocation WHERE dedupe_key = ?"), arguments: [key])
                {
                    results.append(.duplicate(existingID: existing))
                    continue
                }
                try Self.insert(invocation, db)
                results.append(.inserted(invocation))
            }
            return results
        }
    }

    private static func insert(_ i: QueuedInvocation, _ db: Database) throws {
        try db.cachedStatement(
            sql: """
                INSERT INTO invocation (id, function, source, dedupe_key, payload, state, attempts, max_attempts,
                    created_at, expires_at, next_attempt_at, started_at, finished_at, duration_ms, error_type,
                    error_message)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """
        ).execute(arguments: [
            i.id, i.function, i.source, i.dedupeKey, i.payload, i.state.rawValue, i.attempts, i.maxAttempts,
            i.createdAt.timeIntervalSince1970, i.expiresAt.timeIntervalSince1970,
            i.nextAttemptAt.timeIntervalSince1970, i.startedAt?.timeIntervalSince1970,
            i.finishedAt?.timeIntervalSince1970, i.durationMs, i.errorType, i.errorMessage,
        ])
    }

    /// Records that attempt `attempt` is running (queued for the next group commit; not awaited, not fsync'd).
    /// Optional bookkeeping for the operator view: `recordOutcome` sets the attempt count and start time
    /// itself, and `recover()` treats a running attempt like a queued one.
    public func recordStart(id: String, attempt: Int, at time: Date) {
        database.submit(durable: false) { db in
            // A no-op when the attempt's outcome is already recorded (that sets attempts to `attempt`).
            try db.cachedStatement(
                sql:
                    "UPDATE invocation SET state = 'running', attempts = ?, started_at = ? WHERE id = ? AND attempts < ?"
            ).execute(arguments: [attempt, time.timeIntervalSince1970, id, attempt])
        }
    }

    /// Records how attempt `attempt` (started at `startedAt`; nil when it never ran) ended. `done` runs after
    /// the commit. Not fsync'd: a power cut may lose the record, and the invocation then runs again (at least
    /// once; functions write deterministic outputs).
    public func recordOutcome(
        id: String, attempt: Int, startedAt: Date?, outcome: AttemptOutcome, finishedAt: Date, durationMs: Double?,
        done: @escaping @Sendable ((any Error)?) -> Void
    ) {
        let finished = finishedAt.timeIntervalSince1970
        let started = startedAt?.timeIntervalSince1970
        database.submit(
            durable: false,
            { db in
                switch outcome {
                case .succeeded:
                    try db.cachedStatement(
                        sql: """
                            UPDATE invocation SET state = 'succeeded', attempts = ?, started_at = COALESCE(?, started_at),
                                finished_at = ?, duration_ms = ?
                            WHERE id = ?
                            """
                    ).execute(arguments: [attempt, started, finished, durationMs, id])
                case .failed(let type, let message, let retryAt):
                    try db.cachedStatement(
                        sql: """
                            UPDATE invocation SET state = 'failed', attempts = ?, started_at = COALESCE(?, started_at),
                                finished_at = ?, duration_ms = ?, error_type = ?, error_message = ?, next_attempt_at = ?
                            WHERE id = ?
                            """
                    ).execute(arguments: [
                        attempt, started, finished, durationMs, type, message, retryAt.timeIntervalSince1970, id,
                    ])
                case .dead(let type, let message):
                    try db.cachedStatement(
                        sql: """
                            UPDATE invocation SET state = 'dead', attempts = ?, started_at = COALESCE(?, started_at),
                                finished_at = ?, duration_ms = ?, error_type = ?, error_message = ?
                            WHERE id = ?
                            """
                    ).execute(arguments: [attempt, started, finished, durationMs, type, message, id])
                case .returned(let retryAt):
                    try db.cachedStatement(
                        sql: """
                            UPDATE invocation SET state = CASE WHEN error_type IS NULL THEN 'queued' ELSE 'failed' END,
                                attempts = ?, next_attempt_at = ?
                            WHERE id = ?
                            """
                    ).execute(arguments: [max(attempt - 1, 0), retryAt.timeIntervalSince1970, id])
                }
            }, done: done)
    }

    /// Moves a dead-lettered invocation back to the queue with a fresh attempt budget and age; returns it,
    /// or nil when there is no dead invocation with that id.
    public func redrive(id: String, now: Date, maxAttempts: Int, maxEventAge: TimeInterval) async throws
        -> QueuedInvocation?
    {
        try await database.write { db in
            try db.cachedStatement(
                sql: """
                    UPDATE invocation SET state = 'queued', attempts = 0, max_attempts = ?, next_attempt_at = ?,
                        expires_at = ?, source = 'redrive'
                    WHERE id = ? AND state = 'dead'
                    """
            ).execute(arguments: [
                maxAttempts, now.timeIntervalSince1970, now.timeIntervalSince1970 + maxEventAge, id,
            ])
            guard db.changesCount > 0 else { return nil }
            return try Self.fetch(db, where: "id = ?", arguments: [id]).first
        }
    }

    /// After a crash: every `running` invocation goes back to its previous state (`queued` or `failed`),
    /// its interrupted attempt not counted, due now. Returns every pending invocation, oldest schedule first.
    public func recover(now: Date) async throws -> [QueuedInvocation] {
        try database.writeNow { db in
            try db.execute(
                sql: """
                    UPDATE invocation SET state = CASE WHEN error_type IS NULL THEN 'queued' ELSE 'failed' END,
                        attempts = MAX(attempts - 1, 0), next_attempt_at = ?
                    WHERE state = 'running'
                    """, arguments: [now.timeIntervalSince1970])
            return try Self.fetch(
                db, where: "state IN ('queued', 'failed') ORDER BY next_attempt_at", arguments: [])
        }
    }

    /// Deletes finished invocations (succeeded or dead) that finished before `cutoff`; returns how many.
    @discardableResult
    public func prune(finishedBefore cutoff: Date) async throws -> Int {
        try await database.write { db in
            try db.execute(
                sql: "DELETE FROM invocation WHERE state IN ('succeeded', 'dead') AND finished_at < ?",
                arguments: [cutoff.timeIntervalSince1970])
            return db.changesCount
        }
    }

    public func flush() async throws {
        try await database.flush()
    }

    // MARK: Reads

    public func get(id: String) async throws -> QueuedInvocation? {
        try await database.read { db in try Self.fetch(db, where: "id = ?", arguments: [id]).first }
    }

    /// Invocations matching `filter`, newest first.
    public func list(_ filter: InvocationFilter) async throws -> [QueuedInvocation] {
        try await database.read { db in
            var clauses: [String] = []
            var arguments: StatementArguments = []
            if !filter.states.isEmpty {
                let states = filter.states.map(\.rawValue).sorted()
                clauses.append("state IN (\(states.map { _ in "?" }.joined(separator: ", ")))")
                for state in states { _ = arguments.append(contentsOf: [state]) }
            }
            if let function = filter.function {
                clauses.append("function = ?")
                _ = arguments.append(contentsOf: [function])
            }
            if let before = filter.createdBefore {
                clauses.append("created_at < ?")
                _ = arguments.append(contentsOf: [before.timeIntervalSince1970])
            }
            let condition = clauses.isEmpty ? "1" : clauses.joined(separator: " AND ")
            return try Self.fetch(
                db, where: "\(condition) ORDER BY created_at DESC, id LIMIT \(max(0, filter.limit))",
                arguments: arguments)
        }
    }

    /// Count of invocations per (function, state).
    public func counts() async throws -> [String: [QueuedInvocation.State: Int]] {
        try await database.read { db in
            var result: [String: [QueuedInvocation.State: Int]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT function, state, COUNT(*) AS n FROM invocation GROUP BY 1, 2")
            {
                guard let state = QueuedInvocation.State(rawValue: row["state"]) else { continue }
                result[row["function"], default: [:]][state] = row["n"]
            }
            return result
        }
    }

    private static func fetch(_ db: Database, where condition: String, arguments: StatementArguments) throws
        -> [QueuedInvocation]
    {
        try Row.fetchAll(db, sql: "SELECT * FROM invocation WHERE \(condition)", arguments: arguments).map { row in
            QueuedInvocation(
                id: row["id"], function: row["function"], source: row["source"], dedupeKey: row["dedupe_key"],
                payload: row["payload"], state: QueuedInvocation.State(rawValue: row["state"]) ?? .queued,
                attempts: row["attempts"], maxAttempts: row["max_attempts"],
                createdAt: date(row["created_at"])!, expiresAt: date(row["expires_at"])!,
                nextAttemptAt: date(row["next_attempt_at"])!, startedAt: date(row["started_at"]),
                finishedAt: date(row["finished_at"]), durationMs: row["duration_ms"], errorType: row["error_type"],
                errorMessage: row["error_message"])
        }
    }

    private static func date(_ seconds: Double?) -> Date? {
        seconds.map { Date(timeIntervalSince1970: $0) }
    }
}
