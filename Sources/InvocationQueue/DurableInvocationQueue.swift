import Foundation

/// The durable store of the gateway's asynchronous invocations: SQLite for one gateway
/// (``SQLiteInvocationQueue``), PostgreSQL for several gateways sharing the work (a ``LeasedInvocationQueue``).
///
/// `enqueue` returns once the invocations are durable, so an event acknowledged after it survives a crash.
/// Invocations are deduplicated on `dedupeKey`. Transitions (`recordStart`, `recordOutcome`) are submitted
/// without waiting; the queue applies them in submission order per invocation.
public protocol DurableInvocationQueue: Sendable {
    /// Inserts `invocations` durably; a dedupe key already present yields `.duplicate` instead.
    func enqueue(_ invocations: [QueuedInvocation]) async throws -> [EnqueueResult]

    /// Records that attempt `attempt` of `id` is running (bookkeeping for the operator view; not awaited).
    func recordStart(id: String, attempt: Int, at time: Date)

    /// Records how attempt `attempt` (started at `startedAt`; nil when it never ran) ended; `done` runs once
    /// the record is written (or failed to be).
    func recordOutcome(
        id: String, attempt: Int, startedAt: Date?, outcome: AttemptOutcome, finishedAt: Date, durationMs: Double?,
        done: @escaping @Sendable ((any Error)?) -> Void)

    /// Moves a dead-lettered invocation back to the queue with a fresh attempt budget and age; nil when there
    /// is no dead invocation with that id.
    func redrive(id: String, now: Date, maxAttempts: Int, maxEventAge: TimeInterval) async throws -> QueuedInvocation?

    /// At start: makes interrupted attempts of this queue's owner pending again and returns the invocations
    /// this gateway must schedule itself (a leased queue returns none: its work is claimed, not held).
    func recover(now: Date) async throws -> [QueuedInvocation]

    /// Deletes finished invocations (succeeded or dead) that finished before `cutoff`; returns how many.
    func prune(finishedBefore cutoff: Date) async throws -> Int

    func get(id: String) async throws -> QueuedInvocation?

    /// Invocations matching `filter`, newest first.
    func list(_ filter: InvocationFilter) async throws -> [QueuedInvocation]

    /// Count of invocations per function and state.
    func counts() async throws -> [String: [QueuedInvocation.State: Int]]

    /// Returns once every transition submitted so far is written.
    func flush() async throws
}

extension DurableInvocationQueue {
    public func recordOutcome(
        id: String, attempt: Int, startedAt: Date?, outcome: AttemptOutcome, finishedAt: Date, durationMs: Double?
    ) {
        recordOutcome(
            id: id, attempt: attempt, startedAt: startedAt, outcome: outcome, finishedAt: finishedAt,
            durationMs: durationMs, done: { _ in })
    }
}

/// A queue shared by several gateways: each **claims** due invocations for itself under a lease, renews the
/// leases of the attempts it runs, and takes over invocations whose lease expired (their gateway died).
/// Outcomes are recorded only while the recording gateway still holds the lease.
public protocol LeasedInvocationQueue: DurableInvocationQueue {
    /// How long a claim lasts unless renewed.
    var leaseDuration: Duration { get }

    /// Claims, for each function in `limits`, up to that many due invocations (queued or awaiting retry with
    /// `nextAttemptAt <= now`, or running under an expired lease), oldest schedule first; they are `running`
    /// under this queue's lease when returned. An invocation taken over from an expired lease keeps its
    /// attempt count (the interrupted attempt is not counted); one whose lease expired more than
    /// `maxAttempts` times is dead-lettered (`Runtime.GatewayLost`) instead.
    func claim(_ limits: [String: Int], now: Date) async throws -> [QueuedInvocation]

    /// Extends the lease of `ids`; returns those whose lease this gateway no longer holds.
    func renewLeases(_ ids: [String]) async throws -> Set<String>

    /// The earliest time an invocation of `functions` becomes due (a retry, an expiring lease), or nil.
    func nextDue(functions: [String]) async throws -> Date?

    /// Pending invocations (queued, awaiting retry, running) per function, for admission and metrics.
    func pendingCounts() async throws -> [String: (waiting: Int, running: Int)]

    /// Calls `wake` whenever another gateway queues work (until the task is cancelled); reconnects on errors.
    func watch(_ wake: @escaping @Sendable () -> Void) async
}
