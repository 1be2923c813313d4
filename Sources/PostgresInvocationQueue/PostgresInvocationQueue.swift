import Foundation
import InvocationQueue
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import ServiceLifecycle
import Synchronization

extension PostgresQueueConfiguration {
    /// A PostgresNIO client for this database (TLS as `tls` says, a 5 s connect timeout): the queue's, and the
    /// API keys' beside it.
    public func clientConfiguration(maximumConnections: Int) -> PostgresClient.Configuration {
        let mode: PostgresClient.Configuration.TLS
        switch tls {
        case .disable: mode = .disable
        case .prefer: mode = .prefer(.makeClientConfiguration())
        case .require: mode = .require(.makeClientConfiguration())
        }
        var configuration = PostgresClient.Configuration(
            host: host, port: port, username: user, password: password, database: database, tls: mode)
        configuration.options.maximumConnections = maximumConnections
        configuration.options.connectTimeout = .seconds(5)
        return configuration
    }
}

/// The invocation queue in PostgreSQL, shared by several gateways (``LeasedInvocationQueue``).
///
/// Each gateway claims due invocations with `FOR UPDATE SKIP LOCKED` (two gateways never claim the same row),
/// holding them under a lease (`lease_owner`, `lease_until` on the database's clock) that it renews while the
/// attempt runs. A gateway that dies stops renewing; once the lease expires, another gateway claims the
/// invocation again (the interrupted attempt not counted). Outcomes are written only by the lease holder, so a
/// gateway that lost its lease (paused past it) cannot overwrite the newer attempt's record. Enqueues notify
/// the other gateways (`NOTIFY cinescale_invocation`) so they claim new work at once.
///
/// A `Service`: `run()` must be running (it owns the connection pool and makes the outcome writes) while the
/// queue is used. In a `ServiceGroup`, list it before the services that use it: the group stops services in
/// reverse order, so the queue stops last, after the gateway has written the outcomes of the attempts it drained.
public final class PostgresInvocationQueue: LeasedInvocationQueue, Service {
    public let configuration: PostgresQueueConfiguration
    public var leaseDuration: Duration { configuration.leaseDuration }
    /// The connection pool `run()` runs. Tables that live beside the queue and are used only while the queue
    /// runs (the poll sources' seen state) share it rather than opening a pool of their own.
    public let client: PostgresClient
    let logger: Logger
    private let writes = OutcomeWrites()
    private let schema = SchemaGate()

    static let channel = "cinescale_invocation"
    static let table = "cinescale_invocation"

    public init(configuration: PostgresQueueConfiguration, logger: Logger) throws(PostgresQueueError) {
        self.configuration = configuration
        self.logger = logger
        let clientConfiguration = configuration.clientConfiguration(
            maximumConnections: max(2, configuration.maxConnections))
        var background = logger
        background.logLevel = max(logger.logLevel, .warning)
        client = PostgresClient(configuration: clientConfiguration, backgroundLogger: background)
    }

    /// Runs the connection pool, creates the schema once an operation needs it (`migrate()`) and makes the
    /// outcome writes `recordOutcome` submits (each in a child task) until graceful shutdown or cancellation;
    /// run it once. In a `ServiceGroup` it is told to shut down only
    /// once the services listed after it have stopped — the gateway flushes its outcomes before it returns — so
    /// nothing is left to write by then: it takes no more writes and the pool closes (a write submitted that
    /// late is still attempted, and its `done` told if it fails). Cancelled, it abandons the writes not yet
    /// started (their `done` gets an error).
    public func run() async {
        await withDiscardingTaskGroup { group in
            // Stops at graceful shutdown or cancellation.
            group.addTask { await self.client.run() }
            // Stops at graceful shutdown or cancellation, failing the callers still waiting for the schema.
            group.addTask { await self.schema.serve { try await self.createSchema() } }
            await withGracefulShutdownHandler {
                for await _ in writes.submitted {
                    for write in writes.take() {
                        group.addTask { await write.make() }
                    }
                }
            } onGracefulShutdown: {
                self.writes.close()
                self.schema.close()
            }
            for write in writes.stop() {
                if Task.isCancelled {
                    write.abandon()
                } else {
                    group.addTask { await write.make() }
                }
            }
        }
    }

