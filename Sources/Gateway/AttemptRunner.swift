import Foundation
import InvocationQueue
import Logging
import NIOCore
import Synchronization

/// One attempt of a queued invocation, from its start.
struct Attempt: Sendable {
    /// 1 for the first attempt.
    var number: Int
    var at: Date
    var clock: ContinuousClock.Instant
}

/// Whoever took an invocation out of the queue to run it (``LocalScheduler``, ``LeasedScheduler``): told when its
/// attempt starts and when it has ended.
protocol AttemptOwner: Sendable {
    /// The attempt is about to be handed to a worker.
    func attemptStarted(_ invocation: QueuedInvocation, _ attempt: Attempt)

    /// The attempt ended (the owner counts it running no more) and its outcome is submitted to the queue;
    /// `again` is the invocation to run later (a retry after the backoff, or handed back), nil when it is
    /// finished (succeeded or dead-lettered).
    func attemptEnded(_ invocation: QueuedInvocation, again: QueuedInvocation?)
}

/// The attempts running per function, against each function's `concurrency`: what every scheduler claims
/// within. Kept in the scheduler's own state, so that it changes together with the scheduler's schedule (an
/// attempt taken from the schedule is counted running in the same step; a retry is back in the schedule in the
/// step that ends its attempt), and the pending counts never see an attempt in neither.
struct RunningAttempts {
    /// Function names, in configuration order.
    private let functions: [String]
    private let concurrency: [String: Int]
    private var running: [String: Int] = [:]

    init(_ dispatchers: [FunctionDispatcher]) {
        functions = dispatchers.map(\.name)
        concurrency = Dictionary(uniqueKeysWithValues: dispatchers.map { ($0.name, $0.configuration.concurrency) })
        for function in functions { running[function] = 0 }
    }

    /// Attempts of `function` running.
    func count(of function: String) -> Int { running[function] ?? 0 }

    /// Attempts running, all functions together.
    var total: Int { running.values.reduce(0, +) }

    var isEmpty: Bool { !running.values.contains { $0 > 0 } }

    /// How many more attempts `function` may start.
    func room(for function: String) -> Int { concurrency[function]! - running[function]! }

    /// How many more attempts each function may start.
    var room: [String: Int] { Dictionary(uniqueKeysWithValues: functions.map { ($0, room(for: $0)) }) }

    /// The functions that may start another attempt, in configuration order.
    var functionsWithRoom: [String] { functions.filter { room(for: $0) > 0 } }

    mutating func started(_ function: String) { running[function]! += 1 }

    mutating func ended(_ function: String) { running[function]! -= 1 }
}

/// Runs attempts of the durable queue's invocations, whichever scheduler took them out of the queue: starts
/// each through its function's dispatcher (which applies the function's timeout), turns the result into an
/// outcome — success, a retry with exponential backoff and jitter, a hand-back, a dead letter after
/// `maxAttempts` or `maxEventAge` — records it in the queue and the metrics, and tells the attempt's owner,
/// which counts it in its ``RunningAttempts``. It holds the stop flag and the signal that wakes the scheduler's
/// loop when an attempt ends.
final class AttemptRunner: Sendable {
    let queue: any DurableInvocationQueue
    let core: GatewayCore
    let metrics: GatewayMetrics
    let logger: Logger
    /// Fired when an attempt ends, work arrives or the runner stops; the scheduler's loop waits on it.
    let wake = WakeSignal()
    private let stopping = Atomic<Bool>(false)

    init(queue: any DurableInvocationQueue, core: GatewayCore, metrics: GatewayMetrics, logger: Logger) {
        self.queue = queue
        self.core = core
        self.metrics = metrics
        self.logger = logger
    }

    // MARK: Stopping

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// Stops the scheduler's loop from starting attempts; those running end with their workers.
    func stop() {
        stopping.store(true, ordering: .releasing)
        wake.fire()
    }

    // MARK: Attempts

    /// Starts the next attempt of `invocation`, which `owner` counts running (dead-letters it instead when it
    /// is past its maximum event age); `owner` is told when it starts and when it ends.
    func start(_ invocation: QueuedInvocation, for owner: some AttemptOwner) {
        let now = Date()
        let function = invocation.function
        let policy = core.dispatchers[function]!.configuration.retry
        if now >= invocation.expiresAt {
            finish(
                invocation,
                outcome: .dead(
                    errorType: "EventAgeExceeded",
                    message: "The event is older than the maximum event age (\(Int(policy.maxEventAge.seconds)) s)."),
                attempt: nil, owner: owner)
            return
        }
        let attempt = Attempt(number: invocation.attempts + 1, at: now, clock: .now)
        owner.attemptStarted(invocation, attempt)
        metrics.started(function: function, waited: now.timeIntervalSince(invocation.nextAttemptAt))
        do throws(GatewayError) {
            try core.submit(
                function: function, payload: ByteBuffer(bytes: invocation.payload), requestID: invocation.id
            ) { result in
                self.completed(invocation, attempt: attempt, result: result, owner: owner)
            }
        } catch {
            completed(invocation, attempt: attempt, result: .failure(error), owner: owner)
        }
    }

