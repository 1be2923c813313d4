import Foundation
import InvocationQueue
import Logging
import NIOCore
import Synchronization

/// Runs the durable queue's asynchronous invocations through the functions' workers, like Lambda's
/// asynchronous invocation: at most `concurrency` attempts per function at a time, retries with exponential
/// backoff and jitter, dead-lettering after `maxAttempts` or `maxEventAge`. The durable queue is the truth.
///
/// With a queue of its own (SQLite) the scheduler keeps the schedule in memory (rebuilt by `recover()` at
/// start) and records every transition. With a queue shared by several gateways (a `LeasedInvocationQueue`,
/// PostgreSQL) it holds no schedule: it claims due invocations up to its free capacity, renews the leases of
/// the attempts it runs, and is woken by the queue when another gateway adds work.
final class AsyncScheduler: Sendable {
    let queue: any DurableInvocationQueue
    private let leased: (any LeasedInvocationQueue)?
    let core: GatewayCore
    let metrics: GatewayMetrics
    let logger: Logger
    let maxPending: Int
    private let state: Mutex<State>
    private let wake = WakeSignal()

    private struct Entry: Comparable {
        var invocation: QueuedInvocation
        /// Tie-breaker keeping FIFO order among equal times.
        var sequence: UInt64

        static func < (a: Entry, b: Entry) -> Bool {
            a.invocation.nextAttemptAt != b.invocation.nextAttemptAt
                ? a.invocation.nextAttemptAt < b.invocation.nextAttemptAt : a.sequence < b.sequence
        }

        static func == (a: Entry, b: Entry) -> Bool { a.sequence == b.sequence }
    }

    private struct PerFunction {
        var ready = MinHeap<Entry>()
        var running = 0
    }

    /// An attempt whose start is not on disk yet: recorded only once it has run for `startRecordDelay`
    /// (most finish sooner, and their outcome record carries the start).
    private struct Started {
        var attempt: Int
        var at: Date
        var clock: ContinuousClock.Instant
    }

    static let startRecordDelay: Duration = .milliseconds(200)

    private struct State {
        var functions: [String: PerFunction] = [:]
        var unrecordedStarts: [String: Started] = [:]
        var sequence: UInt64 = 0
        var stopping = false
        /// Leased mode: attempts this gateway runs (their leases are renewed).
        var leasedRunning: Set<String> = []
        /// Leased mode: the shared queue's pending counts at the last refresh, plus what this gateway queued since.
        var sharedCounts: [String: (waiting: Int, running: Int)] = [:]
        var enqueuedSinceCount = 0
        var pending: Int {
            if !sharedCounts.isEmpty || enqueuedSinceCount > 0 {
                return sharedCounts.values.reduce(enqueuedSinceCount) { $0 + $1.waiting + $1.running }
            }
            return functions.values.reduce(0) { $0 + $1.ready.count + $1.running }
        }
    }

    init(
        queue: any DurableInvocationQueue, core: GatewayCore, metrics: GatewayMetrics, maxPending: Int, logger: Logger
    ) {
        self.queue = queue
        self.leased = queue as? any LeasedInvocationQueue
        self.core = core
        self.metrics = metrics
        self.maxPending = maxPending
        self.logger = logger
        var initial = State()
        for function in core.ordered { initial.functions[function.name] = PerFunction() }
        state = Mutex(initial)
    }

    /// Pending invocations (waiting, scheduled for retry, running).
    var pendingCount: Int { state.withLock { $0.pending } }

    /// Pending per function.
    func pending(of function: String) -> (waiting: Int, running: Int) {
        state.withLock { s in
            if leased != nil { return s.sharedCounts[function] ?? (0, 0) }
            return (s.functions[function]?.ready.count ?? 0, s.functions[function]?.running ?? 0)
        }
    }

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

