import Foundation
import InvocationQueue
import Synchronization

/// The scheduler of a queue of its own (SQLite, one gateway): it keeps the schedule in memory — per function,
/// the invocations due now or later, earliest first — rebuilt from the queue by `recover()` at start, and
/// records every transition in the queue. An attempt's start is written only once it has run for
/// `startRecordDelay` (most finish sooner, and their outcome record carries the start).
final class LocalScheduler: SchedulingMode {
    private let runner: AttemptRunner
    private let state: Mutex<State>

    static let startRecordDelay: Duration = .milliseconds(200)

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

    private struct State {
        /// Per function: the invocations waiting to start, by due time.
        var ready: [String: MinHeap<Entry>] = [:]
        var running: RunningAttempts
        /// Running attempts whose start is not on disk yet.
        var unrecordedStarts: [String: Attempt] = [:]
        var sequence: UInt64 = 0
    }

    init(runner: AttemptRunner) {
        self.runner = runner
        var initial = State(running: RunningAttempts(runner.core.ordered))
        for function in runner.core.ordered { initial.ready[function.name] = MinHeap() }
        state = Mutex(initial)
    }

    // MARK: Counts

    var pendingCount: Int { state.withLock { s in s.ready.values.reduce(s.running.total) { $0 + $1.count } } }

    func pending(of function: String) -> (waiting: Int, running: Int) {
        state.withLock { s in (s.ready[function]?.count ?? 0, s.running.count(of: function)) }
    }

    var isRunning: Bool { state.withLock { !$0.running.isEmpty } }

    private func updateDepth() {
        let depths = state.withLock { s in
            s.ready.map { function, ready in (function, ready.count, s.running.count(of: function)) }
        }
        for (function, waiting, running) in depths {
            runner.metrics.depth(function: function, waiting: waiting, running: running)
        }
    }

    // MARK: Work

    func schedule(_ invocations: [QueuedInvocation]) {
        guard !invocations.isEmpty else { return }
        var unknown: [QueuedInvocation] = []
        state.withLock { s in
            for invocation in invocations {
                guard s.ready[invocation.function] != nil else {
                    unknown.append(invocation)
                    continue
                }
                s.sequence += 1
                s.ready[invocation.function]!.insert(Entry(invocation: invocation, sequence: s.sequence))
            }
        }
        // Configuration changed since they were queued.
        for invocation in unknown { runner.deadLetterUnknown(invocation) }
        updateDepth()
        runner.wake.fire()
    }

    func run() async {
        while !runner.isStopping {
            let (due, nextDue) = takeDue(now: Date())
            for invocation in due { runner.start(invocation, for: self) }
            let longRunning = recordLongRunningStarts()
            let wait = nextDue.map { max(0, $0.timeIntervalSinceNow) } ?? 1
            let cap = longRunning ? Self.startRecordDelay.seconds / 2 : 1
            await runner.wake.wait(timeout: .milliseconds(Int64(min(wait, cap) * 1000) + 1))
        }
    }

    /// Nothing to keep: the queue is this gateway's alone.
    func keepClaims() async {}

    /// Takes the due invocations each function has room for, counted running; returns them and the earliest
    /// due time of those left waiting for their time.
    private func takeDue(now: Date) -> (due: [QueuedInvocation], next: Date?) {
        state.withLock { s in
            var due: [QueuedInvocation] = []
            var next: Date?
            for function in runner.core.ordered.map(\.name) {
                while s.running.room(for: function) > 0, let top = s.ready[function]!.peek {
                    if top.invocation.nextAttemptAt > now {
                        next = min(next ?? top.invocation.nextAttemptAt, top.invocation.nextAttemptAt)
                        break
                    }
                    _ = s.ready[function]!.pop()
                    s.running.started(function)
                    due.append(top.invocation)
                }
            }
            return (due, next)
        }
    }

    /// Writes the start of attempts running for longer than `startRecordDelay`; returns whether any attempt
    /// is still unrecorded.
    private func recordLongRunningStarts() -> Bool {
        let now = ContinuousClock.now
        let (due, remaining) = state.withLock { s -> ([(String, Attempt)], Bool) in
            let due = s.unrecordedStarts.filter { now - $0.value.clock >= Self.startRecordDelay }
            for (id, _) in due { s.unrecordedStarts[id] = nil }
            return (due.map { ($0.key, $0.value) }, !s.unrecordedStarts.isEmpty)
        }
        for (id, started) in due { runner.queue.recordStart(id: id, attempt: started.number, at: started.at) }
        return remaining
    }

    // MARK: Attempts

    func attemptStarted(_ invocation: QueuedInvocation, _ attempt: Attempt) {
        state.withLock { $0.unrecordedStarts[invocation.id] = attempt }
    }

    func attemptEnded(_ invocation: QueuedInvocation, again: QueuedInvocation?) {
        let stopping = runner.isStopping
        state.withLock { s in
            s.running.ended(invocation.function)
            s.unrecordedStarts[invocation.id] = nil
            if let again, !stopping {
                s.sequence += 1
                s.ready[invocation.function]!.insert(Entry(invocation: again, sequence: s.sequence))
            }
        }
        updateDepth()
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
