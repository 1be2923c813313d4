import Foundation
import Logging
import ObjectStore
import Prometheus
import Testing

@testable import StoreNotifications

@Suite struct BucketRulesTests {
    static let targets: Set<String> = ["gw"]

    func parse(_ xml: String) throws(NotificationError) -> BucketNotificationConfiguration {
        try BucketNotificationConfiguration.parse(Data(xml.utf8), targets: Self.targets)
    }

    @Test func parsesWhatAwsCliSendsAndWritesItBack() throws {
        let xml = """
            <NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><QueueConfiguration>\
            <Queue>arn:minio:sqs::gw:webhook</Queue><Event>s3:ObjectCreated:*</Event><Event>s3:ObjectRemoved:Delete</Event>\
            <Filter><S3Key><FilterRule><Name>Prefix</Name><Value>videos/</Value></FilterRule>\
            <FilterRule><Name>suffix</Name><Value>.mp4</Value></FilterRule></S3Key></Filter></QueueConfiguration>\
            <QueueConfiguration><Id>all</Id><Queue>arn:minio:sqs:us-east-1:gw:webhook</Queue>\
            <Event>s3:ObjectCreated:Copy</Event></QueueConfiguration></NotificationConfiguration>
            """
        let configuration = try parse(xml)
        #expect(
            configuration.queues == [
                QueueRule(
                    id: "queue-1", arn: "arn:minio:sqs::gw:webhook",
                    events: ["s3:ObjectCreated:*", "s3:ObjectRemoved:Delete"],
                    prefix: "videos/", suffix: ".mp4"),
                QueueRule(id: "all", arn: "arn:minio:sqs:us-east-1:gw:webhook", events: ["s3:ObjectCreated:Copy"]),
            ])
        #expect(try parse(configuration.xml()) == configuration)
        let rule = configuration.queues[0]
        #expect(rule.matches(eventName: "s3:ObjectCreated:Put", key: "videos/a.mp4"))
        #expect(rule.matches(eventName: "s3:ObjectCreated:CompleteMultipartUpload", key: "videos/a.mp4"))
        #expect(rule.matches(eventName: "s3:ObjectRemoved:Delete", key: "videos/a.mp4"))
        #expect(!rule.matches(eventName: "s3:ObjectCreated:Put", key: "videos/a.mov"))
        #expect(!rule.matches(eventName: "s3:ObjectCreated:Put", key: "audio/a.mp4"))
        // One delivery per target even when two rules match.
        #expect(configuration.targets(eventName: "s3:ObjectCreated:Copy", key: "videos/b.mp4").map(\.target) == ["gw"])
        #expect(try parse("<NotificationConfiguration/>").queues.isEmpty)
    }

    @Test(arguments: [
        (
            "<NotificationConfiguration><QueueConfiguration><Queue>arn:minio:sqs::other:webhook</Queue><Event>s3:ObjectCreated:*</Event></QueueConfiguration></NotificationConfiguration>",
            "InvalidArgument"
        ),
        (
            "<NotificationConfiguration><QueueConfiguration><Queue>arn:aws:sqs:us-east-1:1:q</Queue><Event>s3:ObjectCreated:*</Event></QueueConfiguration></NotificationConfiguration>",
            "InvalidArgument"
        ),
        (
            "<NotificationConfiguration><QueueConfiguration><Queue>arn:minio:sqs::gw:webhook</Queue><Event>s3:ObjectAccessed:Get</Event></QueueConfiguration></NotificationConfiguration>",
            "InvalidArgument"
        ),
        (
            "<NotificationConfiguration><QueueConfiguration><Queue>arn:minio:sqs::gw:webhook</Queue></QueueConfiguration></NotificationConfiguration>",
            "InvalidArgument"
        ),
        (
            "<NotificationConfiguration><TopicConfiguration><Topic>arn:aws:sns:us-east-1:1:t</Topic><Event>s3:ObjectCreated:*</Event></TopicConfiguration></NotificationConfiguration>",
            "InvalidArgument"
        ),
        (
            "<NotificationConfiguration><QueueConfiguration><Queue>arn:minio:sqs::gw:webhook</Queue><Event>s3:ObjectCreated:*</Event><Filter><S3Key><FilterRule><Name>middle</Name><Value>x</Value></FilterRule></S3Key></Filter></QueueConfiguration></NotificationConfiguration>",
            "InvalidArgument"
        ),
        ("<NotificationConfiguration><QueueConfiguration>", "MalformedXML"),
        ("<CORSConfiguration/>", "MalformedXML"),
    ])
    func refusesBadConfigurations(xml: String, code: String) {
        #expect(throws: NotificationError.self) { try parse(xml) }
        do { _ = try parse(xml) } catch { #expect(error.code == code) }
    }
}

@Suite struct EventFormatTests {
    @Test func keysAreEscapedLikeGoQueryEscape() {
        #expect(EventFormat.queryEscape("videos/my clip+1.mp4") == "videos%2Fmy+clip%2B1.mp4")
        #expect(EventFormat.queryEscape("a-b_c.d~e") == "a-b_c.d~e")
        #expect(EventFormat.queryEscape("ü") == "%C3%BC")
    }