    /// Adds invocations already on disk to the schedule (leased mode: wakes the claim loop; the queue holds them).
    func schedule(_ invocations: [QueuedInvocation]) {
        guard !invocations.isEmpty else { return }
        if leased != nil {
            state.withLock { $0.enqueuedSinceCount += invocations.count }
            wake.fire()
            return
        }
        var unknown: [QueuedInvocation] = []
        state.withLock { s in
            for invocation in invocations {
                guard s.functions[invocation.function] != nil else {
                    unknown.append(invocation)
                    continue
                }
                s.sequence += 1
                s.functions[invocation.function]!.ready.insert(Entry(invocation: invocation, sequence: s.sequence))
            }
        }
        for invocation in unknown {
            // Configuration changed since it was queued: dead-letter it where an operator can see (and re-drive
            // it once the function is back).
            let error = GatewayError.notFound(
                arn: core.configuration.arn(of: invocation.function), function: invocation.function)
            queue.recordOutcome(
                id: invocation.id, attempt: invocation.attempts, startedAt: nil,
                outcome: .dead(errorType: error.code.lambdaErrorType, message: error.message), finishedAt: Date(),
                durationMs: nil)
            metrics.outcome(function: invocation.function, "dead")
        }
        updateDepth()
        wake.fire()
    }

    // MARK: Running

    /// Recovers the queue (interrupted attempts back to pending) and schedules everything pending.
    func recover() async throws {
        let pending = try await queue.recover(now: Date())
        if !pending.isEmpty {
            logger.info(
                "recovered pending invocations", metadata: ["cinescale.count": .stringConvertible(pending.count)])
        }
        schedule(pending)
    }

