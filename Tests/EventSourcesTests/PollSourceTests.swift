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

@Suite("Poll event source: configuration")
struct PollSourceConfigurationTests {
    static let functions = """
        functions:
          probe:
            command: [probe]
        triggers:
          - function: probe
            bucket: ingest
        """

    /// The whole file, as the composition root reads it: the gateway's part, then the sources'.
    func load(_ sources: String, environment: [String: String] = [:]) throws(GatewayError) -> EventSourcesConfiguration
    {
        let file = try ConfigurationFile(
            yaml: Self.functions + "\n" + sources, baseDirectory: "/srv", environment: environment)
        _ = try file.decode(GatewayConfiguration.self)
        return try file.decode(EventSourcesConfiguration.self)
    }

    func message(_ yaml: String, environment: [String: String] = ["K": "key", "S": "secret"]) -> String {
        do {
            _ = try load(yaml, environment: environment)
            return "loaded"
        } catch {
            return error.message
        }
    }

    @Test func parsesTheDocumentedSourceWithDefaults() throws {
        let configuration = try load(
            """
            sources:
              sqs:
                - queueUrl: https://sqs.eu-west-1.amazonaws.com/123456789012/uploads
              poll:
                - endpoint: http://127.0.0.1:3900
                  bucket: ingest
                - endpoint: http://${GARAGE_HOST}:3900/
                  bucket: media
                  prefix: uploads/
                  interval: 500ms
                  accessKey: ${GARAGE_KEY}
                  secretKey: "${GARAGE_SECRET}"
                  region: garage
                  pathStyle: false
                  startFrom: now
            region: ap-south-1
            """,
            environment: [
                "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "env-secret", "GARAGE_HOST": "10.0.0.7",
                "GARAGE_KEY": "GK1", "GARAGE_SECRET": "pa$$/word+",
            ])
        #expect(configuration.sqs.count == 1)
        let sources = configuration.poll
        #expect(sources.count == 2)
        let plain = sources[0]
        #expect(plain.endpoint.absoluteString == "http://127.0.0.1:3900")
        #expect(plain.bucket == "ingest" && plain.prefix == "")
        #expect(plain.interval == .seconds(5))
        #expect(plain.credentials.accessKeyId == "AKIAENV" && plain.credentials.secretAccessKey == "env-secret")
        #expect(plain.region == "ap-south-1")  // the gateway's, declared after `sources`
        #expect(plain.pathStyle && plain.startFrom == .beginning)
        #expect(plain.name == "ingest")
        let garage = sources[1]
        #expect(garage.endpoint.absoluteString == "http://10.0.0.7:3900/")
        #expect(garage.prefix == "uploads/" && garage.name == "media/uploads/")
        #expect(garage.interval == .milliseconds(500))
        // Substituted as is (not percent-encoded as in a URL's password).
        #expect(garage.credentials.accessKeyId == "GK1" && garage.credentials.secretAccessKey == "pa$$/word+")
        #expect(garage.region == "garage" && !garage.pathStyle && garage.startFrom == .now)
        #expect(garage.stateID == "http://10.0.0.7:3900/media/uploads/")
        #expect(plain.stateID != garage.stateID)
    }

    @Test(arguments: [
        ("5s", Duration.seconds(5)), ("5", .seconds(5)), ("0.25", .milliseconds(250)), ("250ms", .milliseconds(250)),
        ("2m", .seconds(120)), ("1h", .seconds(3600)), ("1.5s", .milliseconds(1500)),
    ])
    func durations(text: String, expected: Duration) {
        #expect(PollSourceConfiguration.parseDuration(text) == expected)
    }

    @Test(arguments: ["", "s", "5 minutes", "-1s", "1e3", "5d", "abc", "nan"])
    func invalidDurations(text: String) {
        #expect(PollSourceConfiguration.parseDuration(text) == nil)
    }

