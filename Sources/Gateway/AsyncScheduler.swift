import Foundation
import InvocationQueue
import Logging

/// The durable queue of asynchronous invocations the composition root hands the gateway, by what it is: the
/// scheduler that runs its invocations follows from it.
public enum InvocationQueueKind: Sendable {
    /// A queue of this gateway's own (a `SQLiteInvocationQueue`): run by a ``LocalScheduler``.
    case local(any DurableInvocationQueue)
    /// A queue shared by several gateways (a `PostgresInvocationQueue`): run by a ``LeasedScheduler``.
    case shared(any LeasedInvocationQueue)

    public var queue: any DurableInvocationQueue {
        switch self {
        case .local(let queue): queue
        case .shared(let queue): queue
        }
    }
}

/// How a scheduler takes work out of its queue, keeps it while it runs and gives it back: the part that differs
/// between a queue of the gateway's own (``LocalScheduler``) and one shared by several gateways
/// (``LeasedScheduler``). Each starts its attempts through the shared ``AttemptRunner``.
protocol SchedulingMode: AttemptOwner {
    /// Pending invocations (waiting, scheduled for retry, running), for admission.
    var pendingCount: Int { get }

    /// Pending invocations of `function`, for the operator view.
    func pending(of function: String) -> (waiting: Int, running: Int)

    /// Whether any attempt this gateway started is still running.
    var isRunning: Bool { get }

    /// Makes invocations now on disk (new, re-driven, recovered) due here.
    func schedule(_ invocations: [QueuedInvocation])

    /// Starts due attempts within each function's concurrency until the runner stops.
    func run() async

    /// While the attempts still running drain: keeps them this gateway's.
    func keepClaims() async
}

/// Runs the durable queue's asynchronous invocations through the functions' workers, like Lambda's
/// asynchronous invocation: at most `concurrency` attempts per function at a time, retries with exponential
/// backoff and jitter, dead-lettering after `maxAttempts` or `maxEventAge`. The durable queue is the truth.
///
/// What the Invoke API, the event webhook and the event sources hand invocations to: it admits them within the
/// queue's bound and queues them durably; its mode (``LocalScheduler`` or ``LeasedScheduler``, as the queue
/// is) takes them out of the queue and the ``AttemptRunner`` runs them.
final class AsyncScheduler: Sendable {
    let queue: any DurableInvocationQueue
    let maxPending: Int
    private let runner: AttemptRunner
    private let mode: any SchedulingMode

    init(queue: InvocationQueueKind, core: GatewayCore, metrics: GatewayMetrics, maxPending: Int, logger: Logger) {
        self.queue = queue.queue
        self.maxPending = maxPending
        runner = AttemptRunner(queue: queue.queue, core: core, metrics: metrics, logger: logger)
        switch queue {
        case .local: mode = LocalScheduler(runner: runner)
        case .shared(let shared): mode = LeasedScheduler(queue: shared, runner: runner)
        }
    }

    private var metrics: GatewayMetrics { runner.metrics }

    /// Pending invocations (waiting, scheduled for retry, running).
    var pendingCount: Int { mode.pendingCount }

    /// Pending per function.
    func pending(of function: String) -> (waiting: Int, running: Int) { mode.pending(of: function) }

    // MARK: Intake

    /// Throws 429/503-style errors when the queue is at its bound; call before writing `count` invocations.
    /// One notification is admitted while the queue is below the bound, whatever its record count: a batch
    /// may take it past by less than its size, and a batch larger than the whole bound is not refused forever
    /// (its sender would retry it endlessly).
    func admit(_ count: Int) throws(GatewayError) {
        let pending = pendingCount
        guard pending < maxPending else {
            metrics.refusedForBound.increment(by: Int64(count))
            throw GatewayError(
                .tooManyRequests,
                "The invocation queue holds \(pending) pending invocations (limit \(maxPending)); retry later.")
        }
    }

    /// For event sources that can hold their events (a bucket being polled, an SQS message kept invisible):
    /// waits until ``admit(_:)`` lets `count` invocations in, trying once a second and logging the first refusal
    /// (`waiting` says what is held meanwhile). `meanwhile` runs after each wait; returning false gives up.
    /// Returns false when the task is cancelled or `meanwhile` gave up.
    func admitWhenRoom(
        _ count: Int, logger: Logger, waiting: String, meanwhile: () async -> Bool = { true }
    ) async -> Bool {
        var warned = false
        while true {
            do throws(GatewayError) {
                try admit(count)
                return true
            } catch {
                if !warned {
                    logger.notice(
                        "invocation queue full; \(waiting)", metadata: ["cinescale.error": .string(error.message)])
                    warned = true
                }
            }
            guard (try? await Task.sleep(for: .seconds(1))) != nil, await meanwhile() else { return false }
        }
    }

    /// Durably queues `invocations`, then schedules those that were new. Returns the enqueue results.
    func enqueue(_ invocations: [QueuedInvocation]) async throws -> [EnqueueResult] {
        let results = try await queue.enqueue(invocations)
        var inserted: [QueuedInvocation] = []
        for result in results {
            switch result {
            case .inserted(let invocation): inserted.append(invocation)
            case .duplicate: metrics.duplicates.increment()
            }
        }
        schedule(inserted)
        metrics.enqueued.increment(by: Int64(inserted.count))
        return results
    }

    /// Adds invocations already on disk to the schedule (with a shared queue: wakes the claim loop, the queue
    /// holds them).
    func schedule(_ invocations: [QueuedInvocation]) { mode.schedule(invocations) }

    // MARK: Running

    /// Recovers the queue (interrupted attempts back to pending) and schedules everything pending.
    func recover() async throws {
        let pending = try await queue.recover(now: Date())
        if !pending.isEmpty {
            runner.logger.info(
                "recovered pending invocations", metadata: ["cinescale.count": .stringConvertible(pending.count)])
        }
        schedule(pending)
    }

    /// Starts due attempts until `stop()`; returns when stopped and every attempt it started has ended (or
    /// after `drainFor` more; those stay `running` on disk and are recovered at the next start).
    func run(drainFor: Duration) async {
        await mode.run()
        // Let running attempts finish (workers are being stopped; their outcomes are recorded).
        let deadline = ContinuousClock.now + drainFor
        while mode.isRunning, ContinuousClock.now < deadline {
            await mode.keepClaims()
            await runner.wake.wait(timeout: .milliseconds(50))
        }
        // Every recorded transition written before returning.
        try? await queue.flush()
    }

    /// Stops starting attempts.
    func stop() { runner.stop() }
}
