import Dispatch
import Foundation
import GRDB
import Synchronization

/// A failure of the durable database, with the path and the SQLite error.
public struct DurableDatabaseError: Error, CustomStringConvertible, Sendable {
    public var path: String
    public var message: String

    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}

/// A SQLite database (WAL, `synchronous=FULL`) whose writes are **group-committed**: writes submitted while
/// a transaction is being committed are collected and committed together in the next one, so N concurrent
/// writers pay for one fsync instead of N. A write's continuation resumes only after its transaction is on
/// disk, so "acknowledged" means "survives a crash or power loss".
///
/// Each write runs in its own savepoint: one that throws is rolled back alone and its caller gets the error;
/// the others in the batch still commit. Reads run concurrently on the pool's readers.
///
/// A write may be submitted as not `durable` (bookkeeping whose loss after a power cut is harmless, such as
/// "this attempt started"): a batch made only of such writes commits without an fsync (`synchronous=NORMAL`:
/// still atomic, and safe against a process crash); a batch with at least one durable write is fsync'd.
public final class DurableDatabase: Sendable {
    public let path: String
    private let pool: DatabasePool
    private let writer = DispatchQueue(label: "cinescale.durable-sqlite.writer", qos: .userInitiated)
    private let batch = Mutex(Batch())

    private struct Entry: Sendable {
        var run: @Sendable (Database) throws -> Void
        var done: @Sendable ((any Error)?) -> Void
        var durable: Bool
    }

    private struct Batch {
        var entries: [Entry] = []
        var leading = false
    }

    /// Opens (creating if needed) the database at `path` and applies `migrator`'s migrations.
    public init(path: String, migrator: DatabaseMigrator) throws(DurableDatabaseError) {
        self.path = path
        var configuration = Configuration()
        configuration.journalMode = .wal
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            pool = try DatabasePool(path: path, configuration: configuration)
            try migrator.migrate(pool)
        } catch {
            throw DurableDatabaseError(path: path, message: "cannot open the database: \(error)")
        }
    }

    /// Runs `work` in the next group commit and returns its result once the transaction is durable.
    public func write<T: Sendable>(durable: Bool = true, _ work: @escaping @Sendable (Database) throws -> T)
        async throws -> T
    {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let result = Mutex<T?>(nil)
            submit(
                durable: durable,
                { db in
                    let value = try work(db)
                    result.withLock { $0 = value }
                },
                done: { error in
                    if let error {
                        continuation.resume(throwing: error)
                    } else {
                        continuation.resume(returning: result.withLock { $0! })
                    }
                })
        }
    }

    /// Queues `work` for the next group commit without waiting; `done` runs once after the commit (nil) or
    /// with the error. Writes submitted from one thread commit in submission order.
    public func submit(
        durable: Bool = true, _ work: @escaping @Sendable (Database) throws -> Void,
        done: @escaping @Sendable ((any Error)?) -> Void = { _ in }
    ) {
        let lead = batch.withLock { batch -> Bool in
            batch.entries.append(Entry(run: work, done: done, durable: durable))
            if batch.leading { return false }
            batch.leading = true
            return true
        }
        if lead { writer.async { self.drain() } }
    }

    /// Commits batches until none is waiting.
    private func drain() {
        var synchronousFull = true
        while true {
            let entries = batch.withLock { batch -> [Entry] in
                let taken = batch.entries
                batch.entries.removeAll(keepingCapacity: true)
                if taken.isEmpty { batch.leading = false }
                return taken
            }
            if entries.isEmpty { return }
            var errors = [(any Error)?](repeating: nil, count: entries.count)
            let durable = entries.contains { $0.durable }
            do {
                try pool.writeWithoutTransaction { db in
                    if durable != synchronousFull {
                        // Cached: batches alternate between the two, and parsing a statement each time showed.
                        try db.cachedStatement(
                            sql: durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL"
                        )
                        .execute()
                        synchronousFull = durable
                    }
                    try db.inTransaction(.immediate) {
                        if entries.count == 1 {
                            // Alone in its batch: a failure rolls back the whole transaction.
                            try entries[0].run(db)
                            return .commit
                        }
                        let savepoint = try db.cachedStatement(sql: "SAVEPOINT entry")
                        let release = try db.cachedStatement(sql: "RELEASE SAVEPOINT entry")
                        let rollback = try db.cachedStatement(sql: "ROLLBACK TO SAVEPOINT entry")
                        for (i, entry) in entries.enumerated() {
                            try savepoint.execute()
                            do {
                                try entry.run(db)
                            } catch {
                                errors[i] = error
                                try rollback.execute()
                            }
                            try release.execute()
                        }
                        return .commit
                    }
                }
            } catch {
                for i in errors.indices where errors[i] == nil { errors[i] = error }
            }
            for (entry, error) in zip(entries, errors) { entry.done(error) }
        }
    }

    /// Returns once every write submitted before it is committed and on disk (fsync'd).
    public func flush() async throws {
        try await write(durable: true) { _ in }
    }

    /// Runs `work` on a reader (concurrently with writes, on the last committed state).
    public func read<T: Sendable>(_ work: @escaping @Sendable (Database) throws -> T) async throws -> T {
        try await pool.read(work)
    }

    /// Runs `work` on a reader, blocking the calling thread (start-up only).
    public func readNow<T>(_ work: (Database) throws -> T) throws -> T {
        try pool.read(work)
    }

    /// Runs `work` in its own transaction, blocking the calling thread (start-up and tests only).
    public func writeNow<T>(_ work: (Database) throws -> T) throws -> T {
        try pool.write(work)
    }
}