    /// Starts due attempts until `stop()`; returns when stopped and every attempt it started has ended (or
    /// after `drainFor` more; those stay `running` on disk and are recovered at the next start).
    func run(drainFor: Duration) async {
        if let leased {
            let wake = self.wake
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await leased.watch { wake.fire() } }
                await runLeased(leased)
                group.cancelAll()
            }
        } else {
            await runLocal()
        }
        // Let running attempts finish (workers are being stopped; their outcomes are recorded).
        let deadline = ContinuousClock.now + drainFor
        while state.withLock({ s in s.functions.values.contains { $0.running > 0 } }), ContinuousClock.now < deadline {
            if let leased { await renewLeases(leased) }
            await wake.wait(timeout: .milliseconds(50))
        }
        // Every recorded transition written before returning.
        try? await queue.flush()
    }

    private func runLocal() async {
        while true {
            let (due, nextDue, stopping) = takeDue(now: Date())
            if stopping { break }
            for invocation in due { start(invocation) }
            let longRunning = recordLongRunningStarts()
            let wait = nextDue.map { max(0, $0.timeIntervalSinceNow) } ?? 1
            let cap = longRunning ? Self.startRecordDelay.seconds / 2 : 1
            await wake.wait(timeout: .milliseconds(Int64(min(wait, cap) * 1000) + 1))
        }
    }

    /// Leased mode: claims due work up to the free capacity of each function, renews leases, refreshes the
    /// shared counts; sleeps until woken (an enqueue here or elsewhere, a finished attempt) or the next due time.
    private func runLeased(_ leased: any LeasedInvocationQueue) async {
        let renewEvery = leased.leaseDuration / 3
        var lastRenewal = ContinuousClock.now
        var lastCount = ContinuousClock.now - .seconds(10)
        var failures = 0
        while !state.withLock({ $0.stopping }) {
            var wait: Duration = .seconds(1)
            do {
                let limits = state.withLock { s -> [String: Int] in
                    var limits: [String: Int] = [:]
                    for function in core.ordered {
                        limits[function.name] = function.configuration.concurrency - s.functions[function.name]!.running
                    }
                    return limits
                }
                let claimed = try await leased.claim(limits, now: Date())
                let stopping = state.withLock { s -> Bool in
                    for invocation in claimed {
                        s.functions[invocation.function]!.running += 1
                        s.leasedRunning.insert(invocation.id)
                    }
                    return s.stopping
                }
                for invocation in claimed {
                    if stopping {
                        // Claimed as shutdown began: hand it straight back.
                        let attempt = Started(attempt: invocation.attempts + 1, at: Date(), clock: .now)
                        finish(invocation, outcome: .returned(retryAt: Date()), attempt: attempt)
                    } else {
                        start(invocation)
                    }
                }
                if ContinuousClock.now - lastRenewal >= renewEvery {
                    await renewLeases(leased)
                    lastRenewal = .now
                }
                if ContinuousClock.now - lastCount >= .seconds(1) {
                    let counts = try await leased.pendingCounts()
                    state.withLock { s in
                        s.sharedCounts = counts
                        s.enqueuedSinceCount = 0
                    }
                    updateDepth()
                    lastCount = .now
                }
                // Only functions with a free worker can start anything: a backlog of a busy function is due
                // already, and waiting for it would spin (its finishing attempt wakes this loop instead).
                let free = state.withLock { s in
                    core.ordered.filter { s.functions[$0.name]!.running < $0.configuration.concurrency }.map(\.name)
                }
                if !free.isEmpty, let next = try await leased.nextDue(functions: free) {
                    wait = min(wait, .milliseconds(Int64(max(0, next.timeIntervalSinceNow) * 1000) + 1))
                }
                wait = min(wait, renewEvery)
                failures = 0
            } catch {
                failures += 1
                if failures == 1 || failures % 30 == 0 {
                    logger.error(
                        "the shared invocation queue is unavailable; retrying",
                        metadata: [
                            "cinescale.error": "\(String(reflecting: error))",
                            "cinescale.attempts": .stringConvertible(failures),
                        ])
                }
                await renewLeases(leased)
                wait = .seconds(1)
            }
            await wake.wait(timeout: wait)
        }
    }

    /// Renews the leases of the attempts this gateway runs; logs those lost to another gateway.
    private func renewLeases(_ leased: any LeasedInvocationQueue) async {
        let ids = state.withLock { Array($0.leasedRunning) }
        guard !ids.isEmpty else { return }
        do {
            let lost = try await leased.renewLeases(ids)
            for id in lost where state.withLock({ $0.leasedRunning.contains(id) }) {
                logger.warning(
                    "lost the lease of a running attempt; another gateway may run it again",
                    metadata: [
                        "cinescale.request.id": .string(id)
                    ])
            }
        } catch {
            logger.warning("could not renew leases", metadata: ["cinescale.error": "\(String(reflecting: error))"])
        }
    }

    /// Writes the start of attempts running for longer than `startRecordDelay`; returns whether any attempt
    /// is still unrecorded.
    private func recordLongRunningStarts() -> Bool {
        let now = ContinuousClock.now
        let (due, remaining) = state.withLock { s -> ([(String, Started)], Bool) in
            let due = s.unrecordedStarts.filter { now - $0.value.clock >= Self.startRecordDelay }
            for (id, _) in due { s.unrecordedStarts[id] = nil }
            return (due.map { ($0.key, $0.value) }, !s.unrecordedStarts.isEmpty)
        }
        for (id, started) in due { queue.recordStart(id: id, attempt: started.attempt, at: started.at) }
        return remaining
    }

    /// Stops starting attempts.
    func stop() {
        state.withLock { $0.stopping = true }
        wake.fire()
    }

    private func takeDue(now: Date) -> ([QueuedInvocation], Date?, Bool) {
        state.withLock { s in
            if s.stopping { return ([], nil, true) }
            var due: [QueuedInvocation] = []
            var next: Date?
            for function in core.ordered {
                let capacity = function.configuration.concurrency
                var f = s.functions[function.name]!
                while f.running < capacity, let top = f.ready.peek {
                    if top.invocation.nextAttemptAt > now {
                        next = min(next ?? top.invocation.nextAttemptAt, top.invocation.nextAttemptAt)
                        break
                    }
                    _ = f.ready.pop()
                    f.running += 1
                    due.append(top.invocation)
                }
                s.functions[function.name] = f
            }
            return (due, next, false)
        }
    }

    private func start(_ invocation: QueuedInvocation) {
        let now = Date()
        let function = invocation.function
        let policy = core.dispatchers[function]!.configuration.retry
        if now >= invocation.expiresAt {
            finish(
                invocation,
                outcome: .dead(
                    errorType: "EventAgeExceeded",
                    message: "The event is older than the maximum event age (\(Int(policy.maxEventAge.seconds)) s)."),
                attempt: nil)
            return
        }
        let attempt = Started(attempt: invocation.attempts + 1, at: now, clock: .now)
        state.withLock { $0.unrecordedStarts[invocation.id] = attempt }
        metrics.started(function: function, waited: now.timeIntervalSince(invocation.nextAttemptAt))
        do throws(GatewayError) {
            try core.submit(
                function: function, payload: ByteBuffer(bytes: invocation.payload), requestID: invocation.id
            ) {
                result in
                self.completed(invocation, attempt: attempt, result: result)
            }
        } catch {
            completed(invocation, attempt: attempt, result: .failure(error))
        }
    }

    private func completed(
        _ invocation: QueuedInvocation, attempt started: Started, result: Result<InvocationResult, GatewayError>
    ) {
        let attempt = started.attempt
        let policy = core.dispatchers[invocation.function]!.configuration.retry
        let now = Date()
        let outcome: AttemptOutcome
        switch result {
        case .success(let r) where !r.isError:
            outcome = .succeeded
        case .success(let r):
            let (type, message) = Self.describeError(r)
            if state.withLock({ $0.stopping }) {
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
        finish(invocation, outcome: outcome, attempt: started)
    }

    /// Records the outcome of `started` (nil: dead-lettered without running) and reschedules or forgets it.
    private func finish(_ invocation: QueuedInvocation, outcome: AttemptOutcome, attempt started: Started?) {
        let attempt = started?.attempt ?? invocation.attempts
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
        let leased = self.leased != nil
        state.withLock { s in
            s.functions[invocation.function]!.running -= 1
            s.unrecordedStarts[invocation.id] = nil
            s.leasedRunning.remove(invocation.id)
            if let again, !s.stopping, !leased {
                s.sequence += 1
                s.functions[invocation.function]!.ready.insert(Entry(invocation: again, sequence: s.sequence))
            }
        }
        updateDepth()
        wake.fire()
    }

    private func updateDepth() {
        let depths = state.withLock { s in
            leased != nil
                ? s.sharedCounts.mapValues { ($0.waiting, $0.running) }
                : s.functions.mapValues { ($0.ready.count, $0.running) }
        }
        for (function, (waiting, running)) in depths {
            metrics.depth(function: function, waiting: waiting, running: running)
        }
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

/// Wakes one waiting task; a `fire()` with no waiter is remembered until the next `wait`.
final class WakeSignal: Sendable {
    private struct State {
        var fired = false
        var waiter: CheckedContinuation<Void, Never>?
        var generation: UInt64 = 0
    }

    private let state = Mutex(State())

    func fire() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w
            }
            s.fired = true
            return nil
        }
        waiter?.resume()
    }

    /// Returns after `fire()` or `timeout`, whichever first (or at once if fired since the last wait).
    func wait(timeout: Duration) async {
        let generation = state.withLock { s -> UInt64? in
            if s.fired {
                s.fired = false
                return nil
            }
            s.generation += 1
            return s.generation
        }
        guard let generation else { return }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.expire(generation)
        }
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { s -> Bool in
                if s.fired || s.generation != generation {
                    s.fired = false
                    return true
                }
                s.waiter = continuation
                return false
            }
            if resumeNow { continuation.resume() }
        }
        timer.cancel()
    }

    private func expire(_ generation: UInt64) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard s.generation == generation else { return nil }
            s.generation += 1
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }
}

/// A binary min-heap.
struct MinHeap<Element: Comparable> {
    private var items: [Element] = []

    var count: Int { items.count }
    var peek: Element? { items.first }

    mutating func insert(_ element: Element) {
        items.append(element)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Element? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < items.count, items[left] < items[smallest] { smallest = left }
            if right < items.count, items[right] < items[smallest] { smallest = right }
            if smallest == parent { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return top
    }
}
