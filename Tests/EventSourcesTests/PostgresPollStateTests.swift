import Foundation
import Gateway
import InvocationQueue
import Logging
import PollState
import PostgresInvocationQueue
import PostgresNIO
import PostgresTestSupport
import S3Client
import Testing

@testable import EventSources

/// The poll sources' seen state in the shared queue's PostgreSQL database (a throwaway cluster, a database per
/// test): the store's contract, and what several gateways writing it at once must not do to each other.
@Suite("Poll event source: seen state in PostgreSQL")
struct PostgresPollStateTests {
    /// Runs `body` with `count` states over one fresh database, each on a pool of its own (as two gateways).
    static func withStates<T: Sendable>(
        _ count: Int = 1, in url: String? = nil, _ body: @Sendable ([PostgresPollState]) async throws -> T
    ) async throws -> T {
        let url = if let url { url } else { try await TestPostgres.freshDatabase() }
        let configuration = try PostgresQueueConfiguration(url: url)
        let clients = (0..<count).map { _ in
            PostgresClient(configuration: configuration.clientConfiguration(maximumConnections: 4))
        }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            for client in clients { group.addTask { await client.run() } }
            defer { group.cancelAll() }
            return try await body(clients.map { PostgresPollState(client: $0, logger: testLogger) })
        }
    }

    /// The version of `key` written `at` seconds after a fixed time, as a scan would record it.
    static func version(_ etag: String, at seconds: TimeInterval) -> SeenObject {
        let modified = Date(timeIntervalSince1970: 1_790_000_000 + seconds)
        return PollScan.seen(ObjectSummary(key: "k", size: 1, etag: etag, lastModified: modified))
    }

    @Test func recordsAndLoadsTheSeenState() async throws {
        try await Self.withStates { states in
            let state = states[0]
            #expect(state.isShared)
            #expect(try await state.load(source: "a") == nil)  // never scanned
            try await state.record(source: "a", seen: [:], removed: [:])
            #expect(try await state.load(source: "a") == [:])  // scanned, empty
            let (k1, k2) = (Self.version("e1", at: 0), Self.version("e2", at: 1))
            try await state.record(source: "a", seen: ["k1": k1, "k2": k2, "a key/with ü": k1], removed: [:])
            try await state.record(source: "b", seen: ["k1": Self.version("other", at: 0)], removed: [:])
            #expect(try await state.load(source: "a") == ["k1": k1, "k2": k2, "a key/with ü": k1])
            // A new version replaces, a removal of the version seen drops, an unknown key is nothing.
            let k1b = Self.version("e1b", at: 5)
            try await state.record(source: "a", seen: ["k1": k1b], removed: ["k2": k2, "nope": k2])
            #expect(try await state.load(source: "a") == ["k1": k1b, "a key/with ü": k1])
            #expect(try await state.load(source: "b") == ["k1": Self.version("other", at: 0)])
            #expect(try await state.load(source: "c") == nil)
        }
        // Tables created idempotently: a second pool (a gateway started later) over the same tables.
        let url = try await TestPostgres.freshDatabase()
        try await Self.withStates(in: url) { states in
            try await states[0].record(source: "a", seen: ["k": Self.version("e", at: 0)], removed: [:])
        }
        try await Self.withStates(in: url) { states in
            let loaded = try await states[0].load(source: "a")
            #expect(loaded == ["k": Self.version("e", at: 0)])
        }
    }

    @Test func aDeletionFromAStaleListingDoesNotRemoveANewerVersion() async throws {
        try await Self.withStates(2) { states in
            let (a, b) = (states[0], states[1])
            let (old, new) = (Self.version("v1", at: 0), Self.version("v2", at: 10))
            try await a.record(source: "s", seen: ["k": old], removed: [:])
            // Gateway b sees the key re-uploaded and records the new version; gateway a, from a listing made
            // while the key was away, removes the version it saw.
            try await b.record(source: "s", seen: ["k": new], removed: [:])
            try await a.record(source: "s", seen: [:], removed: ["k": old])
            #expect(try await b.load(source: "s") == ["k": new])
            // The removal of the version recorded does remove it.
            try await a.record(source: "s", seen: [:], removed: ["k": new])
            #expect(try await b.load(source: "s") == [:])
        }
    }

    @Test func anOlderVersionDoesNotReplaceANewerOne() async throws {
        try await Self.withStates(2) { states in
            let (a, b) = (states[0], states[1])
            let old = Self.version("v1", at: 0)
            let new = Self.version("v2", at: 0.5)
            #expect(old.sequencer < new.sequencer)
            try await b.record(source: "s", seen: ["k": new], removed: [:])
            try await a.record(source: "s", seen: ["k": old], removed: [:])  // a's listing predates b's
            #expect(try await a.load(source: "s") == ["k": new])
            // Recording the same version again (two gateways that emitted the same new object) is idempotent.
            try await a.record(source: "s", seen: ["k": new], removed: [:])
            #expect(try await b.load(source: "s") == ["k": new])
            let newer = Self.version("v3", at: 20)
            try await a.record(source: "s", seen: ["k": newer], removed: [:])
            #expect(try await b.load(source: "s") == ["k": newer])
        }
    }

    @Test func twoGatewaysRecordingAtOnceConvergeOnTheNewestVersionOfEveryKey() async throws {
        try await Self.withStates(2) { states in
            // 16 records per gateway at once, each of the same 300 keys at versions 0...15 in a random order
            // (overlapping rows, in both gateways' transactions): no deadlock, and the newest version wins.
            let keys = (0..<300).map { "videos/\($0).mp4" }
            func seen(_ n: Int) -> [String: SeenObject] {
                Dictionary(uniqueKeysWithValues: keys.map { ($0, Self.version("e\(n)", at: Double(n))) })
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for n in (0..<16).shuffled() {
                    for state in states {
                        group.addTask { try await state.record(source: "s", seen: seen(n), removed: [:]) }
                    }
                }
                try await group.waitForAll()
            }
            for state in states { #expect(try await state.load(source: "s") == seen(15)) }
        }
    }

    /// Two gateways over one bucket and one seen state, each with its own queue: the second's queue holds
    /// nothing to deduplicate against — as when the invocations the first made were pruned after
    /// `queue.retention` — and still, starting from the beginning, it emits nothing the first already has.
    @Test func aGatewayJoiningWithStartFromBeginningEmitsOnlyWhatTheFleetHasNotSeen() async throws {
        try await Self.withStates(2) { states in
            let bucket = FakeBucket()
            for n in 0..<150 { bucket.put("videos/\(n).mp4", "e\(n)") }
            let first = try PollEventSourceTests.Harness(state: states[0], bucket: bucket)
            try await first.scan(first.source(), times: 2)
            #expect(try await first.queued().count == 150)

            let joining = try PollEventSourceTests.Harness(state: states[1], bucket: bucket)
            bucket.put("videos/new.mp4", "n")
            _ = bucket.objects.withLock { $0.removeValue(forKey: "videos/3.mp4") }
            try await joining.scan(joining.source(startFrom: .beginning), times: 2)
            #expect(
                try await joining.queued() == ["ObjectCreated:Put videos/new.mp4", "ObjectRemoved:Delete videos/3.mp4"])
            // What the joining gateway recorded, the first reads before its next scan: nothing more from it.
            try await first.scan(first.source(), times: 2)
            #expect(try await first.queued().count == 150)
            #expect(try await states[0].load(source: first.source().configuration.stateID)?.count == 150)
        }
    }
}

