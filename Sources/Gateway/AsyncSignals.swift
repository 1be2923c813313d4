import Synchronization

/// A one-shot event: `fire()` once, `wait()` returns once fired (or when the waiting task is cancelled).
/// Public for the event sources (a poll source's first scan).
public final class AsyncEvent: Sendable {
    private struct State {
        var fired = false
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public var isFired: Bool { state.withLock { $0.fired } }

    public func fire() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            guard !s.fired else { return [] }
            s.fired = true
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns when the event fires or the task is cancelled, whichever comes first.
    public func wait() async {
        let id = state.withLock { s -> Int in
            s.nextID += 1
            return s.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { s -> Bool in
                    if s.fired || Task.isCancelled { return true }
                    s.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }

    /// Sleeps for `duration` unless the event fires first. Returns true when the event fired.
    public func sleep(for duration: Duration) async -> Bool {
        if isFired { return true }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: duration) }
            group.addTask { await self.wait() }
            await group.next()
            group.cancelAll()
        }
        return isFired
    }
}

/// A value published once (a bound port), awaited by others.
final class AsyncValue<Value: Sendable>: Sendable {
    private struct State {
        var value: Result<Value, GatewayError>?
        var waiters: [CheckedContinuation<Result<Value, GatewayError>, Never>] = []
    }

    private let state = Mutex(State())

    init() {}

    func set(_ result: Result<Value, GatewayError>) {
        let waiters = state.withLock { s -> [CheckedContinuation<Result<Value, GatewayError>, Never>] in
            guard s.value == nil else { return [] }
            s.value = result
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume(returning: result) }
    }

    func get() async throws(GatewayError) -> Value {
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<Value, GatewayError>, Never>) in
            let ready = state.withLock { s -> Result<Value, GatewayError>? in
                if let value = s.value { return value }
                s.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
        return try result.get()
    }
}

/// Fires `reachedZero` when decremented to zero (immediately when created at zero).
final class Countdown: Sendable {
    private let count: Mutex<Int>
    let reachedZero = AsyncEvent()

    init(_ count: Int) {
        self.count = Mutex(count)
        if count <= 0 { reachedZero.fire() }
    }

    func decrement() {
        let zero = count.withLock { c -> Bool in
            c -= 1
            return c == 0
        }
        if zero { reachedZero.fire() }
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
