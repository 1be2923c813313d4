import Synchronization

/// The outcome writes `recordOutcome` submits, made by the queue's run loop in child tasks of its own (none
/// outlives the queue), and what `flush()` waits for: every write submitted so far made or abandoned.
final class OutcomeWrites: Sendable {
    struct Write: Sendable {
        /// Makes the write, then calls `finished()`.
        let make: @Sendable () async -> Void
        /// Reports the write as not made (the queue stopped), then calls `finished()`.
        let abandon: @Sendable () -> Void
    }

    private struct State {
        var waiting: [Write] = []
        /// Submitted, not yet finished.
        var unfinished = 0
        var stopped = false
        var flushes: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())
    /// One element whenever writes are waiting (at most one buffered: the run loop takes them all at once).
    let submitted: AsyncStream<Void>
    private let signal: AsyncStream<Void>.Continuation

    init() {
        (submitted, signal) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Hands `write` to the run loop; abandons it at once if the loop has stopped.
    func submit(_ write: Write) {
        let accepted = state.withLock { state -> Bool in
            state.unfinished += 1
            guard !state.stopped else { return false }
            state.waiting.append(write)
            return true
        }
        if accepted {
            signal.yield()
        } else {
            write.abandon()
        }
    }

    /// The writes submitted since the last call.
    func take() -> [Write] {
        state.withLock { state in
            defer { state.waiting = [] }
            return state.waiting
        }
    }

    /// Ends `submitted` once what it holds has been read (graceful shutdown).
    func close() {
        signal.finish()
    }

    /// Refuses later writes (they are abandoned) and returns those not yet taken.
    func stop() -> [Write] {
        signal.finish()
        return state.withLock { state in
            state.stopped = true
            defer { state.waiting = [] }
            return state.waiting
        }
    }

    func finished() {
        let flushes = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.unfinished -= 1
            guard state.unfinished == 0 else { return [] }
            defer { state.flushes = [] }
            return state.flushes
        }
        for flush in flushes { flush.resume() }
    }

    /// Returns once every write submitted so far is made or abandoned.
    func flush() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                guard state.unfinished > 0 else { return true }
                state.flushes.append(continuation)
                return false
            }
            if done { continuation.resume() }
        }
    }
}
