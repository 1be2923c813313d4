import DurableSQLite
import Foundation
import GRDB
import InvocationQueue
import Testing

@Suite struct InvocationQueueTests {
    let directory: String

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("cinescale-queue-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    func invocation(_ id: String, dedupe: String? = nil, now: Date = Date()) -> QueuedInvocation {
        QueuedInvocation(
            id: id, function: "probe", source: "s3", dedupeKey: dedupe, payload: Data("{\"n\":\"\(id)\"}".utf8),
            maxAttempts: 3, createdAt: now, expiresAt: now.addingTimeInterval(3600), nextAttemptAt: now)
    }

    @Test func enqueueDeduplicatesOnTheKey() async throws {
        let queue = try SQLiteInvocationQueue(path: "\(directory)/q.sqlite")
        let first = try await queue.enqueue([invocation("a", dedupe: "k1"), invocation("b", dedupe: "k2")])
        #expect(first == [.inserted(invocation("a", dedupe: "k1", now: firstDate(first[0]))),
                          .inserted(invocation("b", dedupe: "k2", now: firstDate(first[1])))])
        let again = try await queue.enqueue([invocation("c", dedupe: "k1"), invocation("d")])
        #expect(again[0] == .duplicate(existingID: "a"))
        guard case .inserted = again[1] else { Issue.record("d was not inserted"); return }
        let all = try await queue.list(InvocationFilter())
        #expect(Set(all.map(\.id)) == ["a", "b", "d"])
    }

    private func firstDate(_ r: EnqueueResult) -> Date {
        if case .inserted(let i) = r { return i.createdAt }
        return Date()
    }

    @Test func concurrentEnqueuesAreAllDurableAndDeduplicated() async throws {
        let path = "\(directory)/q.sqlite"
        let queue = try SQLiteInvocationQueue(path: path)
        // 400 writers, 200 distinct keys: every key lands once, whichever writer won.
        let results = try await withThrowingTaskGroup(of: EnqueueResult.self) { group in
            for n in 0..<400 {
                group.addTask { try await queue.enqueue([self.invocation("id-\(n)", dedupe: "key-\(n % 200)")])[0] }
            }
            var all: [EnqueueResult] = []
            for try await r in group { all.append(r) }
            return all
        }
        let inserted = results.filter { if case .inserted = $0 { true } else { false } }
        #expect(inserted.count == 200)
        // A second handle on the file (as after a restart) sees all of them.
        let reopened = try SQLiteInvocationQueue(path: path)
        let pending = try reopened.recover(now: Date())
        #expect(pending.count == 200)
        #expect(Set(pending.compactMap(\.dedupeKey)).count == 200)
    }

    @Test func attemptsOutcomesRecoveryAndRedrive() async throws {
        let path = "\(directory)/q.sqlite"
        let queue = try SQLiteInvocationQueue(path: path)
        let now = Date()
        _ = try await queue.enqueue([invocation("x", now: now), invocation("y", now: now), invocation("z", now: now)])
        queue.recordStart(id: "x", attempt: 1, at: now)
        queue.recordStart(id: "y", attempt: 1, at: now)
        queue.recordStart(id: "z", attempt: 1, at: now)
        try await record(queue, "x", .failed(errorType: "Boom", message: "first", retryAt: now.addingTimeInterval(5)))
        try await record(queue, "y", .dead(errorType: "Boom", message: "last"))
        // z is "running" when the gateway dies.

        let reopened = try SQLiteInvocationQueue(path: path)
        let pending = try reopened.recover(now: now)
        #expect(Set(pending.map(\.id)) == ["x", "z"])
        let z = try #require(pending.first { $0.id == "z" })
        #expect(z.state == .queued)
        #expect(z.attempts == 0)
        let x = try #require(pending.first { $0.id == "x" })
        #expect(x.state == .failed && x.attempts == 1 && x.errorType == "Boom" && x.errorMessage == "first")

        let dead = try await reopened.list(InvocationFilter(states: [.dead]))
        #expect(dead.map(\.id) == ["y"])
        #expect(dead[0].attempts == 1 && dead[0].errorMessage == "last")
        #expect(try await reopened.redrive(id: "x", now: now, maxAttempts: 3, maxEventAge: 60) == nil)
        let redriven = try #require(try await reopened.redrive(id: "y", now: now, maxAttempts: 3, maxEventAge: 60))
        #expect(redriven.state == .queued && redriven.attempts == 0 && redriven.source == "redrive")

        try await record(reopened, "x", .succeeded)
        // A start recorded late (after the outcome of the same attempt) changes nothing.
        reopened.recordStart(id: "x", attempt: 1, at: now)
        try await reopened.database.flush()
        #expect(try await reopened.get(id: "x")?.state == .succeeded)
        let counts = try await reopened.counts()
        #expect(counts["probe"]?[.succeeded] == 1)
        #expect(counts["probe"]?[.queued] == 2)
        #expect(try await reopened.prune(finishedBefore: Date().addingTimeInterval(60)) == 1)
        #expect(try await reopened.get(id: "x") == nil)
    }

    @Test func aFailingWriteDoesNotSinkItsBatch() async throws {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in try db.execute(sql: "CREATE TABLE t (v INTEGER NOT NULL)") }
        let db = try DurableDatabase(path: "\(directory)/t.sqlite", migrator: migrator)
        let bad = Task { try await db.write { db in try db.execute(sql: "INSERT INTO t(v) VALUES (NULL)") } }
        let good = Task { try await db.write { db in try db.execute(sql: "INSERT INTO t(v) VALUES (1)") } }
        await #expect(throws: (any Error).self) { try await bad.value }
        try await good.value
        let count = try await db.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM t") }
        #expect(count == 1)
    }

    private func record(_ queue: SQLiteInvocationQueue, _ id: String, _ outcome: AttemptOutcome) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            queue.recordOutcome(id: id, attempt: 1, startedAt: Date(), outcome: outcome, finishedAt: Date(), durationMs: 1) { error in
                if let error { c.resume(throwing: error) } else { c.resume() }
            }
        }
    }
}