    @Test func errorsNameTheEntryAndTheField() {
        let head = "sources:\n  poll:\n"
        let ok = "      accessKey: ${K}\n      secretKey: ${S}\n"
        #expect(
            message(head + "    - bucket: ingest\n" + ok)
                == "sources.poll[0].endpoint: is required (the S3 endpoint URL)")
        #expect(
            message(head + "    - endpoint: ftp://x\n      bucket: ingest\n" + ok)
                == "sources.poll[0].endpoint: expected an http(s) URL, got 'ftp://x'")
        #expect(message(head + "    - endpoint: http://s3\n" + ok) == "sources.poll[0].bucket: is required")
        #expect(
            message(head + "    - endpoint: http://s3\n      bucket: a\n" + ok)
                == "sources.poll[0].bucket: 'a' is not a bucket name (3-63 of a-z 0-9 . - _)")
        #expect(
            message(head + "    - endpoint: http://s3\n      bucket: ingest\n      interval: soon\n" + ok)
                == "sources.poll[0].interval: expected a duration (5s, 500ms, 2m, or a number of seconds), got 'soon'")
        #expect(
            message(head + "    - endpoint: http://s3\n      bucket: ingest\n      interval: 10ms\n" + ok)
                == "sources.poll[0].interval: must be between 100ms and 24h")
        #expect(
            message(head + "    - endpoint: http://s3\n      bucket: ingest\n      startFrom: yesterday\n" + ok)
                == "sources.poll[0].startFrom: expected beginning or now, got 'yesterday'")
        #expect(
            message(head + "    - endpoint: http://s3\n      bucket: ingest\n      pathStyle: maybe\n" + ok)
                == "sources.poll[0].pathStyle: expected true or false")
        #expect(
            message(head + "    - endpoint: http://s3\n      bucket: ingest\n      secret: x\n" + ok)
                == "sources.poll[0].secret: unknown field (expected endpoint, bucket, prefix, interval, accessKey, secretKey, region, pathStyle, startFrom)"
        )
        #expect(
            message(head + "    - endpoint: http://s3\n      bucket: ingest\n      prefix: [a]\n" + ok)
                == "sources.poll[0].prefix: expected a value, got a list")
        #expect(
            message(
                head + "    - endpoint: http://s3\n      bucket: ingest\n      accessKey: ${NOPE}\n      secretKey: x\n"
            )
                == "sources.poll[0].accessKey: names ${NOPE}, which is not set in the gateway's environment")
        #expect(
            message(head + "    - endpoint: http://s3\n      bucket: ingest\n", environment: [:]).hasPrefix(
                "sources.poll[0]: no credentials: set accessKey and secretKey"))
        // The second entry, path-qualified by its index.
        #expect(
            message(
                head + "    - endpoint: http://s3\n      bucket: ingest\n" + ok + "    - endpoint: http://s3\n" + ok)
                == "sources.poll[1].bucket: is required")
        #expect(
            message(
                head + "    - endpoint: http://s3\n      bucket: ingest\n" + ok
                    + "    - endpoint: http://s3\n      bucket: ingest\n" + ok)
                == "sources.poll[1]: polls the same endpoint, bucket and prefix as an earlier entry")
        #expect(
            message(head + "    endpoint: http://s3\n")
                == "sources.poll: expected a list of buckets ({endpoint, bucket, interval, …})")
        #expect(
            message(head + "    - http://s3\n")
                == "sources.poll[0]: expected a mapping (endpoint, bucket, prefix, interval, accessKey, …)")
        #expect(message("sources:\n  kafka: []") == "sources.kafka: unknown source (expected sqs or poll)")
    }

    @Test func validateChecksSourcesBuiltInCode() throws {
        var configuration = try load("")
        configuration.poll = [
            PollSourceConfiguration(
                endpoint: URL(string: "http://s3")!, bucket: "ingest", interval: .seconds(0),
                credentials: .init(accessKeyId: "k", secretAccessKey: "s"), region: "us-east-1")
        ]
        #expect(throws: GatewayError.self) { try configuration.validate() }
        configuration.poll[0].interval = .seconds(1)
        try configuration.validate()
    }
}

