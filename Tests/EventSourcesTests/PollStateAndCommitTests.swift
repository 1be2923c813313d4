import Foundation
import Gateway
import InvocationQueue
import Logging
import NIOCore
import PollState
import S3Client
import Synchronization
import Testing

@testable import EventSources

/// A temporary directory removed afterwards.
final class ScratchDirectory: Sendable {
    let path: String
    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("cinescale-poll-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

@Suite("Poll event source: seen state")
struct PollStateTests {
    @Test func theSeenStateIsPersistedAndReloaded() async throws {
        let dir = try ScratchDirectory()
        let path = dir.path + "/poll.sqlite"
        do {
            let state = try SQLitePollState(path: path)
            #expect(try await state.load(source: "a") == nil)  // never scanned
            try await state.record(source: "a", seen: [:], removed: [:])
            #expect(try await state.load(source: "a") == [:])  // scanned, empty
            try await state.record(
                source: "a",
                seen: ["k1": .init(etag: "e1", sequencer: "s1"), "k2": .init(etag: "e2", sequencer: "s2")],
                removed: [:])
            try await state.record(source: "b", seen: ["k1": .init(etag: "other", sequencer: "x")], removed: [:])
            try await state.record(
                source: "a", seen: ["k1": .init(etag: "e1b", sequencer: "s1b")],
                removed: ["k2": .init(etag: "e2", sequencer: "s2"), "nope": .init(etag: "x", sequencer: "x")])
        }
        // A new process: the same file.
        let reopened = try SQLitePollState(path: path)
        #expect(try await reopened.load(source: "a") == ["k1": .init(etag: "e1b", sequencer: "s1b")])
        #expect(try await reopened.load(source: "b") == ["k1": .init(etag: "other", sequencer: "x")])
        #expect(try await reopened.load(source: "c") == nil)
    }
}

/// A bucket listing that tests change between scans; can fail.
final class FakeBucket: PollObjectLister {
    let objects = Mutex<[String: ObjectSummary]>([:])
    let failing = Mutex<(any Error)?>(nil)
    let lists = Mutex(0)

    func put(_ key: String, _ etag: String, at offset: TimeInterval = 0) {
        objects.withLock {
            $0[key] = ObjectSummary(
                key: key, size: 1, etag: etag, lastModified: Date(timeIntervalSince1970: 1_790_000_000 + offset))
        }
    }

    func listObjects(bucket: String, prefix: String) async throws -> [ObjectSummary] {
        lists.withLock { $0 += 1 }
        if let error = failing.withLock({ $0 }) { throw error }
        // Unordered, as some stores list.
        return objects.withLock { Array($0.values) }.filter { $0.key.hasPrefix(prefix) }.shuffled()
    }
}

/// A poll source over a fake bucket, its seen state and a gateway's real SQLite queue (no workers run: the
/// invocations stay queued, which is what is counted).
@Suite("Poll event source: commits")
struct PollEventSourceTests {
    final class Harness: Sendable {
        let dir: ScratchDirectory
        let service: GatewayService
        let state: any PollStateStore
        let bucket: FakeBucket
        let observed = Mutex<[String]>([])

        /// `state`: the seen state (default: a SQLite file in `dir`); `bucket`: shared by several harnesses, as
        /// several gateways poll one bucket.
        init(dir: ScratchDirectory? = nil, state: (any PollStateStore)? = nil, bucket: FakeBucket = FakeBucket()) throws
        {
            self.dir = try dir ?? ScratchDirectory()
            let configuration = GatewayConfiguration(
                functions: [FunctionConfiguration(name: "rec", command: ["/bin/true"])],
                triggers: [
                    TriggerRule(function: "rec", bucket: "ingest", prefix: "videos/"),
                    TriggerRule(function: "rec", bucket: "ingest", events: ["s3:ObjectRemoved:*"], prefix: "videos/"),
                ],
                queue: QueueConfiguration(path: self.dir.path + "/queue.sqlite"))
            service = try GatewayService(
                configuration: configuration,
                invocationQueue: .local(try SQLiteInvocationQueue(path: self.dir.path + "/queue.sqlite")),
                logger: testLogger)
            self.state = try state ?? SQLitePollState(path: self.dir.path + "/poll.sqlite")
            self.bucket = bucket
        }

        func source(startFrom: PollSourceConfiguration.StartFrom = .beginning, prefix: String = "") -> PollEventSource {
            PollEventSource(
                configuration: PollSourceConfiguration(
                    endpoint: URL(string: "http://127.0.0.1:1")!, bucket: "ingest", prefix: prefix,
                    interval: .milliseconds(100), credentials: .init(accessKeyId: "k", secretAccessKey: "s"),
                    region: "us-east-1", startFrom: startFrom),
                lister: bucket, state: state,
                sink: service.eventSink.observing { body in self.observed.withLock { $0.append(String(buffer: body)) }
                },
                logger: testLogger)
        }

        /// (key, eventName) of every queued invocation.
        func queued() async throws -> [String] {
            try await service.invocationQueue.list(InvocationFilter(limit: 10_000)).map { invocation in
                let payload = try JSONSerialization.jsonObject(with: invocation.payload) as! [String: Any]
                let record = (payload["Records"] as! [[String: Any]])[0]
                let key = ((record["s3"] as! [String: Any])["object"] as! [String: Any])["key"] as! String
                return "\(record["eventName"]!) \(key)"
            }.sorted()
        }

        /// Runs `source` until `scans` more scans have completed.
        func scan(_ source: PollEventSource, times scans: Int = 1) async throws {
            let start = bucket.lists.withLock { $0 }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await source.run() }
                defer { group.cancelAll() }
                let deadline = ContinuousClock.now + .seconds(120)
                // A scan is complete once the listing after it has started.
                while bucket.lists.withLock({ $0 }) < start + scans + 1 {
                    guard ContinuousClock.now < deadline else { throw CancellationError() }
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
        }
    }

    @Test func newChangedAndRemovedObjectsAreQueuedOnceAndRecordedAsSeen() async throws {
        let h = try Harness()
        for n in 0..<250 { h.bucket.put("videos/\(n).mp4", "e\(n)") }
        h.bucket.put("other/x.bin", "x")
        try await h.scan(h.source(), times: 2)
        var queued = try await h.queued()
        #expect(queued.count == 250)
        #expect(Set(queued).count == 250)
        // 251 records in three commits (100 per commit), each observed once its invocations were queued.
        #expect(h.observed.withLock { $0.count } == 3)
        let seen = try #require(try await h.state.load(source: h.source().configuration.stateID))
        #expect(seen.count == 251)

        // A change, a removal, an unchanged rest.
        h.bucket.put("videos/7.mp4", "e7-new", at: 10)
        _ = h.bucket.objects.withLock { $0.removeValue(forKey: "videos/8.mp4") }
        try await h.scan(h.source(), times: 2)
        queued = try await h.queued()
        #expect(queued.count == 252)
        #expect(queued.filter { $0 == "ObjectCreated:Put videos/7.mp4" }.count == 2)
        #expect(queued.contains("ObjectRemoved:Delete videos/8.mp4"))
        let after = try #require(try await h.state.load(source: h.source().configuration.stateID))
        #expect(after.count == 250 && after["videos/8.mp4"] == nil && after["videos/7.mp4"]?.etag == "e7-new")
    }

    @Test func recordsEmittedAgainAfterACrashBeforeTheirSeenStateAreDeduplicatedEvenOnceRun() async throws {
        let h = try Harness()
        for n in 0..<20 { h.bucket.put("videos/\(n).mp4", "e\(n)") }
        try await h.scan(h.source())
        #expect(try await h.queued().count == 20)
        // Finished since (succeeded), then the state loses five keys: as after a crash between the queue's
        // commit and the state's.
        for invocation in try await h.service.invocationQueue.list(InvocationFilter(limit: 100)) {
            h.service.invocationQueue.recordOutcome(
                id: invocation.id, attempt: 1, startedAt: Date(), outcome: .succeeded, finishedAt: Date(), durationMs: 1
            )
        }
        try await h.service.invocationQueue.flush()
        let source = h.source()
        var lost: [String: SeenObject] = [:]
        for n in 1...5 { lost["videos/\(n).mp4"] = SeenObject(etag: "e\(n)", sequencer: "") }
        try await h.state.record(source: source.configuration.stateID, seen: [:], removed: lost)
        try await h.scan(source)
        let invocations = try await h.service.invocationQueue.list(InvocationFilter(limit: 100))
        #expect(invocations.count == 20)
        #expect(invocations.allSatisfy { $0.state == .succeeded })
        #expect(try await h.state.load(source: source.configuration.stateID)?.count == 20)
    }

    @Test func startFromNowRecordsWhatIsThereWithoutEvents() async throws {
        let h = try Harness()
        for n in 0..<5 { h.bucket.put("videos/old-\(n).mp4", "o\(n)") }
        let source = h.source(startFrom: .now)
        try await h.scan(source)
        #expect(try await h.queued().isEmpty)
        h.bucket.put("videos/new.mp4", "n")
        try await h.scan(h.source(startFrom: .now))
        #expect(try await h.queued() == ["ObjectCreated:Put videos/new.mp4"])
    }

    @Test func anEmptyFirstScanIsRecordedSoThatLaterObjectsAreEventsEvenWithStartFromNow() async throws {
        let h = try Harness()
        try await h.scan(h.source(startFrom: .now))
        h.bucket.put("videos/first.mp4", "f")
        try await h.scan(h.source(startFrom: .now))
        #expect(try await h.queued() == ["ObjectCreated:Put videos/first.mp4"])
    }

    @Test func listingErrorsAreCountedAndRetriedWithoutLosingAnything() async throws {
        let h = try Harness()
        h.bucket.put("videos/a.mp4", "a")
        h.bucket.failing.withLock { $0 = S3Error(code: "AccessDenied", message: "Access Denied", statusCode: 403) }
        let source = h.source()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await source.run() }
            defer { group.cancelAll() }
            let deadline = ContinuousClock.now + .seconds(120)
            while h.service.metrics.emitText().contains(
                "cinescale_gateway_poll_errors_total{source=\"ingest\",stage=\"list\"} 1") == false
            {
                guard ContinuousClock.now < deadline else { throw CancellationError() }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(try await h.queued().isEmpty)
            h.bucket.failing.withLock { $0 = nil }
            // Backed off (1 s after the first failure), then scanned.
            await source.scanned.wait()
        }
        #expect(try await h.queued() == ["ObjectCreated:Put videos/a.mp4"])
        let metrics = h.service.metrics.emitText()
        #expect(
            metrics.contains(
                "cinescale_gateway_poll_records_emitted_total{source=\"ingest\",event=\"ObjectCreated:Put\"} 1"))
        #expect(metrics.contains("cinescale_gateway_poll_objects_seen{source=\"ingest\"} 1"))
        #expect(metrics.contains("cinescale_gateway_poll_scan_duration_seconds"))
    }
}

extension String {
    func leftPadded(_ width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

extension GatewayMetrics {
    func emitText() -> String { String(decoding: emit(), as: UTF8.self) }
}