@Suite("Poll event source: which seen state")
struct PollStateChoiceTests {
    static func configuration(queue: QueueConfiguration) -> GatewayConfiguration {
        GatewayConfiguration(
            functions: [FunctionConfiguration(name: "rec", command: ["/bin/true"])],
            triggers: [TriggerRule(function: "rec", bucket: "ingest")], queue: queue)
    }

    static let sources = EventSourcesConfiguration(poll: [
        PollSourceConfiguration(
            endpoint: URL(string: "http://127.0.0.1:1")!, bucket: "ingest",
            credentials: .init(accessKeyId: "k", secretAccessKey: "s"), region: "us-east-1")
    ])

    /// The composition root's rule (`cinescale`'s GatewayQueue: the shared queue's state unless the sources name
    /// a file) and the sources': the state handed in, else a SQLite file (named, or beside the queue's).
    @Test func theSharedQueuesGatewaysShareTheirSeenStateUnlessAFileIsNamed() throws {
        func sources(_ gateway: GatewayConfiguration, _ sources: EventSourcesConfiguration = Self.sources) throws
            -> EventSources
        {
            let queue: InvocationQueueKind
            var pollState: (any PollStateStore)?
            if let postgres = try gateway.queue.postgresConfiguration() {
                let shared = try PostgresInvocationQueue(configuration: postgres, logger: testLogger)
                queue = .shared(shared)
                if sources.pollStatePath == nil {
                    pollState = PostgresPollState(client: shared.client, logger: testLogger)
                }
            } else {
                queue = .local(try SQLiteInvocationQueue(path: try #require(gateway.queue.path)))
            }
            let service = try GatewayService(configuration: gateway, invocationQueue: queue, logger: testLogger)
            return try EventSources(
                configuration: sources, queue: gateway.queue, sink: service.eventSink, pollState: pollState,
                logger: testLogger)
        }
        let dir = try ScratchDirectory()
        var queue = QueueConfiguration(path: dir.path + "/queue.sqlite")
        queue.postgres = "postgres://cinescale@127.0.0.1:1/cinescale?sslmode=disable"  // never connected here
        let shared = try sources(Self.configuration(queue: queue))
        #expect(shared.poll.first?.state is PostgresPollState)
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/poll.sqlite"))

        var named = Self.sources
        named.pollStatePath = dir.path + "/own.sqlite"
        let own = try sources(Self.configuration(queue: queue), named)
        #expect(own.poll.first?.state is SQLitePollState)
        #expect(FileManager.default.fileExists(atPath: dir.path + "/own.sqlite"))

        let single = try sources(Self.configuration(queue: QueueConfiguration(path: dir.path + "/q2.sqlite")))
        #expect(single.poll.first?.state is SQLitePollState)
        #expect(FileManager.default.fileExists(atPath: dir.path + "/poll.sqlite"))
    }
}

/// The tests' logger: quiet unless `GATEWAY_TEST_LOG` names a level.
var testLogger: Logger {
    var logger = Logger(label: "test.event-sources")
    logger.logLevel =
        ProcessInfo.processInfo.environment["GATEWAY_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .critical
    return logger
}