@Suite("Poll event source: scans")
struct PollScanTests {
    static let t0 = Date(timeIntervalSince1970: 1_790_000_000.5)

    func object(_ key: String, _ etag: String?, at offset: TimeInterval = 0, size: Int = 10) -> ObjectSummary {
        ObjectSummary(key: key, size: size, etag: etag, lastModified: Self.t0.addingTimeInterval(offset))
    }

    @Test func diffFindsNewChangedAndRemovedKeysAndIgnoresUnchangedOnes() {
        let seen: [String: SeenObject] = [
            "same": SeenObject(etag: "e1", sequencer: "S1"),
            "changed": SeenObject(etag: "old", sequencer: "S2"),
            "gone-b": SeenObject(etag: "e3", sequencer: "S3"),
            "gone-a": SeenObject(etag: "e4", sequencer: "S4"),
        ]
        // Unordered, as some stores list.
        let listing = [object("new-2", "n2"), object("changed", "new"), object("same", "e1"), object("new-1", "n1")]
        let diff = PollScan.diff(listing, seen: seen)
        #expect(diff.changed.map(\.key) == ["new-2", "changed", "new-1"])
        #expect(diff.removed.map(\.key) == ["gone-a", "gone-b"])
        #expect(diff.removed.map(\.object.sequencer) == ["S4", "S3"])
        // Nothing seen: everything is new; nothing listed: everything removed.
        #expect(PollScan.diff(listing, seen: [:]).changed.count == 4)
        #expect(PollScan.diff([], seen: seen).removed.count == 4)
        // Once recorded, the same listing is no change.
        var after = seen
        for object in diff.changed { after[object.key] = PollScan.seen(object) }
        for entry in diff.removed { after[entry.key] = nil }
        #expect(PollScan.diff(listing, seen: after) == PollScan.Diff())
    }

    @Test func aKeyListedTwiceCountsOnceWithItsLastEntry() {
        let diff = PollScan.diff([object("k", "v1"), object("other", "o"), object("k", "v2", at: 1)], seen: [:])
        #expect(diff.changed.map(\.key) == ["k", "other"])
        #expect(diff.changed[0].etag == "v2")
    }

    @Test func objectsWithoutAnETagAreComparedBySizeAndDate() {
        let a = object("k", nil, size: 5)
        let seen = ["k": PollScan.seen(a)]
        #expect(PollScan.diff([a], seen: seen).changed.isEmpty)
        #expect(PollScan.diff([object("k", nil, size: 6)], seen: seen).changed.count == 1)
        #expect(PollScan.diff([object("k", nil, at: 1, size: 5)], seen: seen).changed.count == 1)
    }