    /// Creates the table and indexes if missing (serialised between gateways by an advisory lock). Every
    /// operation waits for it; a failure is reported to the operation and retried by the next one. `run()`'s
    /// loop makes it: a caller before `run()` waits until it runs, one after it has stopped (the schema never
    /// made) is told so.
    public func migrate() async throws {
        try await schema.ensure()
    }

    // MARK: Writes

    public func enqueue(_ invocations: [QueuedInvocation]) async throws -> [EnqueueResult] {
        guard !invocations.isEmpty else { return [] }
        try await migrate()
        return try await client.withTransaction(logger: logger) { connection in
            var results: [EnqueueResult] = []
            results.reserveCapacity(invocations.count)
            for i in invocations {
                let inserted = try await connection.query(
                    """
                    INSERT INTO cinescale_invocation (id, function, source, dedupe_key, payload, state, attempts,
                        max_attempts, created_at, expires_at, next_attempt_at, started_at, finished_at, duration_ms,
                        error_type, error_message)
                    VALUES (\(i.id), \(i.function), \(i.source), \(i.dedupeKey), \(i.payload), \(i.state.rawValue),
                        \(i.attempts), \(i.maxAttempts), \(i.createdAt.timeIntervalSince1970),
                        \(i.expiresAt.timeIntervalSince1970), \(i.nextAttemptAt.timeIntervalSince1970),
                        \(i.startedAt?.timeIntervalSince1970), \(i.finishedAt?.timeIntervalSince1970), \(i.durationMs),
                        \(i.errorType), \(i.errorMessage))
                    ON CONFLICT (dedupe_key) DO NOTHING
                    RETURNING id
                    """, logger: logger
                ).collect()
                if !inserted.isEmpty {
                    results.append(.inserted(i))
                    continue
                }
                let existing = try await connection.query(
                    "SELECT id FROM cinescale_invocation WHERE dedupe_key = \(i.dedupeKey)", logger: logger
                ).collect()
                guard let row = existing.first else {
                    throw PostgresQueueError(.unavailable, "invocation \(i.id) was neither inserted nor a duplicate")
                }
                results.append(.duplicate(existingID: try row.decode(String.self)))
            }
            if results.contains(where: { if case .inserted = $0 { true } else { false } }) {
                try await connection.query("SELECT pg_notify(\(Self.channel), '')", logger: logger)
            }
            return results
        }
    }

    /// A no-op: `claim` records the start (state, lease, start time) of every attempt it hands out.
    public func recordStart(id: String, attempt: Int, at time: Date) {}

