import Foundation
import InvocationQueue
import Synchronization

/// The scheduler of a queue shared by several gateways (a `LeasedInvocationQueue`, PostgreSQL): it holds no
/// schedule. It claims due invocations up to each function's free capacity, under a lease it renews while
/// their attempts run (an attempt whose gateway died is claimed again by another once its lease expires), and
/// is woken by the queue when another gateway adds work. Its pending counts are the shared queue's, refreshed
/// every second.
final class LeasedScheduler: SchedulingMode {
    private let queue: any LeasedInvocationQueue
    private let runner: AttemptRunner
    private let state: Mutex<State>

    private struct State {
        var running: RunningAttempts
        /// The attempts this gateway runs, whose leases it renews.
        var leased: Set<String> = []
        /// The shared queue's pending counts at the last refresh, plus what this gateway queued since.
        var sharedCounts: [String: (waiting: Int, running: Int)] = [:]
        var enqueuedSinceCount = 0
    }

    init(queue: any LeasedInvocationQueue, runner: AttemptRunner) {
        self.queue = queue
        self.runner = runner
        state = Mutex(State(running: RunningAttempts(runner.core.ordered)))
    }

    // MARK: Counts

    var pendingCount: Int {
        state.withLock { s in
            // Before the first refresh: what this gateway runs.
            if s.sharedCounts.isEmpty && s.enqueuedSinceCount == 0 { return s.running.total }
            return s.sharedCounts.values.reduce(s.enqueuedSinceCount) { $0 + $1.waiting + $1.running }
        }
    }

    func pending(of function: String) -> (waiting: Int, running: Int) {
        state.withLock { $0.sharedCounts[function] ?? (0, 0) }
    }

    var isRunning: Bool { state.withLock { !$0.running.isEmpty } }

    private func updateDepth() {
        let depths = state.withLock { $0.sharedCounts }
        for (function, (waiting, running)) in depths {
            runner.metrics.depth(function: function, waiting: waiting, running: running)
        }
    }

    // MARK: Work

    /// The queue holds them: counts them until the next refresh and wakes the claim loop.
    func schedule(_ invocations: [QueuedInvocation]) {
        guard !invocations.isEmpty else { return }
        state.withLock { $0.enqueuedSinceCount += invocations.count }
        runner.wake.fire()
    }

    func run() async {
        let (queue, wake) = (self.queue, runner.wake)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await queue.watch { wake.fire() } }
            await claimUntilStopped()
            group.cancelAll()
        }
    }

    /// Renews the leases of the attempts still running.
    func keepClaims() async { await renewLeases() }

    /// Claims due work up to the free capacity of each function, renews leases, refreshes the shared counts;
    /// sleeps until woken (an enqueue here or elsewhere, a finished attempt) or the next due time.
    private func claimUntilStopped() async {
        let renewEvery = queue.leaseDuration / 3
        var lastRenewal = ContinuousClock.now
        var lastCount = ContinuousClock.now - .seconds(10)
        var failures = 0
        while !runner.isStopping {
            var wait: Duration = .seconds(1)
            do {
                let limits = state.withLock { $0.running.room }
                let claimed = try await queue.claim(limits, now: Date())
                state.withLock { s in
                    for invocation in claimed {
                        s.running.started(invocation.function)
                        s.leased.insert(invocation.id)
                    }
                }
                let stopping = runner.isStopping
                for invocation in claimed {
                    if stopping {
                        // Claimed as shutdown began: hand it straight back.
                        runner.handBack(invocation, for: self)
                    } else {
                        runner.start(invocation, for: self)
                    }
                }
                if ContinuousClock.now - lastRenewal >= renewEvery {
                    await renewLeases()
                    lastRenewal = .now
                }
                if ContinuousClock.now - lastCount >= .seconds(1) {
                    let counts = try await queue.pendingCounts()
                    state.withLock { s in
                        s.sharedCounts = counts
                        s.enqueuedSinceCount = 0
                    }
                    updateDepth()
                    lastCount = .now
                }
                // Only functions with a free worker can start anything: a backlog of a busy function is due
                // already, and waiting for it would spin (its finishing attempt wakes this loop instead).
                let free = state.withLock { $0.running.functionsWithRoom }
                if !free.isEmpty, let next = try await queue.nextDue(functions: free) {
                    wait = min(wait, .milliseconds(Int64(max(0, next.timeIntervalSinceNow) * 1000) + 1))
                }
                wait = min(wait, renewEvery)
                failures = 0
            } catch {
                failures += 1
                if failures == 1 || failures % 30 == 0 {
                    runner.logger.error(
                        "the shared invocation queue is unavailable; retrying",
                        metadata: [
                            "cinescale.error": "\(String(reflecting: error))",
                            "cinescale.attempts": .stringConvertible(failures),
                        ])
                }
                await renewLeases()
                wait = .seconds(1)
            }
            await runner.wake.wait(timeout: wait)
        }
    }

    /// Renews the leases of the attempts this gateway runs; logs those lost to another gateway.
    private func renewLeases() async {
        let ids = state.withLock { Array($0.leased) }
        guard !ids.isEmpty else { return }
        do {
            let lost = try await queue.renewLeases(ids)
            for id in lost where state.withLock({ $0.leased.contains(id) }) {
                runner.logger.warning(
                    "lost the lease of a running attempt; another gateway may run it again",
                    metadata: [
                        "cinescale.request.id": .string(id)
                    ])
            }
        } catch {
            runner.logger.warning(
                "could not renew leases", metadata: ["cinescale.error": "\(String(reflecting: error))"])
        }
    }

    // MARK: Attempts

    /// The claim recorded the start.
    func attemptStarted(_ invocation: QueuedInvocation, _ attempt: Attempt) {}

    /// The queue holds a retry (recorded with its time by the outcome) for whichever gateway claims it next.
    func attemptEnded(_ invocation: QueuedInvocation, again: QueuedInvocation?) {
        state.withLock { s in
            s.running.ended(invocation.function)
            s.leased.remove(invocation.id)
        }
        updateDepth()
    }
}
