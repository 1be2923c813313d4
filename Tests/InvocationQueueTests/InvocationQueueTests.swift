import DurableSQLite
import Foundation
import GRDB
import InvocationQueue
import Logging
import PostgresInvocationQueue
import PostgresTestSupport
import Synchronization
import Testing

typealias Backend = QueueBackend

/// Opens queues on one store: several handles are a restart (SQLite) or several gateways (PostgreSQL).
final class Stores: Sendable {
    let backend: Backend
    let directory: String
    let url: String?
    private let runs = Mutex<[Task<Void, Never>]>([])

    init(_ backend: Backend, directory: String) async throws {
        self.backend = backend
        self.directory = directory
        url = try await backend.freshPostgresURL()
    }

    func open(owner: String = PostgresQueueConfiguration.defaultOwner(), lease: Duration = .seconds(10)) throws
        -> any DurableInvocationQueue
    {
        switch backend {
        case .sqlite:
            return try SQLiteInvocationQueue(path: "\(directory)/q.sqlite")
        case .postgres:
            return try postgres(owner: owner, lease: lease)
        }
    }

    func postgres(owner: String, lease: Duration = .seconds(10)) throws -> PostgresInvocationQueue {
        var configuration = try PostgresQueueConfiguration(url: url!)
        configuration.owner = owner
        configuration.leaseDuration = lease
        var logger = Logger(label: "test.queue")
        logger.logLevel = .critical
        let queue = try PostgresInvocationQueue(configuration: configuration, logger: logger)
        runs.withLock { $0.append(Task { await queue.run() }) }
        return queue
    }

    func close() async {
        let tasks = runs.withLock { $0 }
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
    }
}

@Suite struct InvocationQueueTests {
    let directory: String