    public func recordOutcome(
        id: String, attempt: Int, startedAt: Date?, outcome: AttemptOutcome, finishedAt: Date, durationMs: Double?,
        done: @escaping @Sendable ((any Error)?) -> Void
    ) {
        let owner = configuration.owner
        let started = startedAt?.timeIntervalSince1970
        let finished = finishedAt.timeIntervalSince1970
        let query: PostgresQuery
        switch outcome {
        case .succeeded:
            query = """
                UPDATE cinescale_invocation SET state = 'succeeded', attempts = \(attempt),
                    started_at = COALESCE(\(started), started_at), finished_at = \(finished), duration_ms = \(durationMs),
                    lease_owner = NULL, lease_until = NULL
                WHERE id = \(id) AND lease_owner = \(owner)
                """
        case .failed(let type, let message, let retryAt):
            query = """
                UPDATE cinescale_invocation SET state = 'failed', attempts = \(attempt),
                    started_at = COALESCE(\(started), started_at), finished_at = \(finished), duration_ms = \(durationMs),
                    error_type = \(type), error_message = \(message), next_attempt_at = \(retryAt.timeIntervalSince1970),
                    lease_owner = NULL, lease_until = NULL
                WHERE id = \(id) AND lease_owner = \(owner)
                """
        case .dead(let type, let message):
            query = """
                UPDATE cinescale_invocation SET state = 'dead', attempts = \(attempt),
                    started_at = COALESCE(\(started), started_at), finished_at = \(finished), duration_ms = \(durationMs),
                    error_type = \(type), error_message = \(message), lease_owner = NULL, lease_until = NULL
                WHERE id = \(id) AND lease_owner = \(owner)
                """
        case .returned(let retryAt):
            query = """
                UPDATE cinescale_invocation SET state = CASE WHEN error_type IS NULL THEN 'queued' ELSE 'failed' END,
                    attempts = \(max(attempt - 1, 0)), next_attempt_at = \(retryAt.timeIntervalSince1970),
                    lease_owner = NULL, lease_until = NULL
                WHERE id = \(id) AND lease_owner = \(owner)
                """
        }
        let notify: Bool = if case .returned = outcome { true } else { false }
        let client = self.client
        let logger = self.logger
        let writes = self.writes
        @Sendable func failed(_ error: any Error) {
            logger.error(
                "could not record an invocation's outcome",
                metadata: [
                    "cinescale.request.id": .string(id), "cinescale.error": "\(String(reflecting: error))",
                ])
            done(error)
        }
        writes.submit(
            OutcomeWrites.Write(
                make: {
                    do {
                        try await client.withConnection { connection in
                            // No row updated: the lease went to another gateway, whose attempt's record stands.
                            try await connection.query(query, logger: logger)
                            if notify {
                                try await connection.query("SELECT pg_notify(\(Self.channel), '')", logger: logger)
                            }
                        }
                        done(nil)
                    } catch {
                        failed(error)
                    }
                    writes.finished()
                },
                abandon: {
                    failed(PostgresQueueError(.unavailable, "the queue stopped before the outcome was written"))
                    writes.finished()
                }))
    }

    public func redrive(id: String, now: Date, maxAttempts: Int, maxEventAge: TimeInterval) async throws
        -> QueuedInvocation?
    {
        try await migrate()
        let rows = try await client.withConnection { connection in
            let rows = try await connection.query(
                """
                UPDATE cinescale_invocation SET state = 'queued', attempts = 0, takeovers = 0, max_attempts = \(maxAttempts),
                    next_attempt_at = \(now.timeIntervalSince1970),
                    expires_at = \(now.timeIntervalSince1970 + maxEventAge), source = 'redrive'
                WHERE id = \(id) AND state = 'dead'
                RETURNING *
                """, logger: logger
            ).collect()
            if !rows.isEmpty { try await connection.query("SELECT pg_notify(\(Self.channel), '')", logger: logger) }
            return rows
        }
        return try rows.first.map(Self.invocation)
    }

    /// Nothing to recover locally: attempts of a gateway that died are claimed again once their lease expires.
    public func recover(now: Date) async throws -> [QueuedInvocation] {
        try await migrate()
        return []
    }

    @discardableResult
    public func prune(finishedBefore cutoff: Date) async throws -> Int {
        try await migrate()
        let rows = try await client.query(
            """
            DELETE FROM cinescale_invocation WHERE state IN ('succeeded', 'dead')
                AND finished_at < \(cutoff.timeIntervalSince1970) RETURNING id
            """, logger: logger
        ).collect()
        return rows.count
    }

    public func flush() async throws {
        await writes.flush()
    }

    // MARK: Leases

