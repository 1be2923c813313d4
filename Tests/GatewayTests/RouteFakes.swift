import Foundation
import InvocationQueue
import Logging
import NIOCore
import Synchronization

@testable import Gateway

/// The durable queue in memory, for the route tests: the SQLite queue's semantics that the routes see
/// (dedupe keys, newest-first listings with a filter, re-drive of dead letters), and a switch that makes
/// every call fail with an error full of internal detail (which no answer may repeat).
final class InMemoryInvocationQueue: DurableInvocationQueue {
    struct Failure: Error, CustomStringConvertible {
        var description: String { "SQLite error 10: disk I/O error in /var/lib/cinescale/queue.sqlite" }
    }

    private struct State {
        var invocations: [String: QueuedInvocation] = [:]
        var failing = false
        /// Runs inside `redrive` before it looks (a concurrent re-drive winning the race).
        var beforeRedrive: (@Sendable (inout [String: QueuedInvocation]) -> Void)?
    }

    private let state = Mutex(State())

    var failing: Bool {
        get { state.withLock { $0.failing } }
        set { state.withLock { $0.failing = newValue } }
    }

    func beforeRedrive(_ change: @escaping @Sendable (inout [String: QueuedInvocation]) -> Void) {
        state.withLock { $0.beforeRedrive = change }
    }

    /// Puts `invocation` in the queue as it is (any state), as a gateway's history would have left it.
    func seed(_ invocation: QueuedInvocation) {
        state.withLock { $0.invocations[invocation.id] = invocation }
    }

    var all: [QueuedInvocation] { state.withLock { Array($0.invocations.values) } }

    private func check() throws {
        if failing { throw Failure() }
    }

    func enqueue(_ invocations: [QueuedInvocation]) async throws -> [EnqueueResult] {
        try check()
        return state.withLock { s in
            invocations.map { invocation in
                if let key = invocation.dedupeKey,
                    let existing = s.invocations.values.first(where: { $0.dedupeKey == key })
                {
                    return .duplicate(existingID: existing.id)
                }
                s.invocations[invocation.id] = invocation
                return .inserted(invocation)
            }
        }
    }

    func recordStart(id: String, attempt: Int, at time: Date) {
        state.withLock { s in
            s.invocations[id]?.state = .running
            s.invocations[id]?.attempts = attempt
            s.invocations[id]?.startedAt = time
        }
    }

    func recordOutcome(
        id: String, attempt: Int, startedAt: Date?, outcome: AttemptOutcome, finishedAt: Date, durationMs: Double?,
        done: @escaping @Sendable ((any Error)?) -> Void
    ) {
        state.withLock { s in
            guard var i = s.invocations[id] else { return }
            i.attempts = attempt
            i.finishedAt = finishedAt
            i.durationMs = durationMs
            switch outcome {
            case .succeeded: i.state = .succeeded
            case .failed(let type, let message, let retryAt):
                (i.state, i.errorType, i.errorMessage, i.nextAttemptAt) = (.failed, type, message, retryAt)
            case .dead(let type, let message): (i.state, i.errorType, i.errorMessage) = (.dead, type, message)
            case .returned(let retryAt): (i.state, i.nextAttemptAt) = (.queued, retryAt)
            }
            s.invocations[id] = i
        }
        done(nil)
    }

    func redrive(id: String, now: Date, maxAttempts: Int, maxEventAge: TimeInterval) async throws -> QueuedInvocation? {
        try check()
        return state.withLock { s in
            s.beforeRedrive?(&s.invocations)
            guard var i = s.invocations[id], i.state == .dead else { return nil }
            i.state = .queued
            i.attempts = 0
            i.maxAttempts = maxAttempts
            i.nextAttemptAt = now
            i.expiresAt = now.addingTimeInterval(maxEventAge)
            i.source = "redrive"
            s.invocations[id] = i
            return i
        }
    }

    func recover(now: Date) async throws -> [QueuedInvocation] {
        try check()
        return state.withLock { $0.invocations.values.filter(\.isPending) }
    }

    func prune(finishedBefore cutoff: Date) async throws -> Int {
        try check()
        return state.withLock { s in
            let old = s.invocations.values.filter {
                ($0.state == .succeeded || $0.state == .dead) && ($0.finishedAt ?? .distantFuture) < cutoff
            }
            for i in old { s.invocations[i.id] = nil }
            return old.count
        }
    }

    func get(id: String) async throws -> QueuedInvocation? {
        try check()
        return state.withLock { $0.invocations[id] }
    }