    /// Returns `invocation`, which `owner` counts running, to the queue unrun and due at once (claimed as
    /// shutdown began).
    func handBack(_ invocation: QueuedInvocation, for owner: some AttemptOwner) {
        let attempt = Attempt(number: invocation.attempts + 1, at: Date(), clock: .now)
        finish(invocation, outcome: .returned(retryAt: Date()), attempt: attempt, owner: owner)
    }

    private func completed(
        _ invocation: QueuedInvocation, attempt started: Attempt, result: Result<InvocationResult, GatewayError>,
        owner: some AttemptOwner
    ) {
        let attempt = started.number
        let policy = core.dispatchers[invocation.function]!.configuration.retry
        let now = Date()
        let outcome: AttemptOutcome
        switch result {
        case .success(let r) where !r.isError:
            outcome = .succeeded
        case .success(let r):
            let (type, message) = Self.describeError(r)
            if isStopping {
                // Cut short by shutdown (the worker was stopped): not the function's failure.
                outcome = .returned(retryAt: now)
            } else if attempt < policy.maxAttempts {
                let retryAt = now.addingTimeInterval(policy.delay(after: attempt).seconds)
                outcome =
                    retryAt < invocation.expiresAt
                    ? .failed(errorType: type, message: message, retryAt: retryAt)
                    : .dead(errorType: type, message: message)
            } else {
                outcome = .dead(errorType: type, message: message)
            }
        case .failure(let error) where error.code == .tooManyRequests:
            outcome = .returned(retryAt: now.addingTimeInterval(0.1))
        case .failure(let error) where error.code == .shuttingDown:
            outcome = .returned(retryAt: now)
        case .failure(let error):
            outcome = .dead(errorType: error.code.lambdaErrorType, message: error.message)
        }
        finish(invocation, outcome: outcome, attempt: started, owner: owner)
    }

    /// Records the outcome of `started` (nil: dead-lettered without running) and tells `owner` whether and when
    /// the invocation runs again.
    private func finish(
        _ invocation: QueuedInvocation, outcome: AttemptOutcome, attempt started: Attempt?, owner: some AttemptOwner
    ) {
        let attempt = started?.number ?? invocation.attempts
        let duration = started.map { (ContinuousClock.now - $0.clock).seconds }
        queue.recordOutcome(
            id: invocation.id, attempt: attempt, startedAt: started?.at, outcome: outcome, finishedAt: Date(),
            durationMs: duration.map { $0 * 1000 })
        var again: QueuedInvocation?
        switch outcome {
        case .succeeded:
            metrics.outcome(function: invocation.function, "succeeded", duration: duration)
        case .failed(let type, let message, let retryAt):
            var next = invocation
            next.state = .failed
            next.attempts = attempt
            next.errorType = type
            next.errorMessage = message
            next.nextAttemptAt = retryAt
            again = next
            metrics.outcome(function: invocation.function, "failed", duration: duration)
            logger.notice(
                "async invocation failed; will retry",
                metadata: [
                    "cinescale.function": .string(invocation.function), "cinescale.request.id": .string(invocation.id),
                    "cinescale.attempt": .stringConvertible(attempt), "cinescale.error.type": .string(type),
                ])
        case .dead(let type, let message):
            metrics.outcome(function: invocation.function, "dead", duration: duration)
            logger.warning(
                "async invocation dead-lettered",
                metadata: [
                    "cinescale.function": .string(invocation.function), "cinescale.request.id": .string(invocation.id),
                    "cinescale.attempts": .stringConvertible(attempt), "cinescale.error.type": .string(type),
                    "cinescale.error": .string(message),
                ])
        case .returned(let retryAt):
            var next = invocation
            next.nextAttemptAt = retryAt
            again = next
        }
        owner.attemptEnded(invocation, again: again)
        wake.fire()
    }

    /// Dead-letters an invocation of a function the configuration no longer has, where an operator can see it
    /// (and re-drive it once the function is back).
    func deadLetterUnknown(_ invocation: QueuedInvocation) {
        let error = GatewayError.notFound(
            arn: core.configuration.arn(of: invocation.function), function: invocation.function)
        queue.recordOutcome(
            id: invocation.id, attempt: invocation.attempts, startedAt: nil,
            outcome: .dead(errorType: error.code.lambdaErrorType, message: error.message), finishedAt: Date(),
            durationMs: nil)
        metrics.outcome(function: invocation.function, "dead")
    }

    /// errorType and errorMessage of a failed result (its payload is Lambda's error document).
    static func describeError(_ result: InvocationResult) -> (String, String) {
        var message = String(buffer: result.payload)
        if let object = try? JSONSerialization.jsonObject(with: Data(result.payload.readableBytesView))
            as? [String: Any],
            let text = object["errorMessage"] as? String
        {
            message = text
        }
        if message.utf8.count > 4096 { message = String(message.prefix(4096)) + "…" }
        return (result.errorType ?? result.functionError ?? "Unhandled", message)
    }
}