    @Test func theBodyIsMinIOsWebhookShape() throws {
        var metadata = ObjectMetadata()
        metadata.contentType = "video/mp4"
        metadata.userMetadata = ["title": "x"]
        let event = ObjectStoreEvent(
            kind: .put, bucket: "ingest", key: "videos/a b.mp4", size: 1234, etag: "abc", sequencer: "18EB5CD488EC09B3",
            time: Date(timeIntervalSince1970: 1_700_000_000.25), metadata: metadata)
        let request = EventRequestInfo(
            principalID: "AK", sourceIP: "", requestID: "R1", userAgent: "ua", host: "127.0.0.1:9000")
        let data = EventFormat.body(event, ruleID: "rule", region: "", origin: "", request: request)
        let top = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(top["EventName"] as? String == "s3:ObjectCreated:Put")
        #expect(top["Key"] as? String == "ingest/videos/a b.mp4")
        let record = try #require((top["Records"] as? [[String: Any]])?.first)
        #expect(record["eventVersion"] as? String == "2.0")
        #expect(record["eventSource"] as? String == "minio:s3")
        #expect(record["eventTime"] as? String == "2023-11-14T22:13:20.250Z")
        let s3 = try #require(record["s3"] as? [String: Any])
        #expect(s3["configurationId"] as? String == "rule")
        let object = try #require(s3["object"] as? [String: Any])
        #expect(object["key"] as? String == "videos%2Fa+b.mp4")
        #expect(object["size"] as? Int == 1234)
        #expect(object["eTag"] as? String == "abc")
        #expect(object["sequencer"] as? String == "18EB5CD488EC09B3")
        #expect(object["contentType"] as? String == "video/mp4")
        #expect((object["userMetadata"] as? [String: String])?["X-Amz-Meta-title"] == "x")
        #expect(
            (record["responseElements"] as? [String: String])?["x-minio-origin-endpoint"] == "http://127.0.0.1:9000")
        #expect((record["userIdentity"] as? [String: String])?["principalId"] == "AK")
    }
}

extension EventFormatTests {
    @Test func aBatchIsOneRecordsArrayOfTheEventsInOrderAndALoneEventStaysMinIOs() throws {
        let bodies = ["videos/a\"b.mp4", "videos/[1].mp4", "videos/c.mp4"].enumerated().map { n, key in
            EventFormat.body(
                ObjectStoreEvent(
                    kind: .put, bucket: "ingest", key: key, size: n, etag: "e\(n)", sequencer: "\(n)", time: Date()),
                ruleID: "r", region: "", origin: "", request: nil)
        }
        let items = bodies.enumerated().map { EventNotifier.Pending(id: Int64($0), body: $1, enqueuedAt: .now) }

        let batch = EventNotifier.body(of: items)
        let top = try #require(try JSONSerialization.jsonObject(with: Data(batch.readableBytesView)) as? [String: Any])
        #expect(top.keys.sorted() == ["Records"])
        let records = try #require(top["Records"] as? [[String: Any]])
        let keys = records.map { (($0["s3"] as? [String: Any])?["object"] as? [String: Any])?["key"] as? String }
        #expect(keys == ["videos%2Fa%22b.mp4", "videos%2F%5B1%5D.mp4", "videos%2Fc.mp4"])
        // Each record byte for byte as in its own MinIO body.
        for (record, body) in zip(records, bodies) {
            let single = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
            #expect(NSDictionary(dictionary: record).isEqual((single["Records"] as? [[String: Any]])?.first))
        }

        let lone = EventNotifier.body(of: [items[0]])
        #expect(Data(lone.readableBytesView) == bodies[0])
    }
}

@Suite struct EventQueueTests {
    @Test func eventsAndRulesSurviveAReopenAndAFullQueueRefusesWrites() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let settings = NotificationSettings(
            targets: [WebhookTarget(id: "gw", endpoint: URL(string: "http://127.0.0.1:9/events")!)],
            queuePath: directory + "/queue.sqlite", maxQueued: 3)
        do {
            let notifier = try EventNotifier(
                settings: settings, registry: PrometheusCollectorRegistry(), logger: logger)
            try notifier.admit(bucket: "ingest")
            try await notifier.setConfiguration(
                BucketNotificationConfiguration(queues: [
                    QueueRule(id: "r", arn: "arn:minio:sqs::gw:webhook", events: ["s3:ObjectCreated:*"], prefix: "v/")
                ]),
                for: "ingest")
            for n in 0..<4 {
                try await notifier.record(
                    ObjectStoreEvent(
                        kind: .put, bucket: "ingest", key: n == 3 ? "other/\(n)" : "v/\(n)", size: 1, etag: "e",
                        sequencer: "\(n)", time: Date()))
            }
            #expect(notifier.pendingCount == 3)  // the key outside the prefix made no event
            #expect(throws: NotificationError.self) { try notifier.admit(bucket: "ingest") }
            try notifier.admit(bucket: "plain")  // no rules, not held back
        }
        // Not running (never delivered): a new process finds the three events and the rules.
        let reopened = try EventNotifier(settings: settings, registry: PrometheusCollectorRegistry(), logger: logger)
        #expect(reopened.pendingCount == 3)
        #expect(reopened.configuration(for: "ingest").queues.map(\.prefix) == ["v/"])
        do {
            try reopened.admit(bucket: "ingest")
            Issue.record("a full queue admitted a write")
        } catch {
            #expect(error.code == "SlowDown" && error.status == 503)
        }
        try await reopened.bucketDeleted("ingest")
        #expect(reopened.configuration(for: "ingest").queues.isEmpty)
    }
}