    public func claim(_ limits: [String: Int], now: Date) async throws -> [QueuedInvocation] {
        let wanted = limits.filter { $0.value > 0 }
        guard !wanted.isEmpty else { return [] }
        try await migrate()
        let owner = configuration.owner
        let lease = leaseDuration.seconds
        let due = now.timeIntervalSince1970
        var claimed: [QueuedInvocation] = []
        for (function, limit) in wanted.sorted(by: { $0.key < $1.key }) {
            // An attempt whose gateways keep dying (one that crashes or exhausts its host, say) is not taken
            // over forever: past `max_attempts` takeovers it is dead-lettered, and can be re-driven.
            try await client.query(
                """
                UPDATE cinescale_invocation SET state = 'dead', error_type = 'Runtime.GatewayLost',
                    error_message = 'The gateway running it was lost ' || (takeovers + 1)
                        || ' times (killed or crashed before the attempt ended).',
                    finished_at = \(due), lease_owner = NULL, lease_until = NULL
                WHERE function = \(function) AND state = 'running'
                    AND lease_until < EXTRACT(EPOCH FROM clock_timestamp()) AND takeovers >= max_attempts
                """, logger: logger)
            let rows = try await client.query(
                """
                WITH due AS (
                    SELECT id FROM cinescale_invocation
                    WHERE function = \(function) AND (
                        (state IN ('queued', 'failed') AND next_attempt_at <= \(due))
                        OR (state = 'running' AND lease_until < EXTRACT(EPOCH FROM clock_timestamp())))
                    ORDER BY next_attempt_at, created_at
                    LIMIT \(limit)
                    FOR UPDATE SKIP LOCKED)
                UPDATE cinescale_invocation i SET state = 'running', lease_owner = \(owner),
                    lease_until = EXTRACT(EPOCH FROM clock_timestamp()) + \(lease),
                    started_at = \(due), takeovers = i.takeovers + CASE WHEN i.state = 'running' THEN 1 ELSE 0 END
                FROM due WHERE i.id = due.id
                RETURNING i.*
                """, logger: logger
            ).collect()
            claimed.append(contentsOf: try rows.map(Self.invocation))
        }
        return claimed.sorted { $0.nextAttemptAt < $1.nextAttemptAt }
    }

    public func renewLeases(_ ids: [String]) async throws -> Set<String> {
        guard !ids.isEmpty else { return [] }
        let owner = configuration.owner
        let lease = leaseDuration.seconds
        let rows = try await client.query(
            """
            UPDATE cinescale_invocation SET lease_until = EXTRACT(EPOCH FROM clock_timestamp()) + \(lease)
            WHERE id = ANY(\(ids)) AND lease_owner = \(owner) AND state = 'running'
            RETURNING id
            """, logger: logger
        ).collect()
        let renewed = Set(try rows.map { try $0.decode(String.self) })
        return Set(ids).subtracting(renewed)
    }

    public func nextDue(functions: [String]) async throws -> Date? {
        guard !functions.isEmpty else { return nil }
        try await migrate()
        let rows = try await client.query(
            """
            SELECT LEAST(
                (SELECT MIN(next_attempt_at) FROM cinescale_invocation
                    WHERE state IN ('queued', 'failed') AND function = ANY(\(functions))),
                (SELECT MIN(lease_until) FROM cinescale_invocation
                    WHERE state = 'running' AND function = ANY(\(functions)))
                - EXTRACT(EPOCH FROM clock_timestamp()) + \(Date().timeIntervalSince1970))
            """, logger: logger
        ).collect()
        return try rows.first?.decode(Double?.self).map { Date(timeIntervalSince1970: $0) }
    }

    public func pendingCounts() async throws -> [String: (waiting: Int, running: Int)] {
        try await migrate()
        let rows = try await client.query(
            """
            SELECT function, COUNT(*) FILTER (WHERE state <> 'running'), COUNT(*) FILTER (WHERE state = 'running')
            FROM cinescale_invocation WHERE state IN ('queued', 'failed', 'running') GROUP BY function
            """, logger: logger
        ).collect()
        var result: [String: (waiting: Int, running: Int)] = [:]
        for row in rows {
            let (function, waiting, running) = try row.decode((String, Int, Int).self)
            result[function] = (waiting, running)
        }
        return result
    }