    func list(_ filter: InvocationFilter) async throws -> [QueuedInvocation] {
        try check()
        return state.withLock { s in
            s.invocations.values
                .filter { i in
                    (filter.states.isEmpty || filter.states.contains(i.state))
                        && (filter.function.map { $0 == i.function } ?? true)
                        && (filter.createdBefore.map { i.createdAt < $0 } ?? true)
                }
                .sorted { $0.createdAt != $1.createdAt ? $0.createdAt > $1.createdAt : $0.id < $1.id }
                .prefix(max(0, filter.limit)).map { $0 }
        }
    }

    func counts() async throws -> [String: [QueuedInvocation.State: Int]] {
        try check()
        return state.withLock { s in
            var result: [String: [QueuedInvocation.State: Int]] = [:]
            for i in s.invocations.values { result[i.function, default: [:]][i.state, default: 0] += 1 }
            return result
        }
    }

    func flush() async throws { try check() }
}

/// The asynchronous side the routes see, over the in-memory queue: the scheduler's admission bound
/// (`maxPending` pending invocations, refused with the scheduler's 429), and a record of what was scheduled
/// instead of running it.
final class FakeScheduler: InvocationScheduling {
    let memory: InMemoryInvocationQueue
    let maxPending: Int
    private let scheduled_ = Mutex<[String]>([])

    init(queue: InMemoryInvocationQueue, maxPending: Int) {
        self.memory = queue
        self.maxPending = maxPending
    }

    var queue: any DurableInvocationQueue { memory }

    /// Ids handed to the schedule, in order.
    var scheduled: [String] { scheduled_.withLock { $0 } }

    private var pendingCount: Int { memory.all.filter(\.isPending).count }

    func admit(_ count: Int) throws(GatewayError) {
        let pending = pendingCount
        guard pending < maxPending else {
            throw GatewayError(
                .tooManyRequests,
                "The invocation queue holds \(pending) pending invocations (limit \(maxPending)); retry later.")
        }
    }

    func enqueue(_ invocations: [QueuedInvocation]) async throws -> [EnqueueResult] {
        let results = try await memory.enqueue(invocations)
        schedule(results.compactMap { if case .inserted(let i) = $0 { i } else { nil } })
        return results
    }

    func schedule(_ invocations: [QueuedInvocation]) {
        scheduled_.withLock { $0 += invocations.map(\.id) }
    }

    func pending(of function: String) -> (waiting: Int, running: Int) {
        let mine = memory.all.filter { $0.function == function }
        return (
            mine.filter { $0.state == .queued || $0.state == .failed }.count, mine.filter { $0.state == .running }.count
        )
    }
}

/// A function runner without workers: checks the payload as the gateway does (the core's `prepare`: size,
/// JSON, `{}` for an empty body), then answers with `answer` — or fails with `failure` before reaching it.
struct FakeInvoker: FunctionInvoker {
    let core: GatewayCore
    var answer: @Sendable (_ function: String, _ payload: ByteBuffer, _ requestID: String) -> InvocationResult = {
        InvocationResult(requestID: $2, payload: $1)
    }
    var failure: GatewayError?

    func invoke(function: String, payload: ByteBuffer, requestID: String?) async throws(GatewayError)
        -> InvocationResult
    {
        let (_, payload) = try core.prepare(function: function, payload: payload)
        if let failure { throw failure }
        return answer(function, payload, requestID ?? UUID().uuidString.lowercased())
    }

    func submit(
        function: String, payload: ByteBuffer, requestID: String?,
        completion: @escaping @Sendable (Result<InvocationResult, GatewayError>) -> Void
    ) throws(GatewayError) {
        let (_, payload) = try core.prepare(function: function, payload: payload)
        if let failure { throw failure }
        completion(.success(answer(function, payload, requestID ?? UUID().uuidString.lowercased())))
    }
}

/// Log lines kept in memory, to check that what a client is not told is logged, under the id it is told.
final class LogCapture: Sendable {
    struct Line: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let lines_ = Mutex<[Line]>([])
    var lines: [Line] { lines_.withLock { $0 } }

    var logger: Logger {
        var logger = Logger(label: "test.routes") { _ in Handler(capture: self) }
        logger.logLevel = .trace
        return logger
    }

    func append(_ line: Line) { lines_.withLock { $0.append(line) } }

    /// The lines carrying `cinescale.request.id` = `id`.
    func lines(requestID id: String) -> [Line] { lines.filter { $0.metadata["cinescale.request.id"] == id } }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var all = metadata
            if let more = event.metadata { all.merge(more) { $1 } }
            capture.append(
                Line(level: event.level, message: "\(event.message)", metadata: all.mapValues { "\($0)" }))
        }
    }
}
