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
