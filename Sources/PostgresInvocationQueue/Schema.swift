import InvocationQueue
import PostgresNIO
import Synchronization

extension PostgresInvocationQueue {
    /// Creates the table and indexes if missing, serialised between gateways by an advisory lock (what
    /// `migrate()` waits for; the run loop calls it).
    func createSchema() async throws {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(8231741)", logger: self.logger)
            for statement in Self.schemaStatements {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: self.logger)
            }
        }
    }

    static let schemaStatements = [
        """
        CREATE TABLE IF NOT EXISTS cinescale_invocation (
            id TEXT PRIMARY KEY,
            function TEXT NOT NULL,
            source TEXT NOT NULL,
            dedupe_key TEXT UNIQUE,
            payload BYTEA NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            max_attempts INTEGER NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            next_attempt_at DOUBLE PRECISION NOT NULL,
            started_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION,
            duration_ms DOUBLE PRECISION,
            error_type TEXT,
            error_message TEXT,
            lease_owner TEXT,
            lease_until DOUBLE PRECISION,
            takeovers INTEGER NOT NULL DEFAULT 0
        )
        """,
        """
        CREATE INDEX IF NOT EXISTS cinescale_invocation_due ON cinescale_invocation (function, next_attempt_at)
            WHERE state IN ('queued', 'failed')
        """,
        """
        CREATE INDEX IF NOT EXISTS cinescale_invocation_leased ON cinescale_invocation (function, lease_until)
            WHERE state = 'running'
        """,
        "CREATE INDEX IF NOT EXISTS cinescale_invocation_created ON cinescale_invocation (created_at)",
        """
        CREATE INDEX IF NOT EXISTS cinescale_invocation_finished ON cinescale_invocation (finished_at)
            WHERE state IN ('succeeded', 'dead')
        """,
    ]
}

/// The schema's creation, made by the queue's run loop (`serve`, a child task of `run()`: nothing outlives the
/// queue) once a caller waits for it (`ensure`). Callers before `run()` wait until it runs; a failed attempt is
/// reported to the callers that waited for it, and the next caller asks for another; once the loop has
/// stopped, a caller that still needs the schema is told so.
final class SchemaGate: Sendable {
    private enum Phase { case missing, creating, created, stopped }

    private struct State {
        var phase = Phase.missing
        var waiting: [CheckedContinuation<Void, any Error>] = []
    }

    private let state = Mutex(State())
    /// One element whenever callers wait for an attempt not yet started (at most one buffered).
    private let requests: AsyncStream<Void>
    private let signal: AsyncStream<Void>.Continuation

    init() {
        (requests, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Returns once the schema is created; throws the error of the attempt it waited for, or when the run loop
    /// stopped before the schema was made.
    func ensure() async throws {
        if state.withLock({ $0.phase == .created }) { return }
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let phase = state.withLock { state -> Phase in
                if state.phase == .missing || state.phase == .creating { state.waiting.append(continuation) }
                return state.phase
            }
            switch phase {
            case .created: continuation.resume()
            case .stopped: continuation.resume(throwing: Self.stopped)
            case .missing: signal.yield()
            case .creating: break  // told by the attempt under way
            }
        }
    }

    /// Makes `create` whenever callers wait, one attempt at a time, until `close()` or cancellation; then
    /// fails the callers still waiting.
    func serve(_ create: @Sendable () async throws -> Void) async {
        for await _ in requests {
            let start = state.withLock { state -> Bool in
                guard state.phase == .missing, !state.waiting.isEmpty else { return false }
                state.phase = .creating
                return true
            }
            guard start else { continue }
            let result: Result<Void, any Error>
            do {
                try await create()
                result = .success(())
            } catch {
                result = .failure(error)
            }
            let waiting = state.withLock { state in
                if case .success = result { state.phase = .created } else { state.phase = .missing }
                defer { state.waiting = [] }
                return state.waiting
            }
            for caller in waiting { caller.resume(with: result) }
        }
        let waiting = state.withLock { state in
            if state.phase != .created { state.phase = .stopped }
            defer { state.waiting = [] }
            return state.waiting
        }
        for caller in waiting { caller.resume(throwing: Self.stopped) }
    }

    /// Ends `serve` once the requests it holds are read (graceful shutdown).
    func close() {
        signal.finish()
    }

    private static var stopped: PostgresQueueError {
        PostgresQueueError(.unavailable, "the queue stopped before its schema was created")
    }
}