    init() throws {
        directory =
            FileManager.default.temporaryDirectory.appendingPathComponent("cinescale-queue-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    func invocation(_ id: String, dedupe: String? = nil, now: Date = Date(), function: String = "probe")
        -> QueuedInvocation
    {
        QueuedInvocation(
            id: id, function: function, source: "s3", dedupeKey: dedupe, payload: Data("{\"n\":\"\(id)\"}".utf8),
            maxAttempts: 3, createdAt: now, expiresAt: now.addingTimeInterval(3600), nextAttemptAt: now)
    }

    func withStores(_ backend: Backend, _ body: (Stores) async throws -> Void) async throws {
        let stores = try await Stores(backend, directory: directory)
        do {
            try await body(stores)
        } catch {
            await stores.close()
            throw error
        }
        await stores.close()
    }

    @Test(arguments: Backend.allCases) func enqueueDeduplicatesOnTheKey(_ backend: Backend) async throws {
        try await withStores(backend) { stores in
            let queue = try stores.open()
            let now = Date(timeIntervalSince1970: 1_800_000_000.25)
            let first = try await queue.enqueue([
                invocation("a", dedupe: "k1", now: now), invocation("b", dedupe: "k2", now: now),
            ])
            #expect(
                first == [
                    .inserted(invocation("a", dedupe: "k1", now: now)),
                    .inserted(invocation("b", dedupe: "k2", now: now)),
                ])
            let again = try await queue.enqueue([invocation("c", dedupe: "k1"), invocation("d")])
            #expect(again[0] == .duplicate(existingID: "a"))
            guard case .inserted = again[1] else {
                Issue.record("d was not inserted")
                return
            }
            let all = try await queue.list(InvocationFilter())
            #expect(Set(all.map(\.id)) == ["a", "b", "d"])
            // What was written is what is read back (payload bytes, times to the microsecond).
            let a = try #require(try await queue.get(id: "a"))
            #expect(a == invocation("a", dedupe: "k1", now: now))
        }
    }

    @Test(arguments: Backend.allCases) func concurrentEnqueuesAreAllDurableAndDeduplicated(_ backend: Backend)
        async throws
    {
        try await withStores(backend) { stores in
            let queue = try stores.open()
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
            // A second handle on the store (after a restart, or another gateway) sees all of them.
            let reopened = try stores.open()
            let pending = try await reopened.list(InvocationFilter(states: [.queued], limit: 1000))
            #expect(pending.count == 200)
            #expect(Set(pending.compactMap(\.dedupeKey)).count == 200)
            // Every duplicate names the invocation that won its key.
            let winners = Dictionary(uniqueKeysWithValues: pending.map { ($0.id, $0.dedupeKey!) })
            for case .duplicate(let existing) in results { #expect(winners[existing] != nil) }
        }
    }

    @Test(arguments: Backend.allCases) func outcomesRedriveCountsAndPrune(_ backend: Backend) async throws {
        try await withStores(backend) { stores in
            let queue = try stores.open()
            let now = Date()
            _ = try await queue.enqueue([
                invocation("x", now: now), invocation("y", now: now), invocation("z", now: now),
            ])
            if let leased = queue as? any LeasedInvocationQueue {
                #expect(try await leased.claim(["probe": 3], now: now).count == 3)
            }
            for id in ["x", "y", "z"] { queue.recordStart(id: id, attempt: 1, at: now) }
            try await record(
                queue, "x", .failed(errorType: "Boom", message: "first", retryAt: now.addingTimeInterval(5)))
            try await record(queue, "y", .dead(errorType: "Boom", message: "last"))
            try await record(queue, "z", .returned(retryAt: now))

            let x = try #require(try await queue.get(id: "x"))
            #expect(x.state == .failed && x.attempts == 1 && x.errorType == "Boom" && x.errorMessage == "first")
            #expect(abs(x.nextAttemptAt.timeIntervalSince(now) - 5) < 0.001)
            let z = try #require(try await queue.get(id: "z"))
            #expect(z.state == .queued && z.attempts == 0)

            let dead = try await queue.list(InvocationFilter(states: [.dead]))
            #expect(dead.map(\.id) == ["y"])
            #expect(dead[0].attempts == 1 && dead[0].errorMessage == "last")
            #expect(try await queue.redrive(id: "x", now: now, maxAttempts: 3, maxEventAge: 60) == nil)
            let redriven = try #require(try await queue.redrive(id: "y", now: now, maxAttempts: 3, maxEventAge: 60))
            #expect(redriven.state == .queued && redriven.attempts == 0 && redriven.source == "redrive")

            if let leased = queue as? any LeasedInvocationQueue {
                // z and y are due; x only in 5 s.
                let claimed = try await leased.claim(["probe": 10], now: now.addingTimeInterval(1))
                #expect(Set(claimed.map(\.id)) == ["y", "z"])
                let next = try #require(try await leased.nextDue(functions: ["probe"]))
                #expect(next.timeIntervalSince(now) <= 5.001)
                #expect(try await leased.claim(["probe": 10], now: now.addingTimeInterval(5.5)).map(\.id) == ["x"])
            }
            try await record(queue, "x", .succeeded, attempt: 2)
            try await queue.flush()
            #expect(try await queue.get(id: "x")?.state == .succeeded)
            #expect(try await queue.get(id: "x")?.attempts == 2)
            let counts = try await queue.counts()
            #expect(counts["probe"]?[.succeeded] == 1)
            #expect(try await queue.prune(finishedBefore: Date().addingTimeInterval(60)) == 1)
            #expect(try await queue.get(id: "x") == nil)
            let filtered = try await queue.list(InvocationFilter(function: "nope"))
            #expect(filtered.isEmpty)
        }
    }

    @Test func sqliteRecoveryMakesInterruptedAttemptsPendingUncounted() async throws {
        let path = "\(directory)/q.sqlite"
        let queue = try SQLiteInvocationQueue(path: path)
        let now = Date()
        _ = try await queue.enqueue([invocation("x", now: now), invocation("z", now: now)])
        queue.recordStart(id: "x", attempt: 1, at: now)
        queue.recordStart(id: "z", attempt: 1, at: now)
        try await record(queue, "x", .failed(errorType: "Boom", message: "first", retryAt: now.addingTimeInterval(5)))
        // z is "running" when the gateway dies.
        let reopened = try SQLiteInvocationQueue(path: path)
        let pending = try await reopened.recover(now: now)
        #expect(Set(pending.map(\.id)) == ["x", "z"])
        let z = try #require(pending.first { $0.id == "z" })
        #expect(z.state == .queued && z.attempts == 0)
        // A start recorded late (after the outcome of the same attempt) changes nothing.
        try await record(reopened, "x", .succeeded)
        reopened.recordStart(id: "x", attempt: 1, at: now)
        try await reopened.database.flush()
        #expect(try await reopened.get(id: "x")?.state == .succeeded)
    }

    @Test func postgresGatewaysNeverClaimTheSameInvocation() async throws {
        try await withStores(.postgres) { stores in
            let a = try stores.postgres(owner: "gateway-a")
            let b = try stores.postgres(owner: "gateway-b")
            let now = Date()
            _ = try await a.enqueue((0..<300).map { invocation("i\($0)", now: now) })
            // Both claim in small batches at the same time until nothing is left. Each waits after its first
            // batch until the other has one too, so both race whatever the machine's load (one could otherwise
            // drain all 300 before the other's first claim).
            let started = Barrier(parties: 2)
            func drain(_ queue: PostgresInvocationQueue) async throws -> [String] {
                var mine: [String] = []
                var first = true
                while true {
                    let claimed = try await queue.claim(["probe": 7], now: Date())
                    if first {
                        first = false
                        await started.arrive()
                    }
                    if claimed.isEmpty { return mine }
                    mine += claimed.map(\.id)
                }
            }
            async let fromA = drain(a)
            async let fromB = drain(b)
            let (ca, cb) = try await (fromA, fromB)
            #expect(Set(ca).isDisjoint(with: cb))
            #expect(Set(ca + cb).count == 300 && ca.count + cb.count == 300)
            #expect(!ca.isEmpty && !cb.isEmpty)
            #expect(try await a.leaseOwner(of: ca[0]) == "gateway-a")
            let counts = try await b.pendingCounts()
            #expect(counts["probe"]?.running == 300 && counts["probe"]?.waiting == 0)
        }
    }

    @Test func postgresTakesOverAnExpiredLeaseAndFencesTheOldHolder() async throws {
        try await withStores(.postgres) { stores in
            // Leases run on the database's clock. Each step below has 2.9 s of slack for a loaded machine
            // (the sleeps alone guarantee the expiry), and both connections are up before the first lease.
            let dead = try stores.postgres(owner: "dead-gateway", lease: .seconds(6))
            let alive = try stores.postgres(owner: "alive-gateway", lease: .seconds(6))
            _ = try await alive.pendingCounts()
            let now = Date()
            _ = try await dead.enqueue([invocation("job", now: now), invocation("kept", now: now)])
            #expect(try await dead.claim(["probe": 2], now: now).count == 2)
            // While the lease runs, nobody else gets it; renewing keeps it.
            #expect(try await alive.claim(["probe": 5], now: Date()).isEmpty)
            try await Task.sleep(for: .seconds(3.1))
            #expect(try await dead.renewLeases(["kept"]).isEmpty)
            try await Task.sleep(for: .seconds(3.1))
            // "job" expired (its holder stopped renewing); "kept" was renewed.
            let taken = try await alive.claim(["probe": 5], now: Date())
            #expect(taken.map(\.id) == ["job"])
            #expect(taken.first?.attempts == 0)  // the interrupted attempt is not counted
            #expect(try await alive.leaseOwner(of: "job") == "alive-gateway")
            // The old holder's late outcome changes nothing; it learns it lost the lease.
            try await record(dead, "job", .succeeded)
            #expect(try await alive.get(id: "job")?.state == .running)
            #expect(try await dead.renewLeases(["job", "kept"]) == ["job"])
            try await record(alive, "job", .succeeded)
            #expect(try await alive.get(id: "job")?.state == .succeeded)
        }
    }

    @Test func postgresDeadLettersAnAttemptWhoseGatewaysKeepDying() async throws {
        try await withStores(.postgres) { stores in
            let first = try stores.postgres(owner: "first", lease: .seconds(2))
            let second = try stores.postgres(owner: "second", lease: .seconds(2))
            var poison = invocation("poison")
            poison.maxAttempts = 1
            _ = try await first.enqueue([poison])
            #expect(try await first.claim(["probe": 1], now: Date()).map(\.id) == ["poison"])
            try await Task.sleep(for: .seconds(2.2))
            // The first loss: taken over.
            #expect(try await second.claim(["probe": 1], now: Date()).map(\.id) == ["poison"])
            try await Task.sleep(for: .seconds(2.2))
            // The second: dead-lettered, with the reason; a re-drive gives it a fresh start.
            #expect(try await first.claim(["probe": 1], now: Date()).isEmpty)
            let dead = try #require(try await first.get(id: "poison"))
            #expect(dead.state == .dead && dead.errorType == "Runtime.GatewayLost")
            #expect(dead.errorMessage?.contains("lost 2 times") == true)
            #expect(try await first.redrive(id: "poison", now: Date(), maxAttempts: 1, maxEventAge: 60) != nil)
            #expect(try await first.claim(["probe": 1], now: Date()).map(\.id) == ["poison"])
        }
    }

    @Test func postgresSchemaIsMadeByTheRunLoop() async throws {
        try await withStores(.postgres) { stores in
            let configuration = try PostgresQueueConfiguration(url: try #require(stores.url))
            var logger = Logger(label: "test.queue")
            logger.logLevel = .critical
            // Used before it runs: the enqueue waits until `run()` has made the schema.
            let queue = try PostgresInvocationQueue(configuration: configuration, logger: logger)
            let early = invocation("early")
            let enqueued = Task { try await queue.enqueue([early]) }
            try await Task.sleep(for: .milliseconds(200))
            let running = Task { await queue.run() }
            #expect(try await enqueued.value.count == 1)
            #expect(try await queue.get(id: "early")?.state == .queued)
            running.cancel()
            await running.value
            // Stopped before anything needed the schema: a later caller is told, not left waiting.
            let stopped = try PostgresInvocationQueue(configuration: configuration, logger: logger)
            let ran = Task { await stopped.run() }
            ran.cancel()
            await ran.value
            await #expect(throws: PostgresQueueError.self) { try await stopped.migrate() }
        }
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

    private func record(
        _ queue: any DurableInvocationQueue, _ id: String, _ outcome: AttemptOutcome, attempt: Int = 1
    ) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            queue.recordOutcome(
                id: id, attempt: attempt, startedAt: Date(), outcome: outcome, finishedAt: Date(), durationMs: 1
            ) { error in
                if let error { c.resume(throwing: error) } else { c.resume() }
            }
        }
    }
}

/// Lets `parties` tasks wait until all have arrived.
actor Barrier {
    private let parties: Int
    private var arrived = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(parties: Int) { self.parties = parties }

    func arrive() async {
        arrived += 1
        if arrived >= parties {
            for continuation in waiting { continuation.resume() }
            waiting.removeAll()
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }
}
