import Foundation
import InvocationQueue
import Logging
import Testing

@testable import Gateway

/// The scheduler's bookkeeping in process, without workers (its attempts run in TriggerTests, on both queues).
@Suite("Async scheduler (no workers)")
struct AsyncSchedulerTests {
    static func core(_ functions: [(String, Int)]) -> GatewayCore {
        GatewayCore(
            configuration: GatewayConfiguration(
                functions: functions.map {
                    FunctionConfiguration(name: $0.0, command: ["/bin/true"], concurrency: $0.1)
                }),
            logger: LiveGateway.logger)
    }

    static func invocation(_ id: String, _ function: String, dedupeKey: String? = nil) -> QueuedInvocation {
        let now = Date()
        return QueuedInvocation(
            id: id, function: function, source: "invoke", dedupeKey: dedupeKey, payload: Data("{}".utf8),
            maxAttempts: 3, createdAt: now, expiresAt: now.addingTimeInterval(3600), nextAttemptAt: now)
    }

    @Test func runningAttemptsCountEachFunctionAgainstItsConcurrency() {
        var running = RunningAttempts(Self.core([("b", 1), ("a", 2)]).ordered)
        #expect(running.room == ["a": 2, "b": 1])
        running.started("a")
        running.started("b")
        #expect(running.room(for: "a") == 1)
        #expect(running.functionsWithRoom == ["a"])
        #expect(running.total == 2)
        running.ended("a")
        running.ended("b")
        #expect(running.isEmpty)
        #expect(running.functionsWithRoom == ["a", "b"])
    }

    @Test func aLocalSchedulerCountsWhatItHoldsAndDeadLettersUnknownFunctions() async throws {
        let dir = try ScratchDirectory()
        let queue = try SQLiteInvocationQueue(path: dir.path + "/queue.sqlite")
        let core = Self.core([("a", 2)])
        let scheduler = AsyncScheduler(
            queue: .local(queue), core: core, metrics: GatewayMetrics(functions: ["a"]), maxPending: 3,
            logger: LiveGateway.logger)
        let results = try await scheduler.enqueue([
            Self.invocation("1", "a", dedupeKey: "k"), Self.invocation("2", "a"), Self.invocation("3", "a"),
            Self.invocation("4", "a", dedupeKey: "k"),
        ])
        #expect(results.filter { if case .inserted = $0 { true } else { false } }.count == 3)
        #expect(scheduler.pendingCount == 3)
        #expect(scheduler.pending(of: "a") == (waiting: 3, running: 0))
        #expect(throws: GatewayError.self) { try scheduler.admit(1) }

        // Queued while the function was configured; it is gone now.
        _ = try await queue.enqueue([Self.invocation("5", "gone")])
        scheduler.schedule([Self.invocation("5", "gone")])
        try await queue.flush()
        #expect(try await queue.get(id: "5")?.state == .dead)
        #expect(scheduler.pendingCount == 3)
    }
}

/// A temporary directory removed afterwards.
final class ScratchDirectory: Sendable {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("cinescale-gw-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}