    public func watch(_ wake: @escaping @Sendable () -> Void) async {
        while !Task.isCancelled {
            do {
                try await migrate()
                try await client.withConnection { connection in
                    try await connection.listen(on: Self.channel) { notifications in
                        wake()  // anything queued while not listening
                        for try await _ in notifications { wake() }
                    }
                }
            } catch {
                if Task.isCancelled { return }
                logger.warning(
                    "lost the queue's notification channel; reconnecting",
                    metadata: [
                        "cinescale.error": "\(String(reflecting: error))"
                    ])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    // MARK: Reads

    public func get(id: String) async throws -> QueuedInvocation? {
        try await migrate()
        let rows = try await client.query("SELECT * FROM cinescale_invocation WHERE id = \(id)", logger: logger)
            .collect()
        return try rows.first.map(Self.invocation)
    }

    public func list(_ filter: InvocationFilter) async throws -> [QueuedInvocation] {
        try await migrate()
        let states =
            filter.states.isEmpty
            ? QueuedInvocation.State.allCases.map(\.rawValue) : filter.states.map(\.rawValue).sorted()
        let before = filter.createdBefore?.timeIntervalSince1970 ?? Double.greatestFiniteMagnitude
        let rows = try await client.query(
            """
            SELECT * FROM cinescale_invocation
            WHERE state = ANY(\(states)) AND (\(filter.function)::TEXT IS NULL OR function = \(filter.function))
                AND created_at < \(before)
            ORDER BY created_at DESC, id LIMIT \(max(0, filter.limit))
            """, logger: logger
        ).collect()
        return try rows.map(Self.invocation)
    }

    public func counts() async throws -> [String: [QueuedInvocation.State: Int]] {
        try await migrate()
        let rows = try await client.query(
            "SELECT function, state, COUNT(*) FROM cinescale_invocation GROUP BY 1, 2", logger: logger
        ).collect()
        var result: [String: [QueuedInvocation.State: Int]] = [:]
        for row in rows {
            let (function, state, count) = try row.decode((String, String, Int).self)
            guard let state = QueuedInvocation.State(rawValue: state) else { continue }
            result[function, default: [:]][state] = count
        }
        return result
    }

    /// The lease holder of `id` (operator view and tests).
    public func leaseOwner(of id: String) async throws -> String? {
        let rows = try await client.query(
            "SELECT lease_owner FROM cinescale_invocation WHERE id = \(id)", logger: logger
        ).collect()
        return try rows.first?.decode(String?.self)
    }

    private static func invocation(_ row: PostgresRow) throws -> QueuedInvocation {
        let r = row.makeRandomAccess()
        func date(_ column: String) throws -> Date? {
            try r[column].decode(Double?.self).map { Date(timeIntervalSince1970: $0) }
        }
        return QueuedInvocation(
            id: try r["id"].decode(String.self), function: try r["function"].decode(String.self),
            source: try r["source"].decode(String.self), dedupeKey: try r["dedupe_key"].decode(String?.self),
            payload: try r["payload"].decode(Data.self),
            state: QueuedInvocation.State(rawValue: try r["state"].decode(String.self)) ?? .queued,
            attempts: try r["attempts"].decode(Int.self), maxAttempts: try r["max_attempts"].decode(Int.self),
            createdAt: try date("created_at")!, expiresAt: try date("expires_at")!,
            nextAttemptAt: try date("next_attempt_at")!, startedAt: try date("started_at"),
            finishedAt: try date("finished_at"), durationMs: try r["duration_ms"].decode(Double?.self),
            errorType: try r["error_type"].decode(String?.self),
            errorMessage: try r["error_message"].decode(String?.self))
    }
}

extension Duration {
    fileprivate var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