    @Test func theSequencerIsStableForAVersionAndGrowsWithLastModified() {
        let v1 = object("k", "9b2cf535f27731c974343645a3985328")
        #expect(PollScan.sequencer(of: v1) == PollScan.sequencer(of: object("k", "9b2cf535f27731c974343645a3985328")))
        #expect(PollScan.sequencer(of: v1).count == 32)
        // LastModified in milliseconds (1 790 000 000 500 = 0x1A0C4506DF4), then the ETag's hash.
        #expect(PollScan.sequencer(of: v1).prefix(16) == "000001A0C4506DF4")
        #expect(
            PollScan.sequencer(of: v1).suffix(16)
                == "\(String(PollScan.fnv1a("9b2cf535f27731c974343645a3985328"), radix: 16, uppercase: true))"
                .leftPadded(16))
        let v2 = object("k", "other", at: 1)
        #expect(PollScan.sequencer(of: v2) > PollScan.sequencer(of: v1))
        // Same time, other content: another sequencer.
        #expect(PollScan.sequencer(of: object("k", "other")) != PollScan.sequencer(of: v1))
    }

    @Test func keysAreEncodedAsS3WritesThemInEvents() {
        #expect(PollScan.eventKey("uploads/my clip+ünï (1).mp4") == "uploads/my+clip%2B%C3%BCn%C3%AF+%281%29.mp4")
        #expect(PollScan.eventKey("a-b_c.d~e/f") == "a-b_c.d~e/f")
    }

    func intake(_ rules: [TriggerRule]) -> EventIntake {
        var configuration = GatewayConfiguration(functions: [FunctionConfiguration(name: "rec", command: ["rec"])])
        configuration.triggers = rules
        return EventIntake(configuration: configuration)
    }

    @Test func recordsGoThroughTheIntakeLikeANotificationsAndReemissionsKeepTheirDedupeKeys() throws {
        let upload = object("uploads/my clip.mp4", "9b2cf535f27731c974343645a3985328", size: 1234)
        let other = object("elsewhere/x.bin", "e2")
        let records = [upload, other].map {
            PollScan.createdRecord($0, bucket: "ingest", region: "garage", now: Date())
        }
        let body = ByteBuffer(string: PollScan.body(records))
        let intake = intake([TriggerRule(function: "rec", bucket: "ingest", prefix: "uploads/")])
        let batch = try intake.invocations(from: body, now: Date())
        #expect(batch.records == 2)
        #expect(batch.invocations.count == 1)
        let invocation = try #require(batch.invocations.first)
        let payload = try JSONSerialization.jsonObject(with: invocation.payload) as! [String: Any]
        let record = (payload["Records"] as! [[String: Any]])[0]
        #expect(record["eventName"] as? String == "ObjectCreated:Put")
        #expect(record["eventSource"] as? String == "cinescale:poll")
        #expect(record["eventTime"] as? String == "2026-09-21T14:13:20.500Z")
        #expect(record["awsRegion"] as? String == "garage")
        let s3 = record["s3"] as! [String: Any]
        #expect((s3["bucket"] as! [String: Any])["name"] as? String == "ingest")
        let object = s3["object"] as! [String: Any]
        #expect(object["key"] as? String == "uploads/my+clip.mp4")
        #expect(object["size"] as? Int == 1234)
        #expect(object["eTag"] as? String == "9b2cf535f27731c974343645a3985328")
        #expect(object["sequencer"] as? String == PollScan.sequencer(of: upload))
        // The same version emitted again (a crash before its seen state was written): the same dedupe key.
        let again = try intake.invocations(
            from: ByteBuffer(
                string: PollScan.body([PollScan.createdRecord(upload, bucket: "ingest", region: "garage", now: Date())])
            ),
            now: Date())
        #expect(again.invocations.map(\.dedupeKey) == batch.invocations.map(\.dedupeKey))
        // A new version: another.
        let changed = try intake.invocations(
            from: ByteBuffer(
                string: PollScan.body([
                    PollScan.createdRecord(
                        self.object("uploads/my clip.mp4", "new", at: 5), bucket: "ingest", region: "garage",
                        now: Date())
                ])),
            now: Date())
        #expect(changed.invocations.map(\.dedupeKey) != batch.invocations.map(\.dedupeKey))
    }

    @Test func removalsInvokeOnlyRulesThatAskForThem() throws {
        let removal = PollScan.removedRecord(
            key: "uploads/a.mp4", seen: SeenObject(etag: "e", sequencer: "S"), bucket: "ingest", region: "r",
            now: Date())
        let body = ByteBuffer(string: PollScan.body([removal]))
        #expect(
            try intake([TriggerRule(function: "rec", bucket: "ingest")]).invocations(from: body, now: Date())
                .invocations.isEmpty)
        let asked = try intake([TriggerRule(function: "rec", bucket: "ingest", events: ["s3:ObjectRemoved:*"])])
            .invocations(from: body, now: Date())
        #expect(asked.invocations.count == 1)
        #expect(asked.invocations[0].dedupeKey?.contains("ObjectRemoved:Delete") == true)
    }
}

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
