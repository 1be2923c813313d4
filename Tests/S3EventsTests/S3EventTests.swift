import Foundation
import S3Events
import Testing

/// Bodies captured on this kind of machine (copies of shared/fixtures/), and MinIO's webhook body built from
/// its documented shape (MinIO cannot run here).
enum S3Fixtures {
    static let cephRGW16Put = #"""
        {"Records":[{"eventVersion":"2.2","eventSource":"ceph:s3","awsRegion":"","eventTime":"2026-11-25T14:57:51.501072Z","eventName":"ObjectCreated:Put","userIdentity":{"principalId":"s3main"},"requestParameters":{"sourceIPAddress":""},"responseElements":{"x-amz-request-id":"9e108edb-49ad-4241-8171-db4bbc4f76f6.4103.6363149070150961753","x-amz-id-2":"1007-default-default"},"s3":{"s3SchemaVersion":"1.0","configurationId":"n1","bucket":{"name":"blat","ownerIdentity":{"principalId":"s3main"},"arn":"arn:aws:s3:::blat","id":"9e108edb-49ad-4241-8171-db4bbc4f76f6.4106.1"},"object":{"key":"warmup/lat2","size":1024,"eTag":"7265f4d211b56873a381d321f586e4a9","versionId":"","sequencer":"6FF7066B18CEF31D","metadata":[{"key":"x-amz-checksum-crc32","val":"SNfwYw=="},{"key":"x-amz-content-sha256","val":"49abd65bbf7f7e40c7055093ed2e3fd75f2f602f2c5fcf955c213e3135eb03f7"},{"key":"x-amz-date","val":"20261125T145751Z"},{"key":"x-amz-sdk-checksum-algorithm","val":"CRC32"}],"tags":[]}},"eventId":"1795618671.502517.7265f4d211b56873a381d321f586e4a9","opaqueData":""}]}
        """#

    static let localStackPut = #"""
        {"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": "2026-11-25T15:02:54.393Z", "eventName": "ObjectCreated:Put", "userIdentity": {"principalId": "AIDAJDPLRKLG7UEXAMPLE"}, "requestParameters": {"sourceIPAddress": "127.0.0.1"}, "responseElements": {"x-amz-request-id": "028c4847", "x-amz-id-2": "eftixk72aD6Ap51TnqcoF8eFidJG9Z/2"}, "s3": {"s3SchemaVersion": "1.0", "configurationId": "n1", "bucket": {"name": "bls", "ownerIdentity": {"principalId": "A3NL1KOZZKExample"}, "arn": "arn:aws:s3:::bls"}, "object": {"key": "llat1/00000", "sequencer": "0055AED6DCD90281E5", "eTag": "7265f4d211b56873a381d321f586e4a9", "size": 1024}}}]}
        """#

    static let localStackTestEvent = #"""
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-25T15:02:49.761Z", "Bucket": "bls", "RequestId": "c3938ab8-21ea-49dc-a8e4-6b7b9973afab", "HostId": "eftixk72aD6Ap51TnqcoF8eFidJG9Z/2"}
        """#

    static let minIOWebhookPut = #"""
        {"EventName":"s3:ObjectCreated:Put","Key":"bucket/dir/a+b.mp4","Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2026-11-25T10:00:00.123Z","eventName":"s3:ObjectCreated:Put","userIdentity":{"principalId":"minioadmin"},"requestParameters":{"principalId":"minioadmin","region":"","sourceIPAddress":"127.0.0.1"},"responseElements":{"x-amz-id-2":"dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8","x-amz-request-id":"1879A1B2C3D4E5F6","x-minio-deployment-id":"4b1e3c36-7f1f-4bb4-9d0a-2f0c1b7c9e11","x-minio-origin-endpoint":"http://127.0.0.1:9000"},"s3":{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{"name":"bucket","ownerIdentity":{"principalId":"minioadmin"},"arn":"arn:aws:s3:::bucket"},"object":{"key":"dir%2Fa%2Bb.mp4","size":1234,"eTag":"0f343b0931126a20f133d67c2b018a3b","contentType":"video/mp4","userMetadata":{"content-type":"video/mp4"},"sequencer":"1879A1B2C3D4E5F6"}},"source":{"host":"127.0.0.1","port":"","userAgent":"MinIO (linux; amd64) minio-go/v7"}}]}
        """#

    static func decode(_ text: String) throws -> S3Event {
        try JSONDecoder().decode(S3Event.self, from: Data(text.utf8))
    }

    static func date(_ year: Int, _ month: Int, _ day: Int, _ hour: Int, _ minute: Int, _ second: Int) -> Date {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar.date(
            from: DateComponents(
                year: year, month: month, day: day, hour: hour, minute: minute, second: second))!
    }
}

@Suite("S3Event decoding")
struct S3EventTests {
    @Test("Ceph RGW 16 (2.2): raw key, metadata list, empty region and versionId")
    func cephRGW() throws {
        let event = try S3Fixtures.decode(S3Fixtures.cephRGW16Put)
        #expect(!event.isTestEvent)
        let record = try #require(event.records.first)
        #expect(event.records.count == 1)
        #expect(record.eventVersion == "2.2")
        #expect(record.eventSource == "ceph:s3")
        #expect(record.awsRegion == "")
        #expect(record.eventName == "ObjectCreated:Put")
        #expect(record.isObjectCreated && !record.isObjectRemoved)
        let expected = S3Fixtures.date(2026, 11, 25, 14, 57, 51).addingTimeInterval(0.501072)
        #expect(abs(record.eventTime.timeIntervalSince(expected)) < 0.000_01)
        #expect(record.s3.bucket.name == "blat")
        #expect(record.s3.bucket.arn == "arn:aws:s3:::blat")
        #expect(record.s3.bucket.id == "9e108edb-49ad-4241-8171-db4bbc4f76f6.4106.1")
        #expect(record.s3.configurationID == "n1")
        let object = record.s3.object
        #expect(object.key == "warmup/lat2")
        #expect(object.rawKey == "warmup/lat2")
        #expect(object.size == 1024)
        #expect(object.eTag == "7265f4d211b56873a381d321f586e4a9")
        #expect(object.versionID == nil)
        #expect(object.sequencer == "6FF7066B18CEF31D")
        #expect(object.metadata["x-amz-checksum-crc32"] == "SNfwYw==")
        #expect(object.metadata.count == 4)
        #expect(object.tags.isEmpty)
        #expect(record.eventID == "1795618671.502517.7265f4d211b56873a381d321f586e4a9")
        #expect(record.userIdentity?.principalID == "s3main")
    }

    @Test("Ceph RGW keys are not URL-encoded: '+' and '%' stay as they are")
    func cephRawKey() throws {
        let body = S3Fixtures.cephRGW16Put.replacingOccurrences(
            of: #""key":"warmup/lat2""#, with: #""key":"a+b%2B c.mp4""#)
        let object = try #require(try S3Fixtures.decode(body).records.first).s3.object
        #expect(object.key == "a+b%2B c.mp4")
    }

    @Test("LocalStack S3 → SQS (AWS 2.1)")
    func localStack() throws {
        let event = try S3Fixtures.decode(S3Fixtures.localStackPut)
        let record = try #require(event.records.first)
        #expect(record.eventVersion == "2.1")
        #expect(record.eventSource == "aws:s3")
        #expect(record.awsRegion == "us-east-1")
        #expect(record.eventName == "ObjectCreated:Put")
        #expect(record.rawEventName == "ObjectCreated:Put")
        let expected = S3Fixtures.date(2026, 11, 25, 15, 2, 54).addingTimeInterval(0.393)
        #expect(abs(record.eventTime.timeIntervalSince(expected)) < 0.000_01)
        #expect(record.s3.bucket.name == "bls")
        #expect(record.s3.object.key == "llat1/00000")
        #expect(record.s3.object.size == 1024)
        #expect(record.s3.object.sequencer == "0055AED6DCD90281E5")
        #expect(record.requestParameters["sourceIPAddress"] == "127.0.0.1")
        #expect(record.responseElements["x-amz-request-id"] == "028c4847")
    }

    @Test("LocalStack's s3:TestEvent has no records")
    func testEvent() throws {
        let event = try S3Fixtures.decode(S3Fixtures.localStackTestEvent)
        #expect(event.isTestEvent)
        #expect(event.records.isEmpty)
        #expect(event.testEvent?.bucket == "bls")
        #expect(event.testEvent?.service == "Amazon S3")
        #expect(event.testEvent?.requestID == "c3938ab8-21ea-49dc-a8e4-6b7b9973afab")
        let roundTrip = try JSONDecoder().decode(S3Event.self, from: JSONEncoder().encode(event))
        #expect(roundTrip == event)
    }

    @Test("MinIO webhook (2.0): 's3:' prefix dropped, QueryEscape'd key decoded")
    func minIO() throws {
        let event = try S3Fixtures.decode(S3Fixtures.minIOWebhookPut)
        let record = try #require(event.records.first)
        #expect(record.eventVersion == "2.0")
        #expect(record.eventSource == "minio:s3")
        #expect(record.rawEventName == "s3:ObjectCreated:Put")
        #expect(record.eventName == "ObjectCreated:Put")
        #expect(record.awsRegion == "")
        #expect(
            abs(record.eventTime.timeIntervalSince(S3Fixtures.date(2026, 11, 25, 10, 0, 0).addingTimeInterval(0.123)))
                < 0.000_01)
        #expect(record.s3.object.rawKey == "dir%2Fa%2Bb.mp4")
        #expect(record.s3.object.key == "dir/a+b.mp4")
        #expect(record.s3.object.size == 1234)
        #expect(record.s3.object.contentType == "video/mp4")
        #expect(record.s3.object.metadata == ["content-type": "video/mp4"])
        #expect(record.s3.object.sequencer == "1879A1B2C3D4E5F6")
        #expect(record.s3.bucket.name == "bucket")
        #expect(record.source?.userAgent == "MinIO (linux; amd64) minio-go/v7")
        #expect(record.userIdentity?.principalID == "minioadmin")
    }

    @Test(
        "AWS form-encoded keys decode",
        arguments: [
            ("a+b", "a b"), ("a%2Bb", "a+b"), ("dir%2Fa%2Bb.mp4", "dir/a+b.mp4"), ("red+flower.jpg", "red flower.jpg"),
            ("caf%C3%A9/%E2%9C%93.mov", "café/✓.mov"), ("plain/key.mp4", "plain/key.mp4"), ("100%25", "100%"),
        ])
    func awsKeys(encoded: String, decoded: String) throws {
        let body = S3Fixtures.localStackPut.replacingOccurrences(
            of: #""key": "llat1/00000""#, with: #""key": "\#(encoded)""#)
        let object = try #require(try S3Fixtures.decode(body).records.first).s3.object
        #expect(object.key == decoded)
        #expect(object.rawKey == encoded)
        #expect(S3Event.formDecodeKey(S3Event.formEncodeKey(decoded)) == decoded)
    }

    @Test("a key with a malformed escape is kept as sent")
    func malformedKey() throws {
        #expect(S3Event.formDecodeKey("100%") == nil)
        #expect(S3Event.formDecodeKey("%zz") == nil)
        #expect(S3Event.formDecodeKey("%FF") == nil)
        let body = S3Fixtures.localStackPut.replacingOccurrences(of: #""key": "llat1/00000""#, with: #""key": "100%""#)
        #expect(try S3Fixtures.decode(body).records.first?.s3.object.key == "100%")
    }

    @Test("a delete without size or eTag decodes")
    func deleteEvent() throws {
        let body = #"""
            {"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-1","eventTime":"2026-01-02T03:04:05Z","eventName":"ObjectRemoved:Delete","s3":{"s3SchemaVersion":"1.0","configurationId":"c","bucket":{"name":"b","arn":"arn:aws:s3:::b"},"object":{"key":"gone+now.mp4","versionId":"3HL4kqtJlcpXroDTDmJ","sequencer":"0A1B2C3D4E5F678901"}}}]}
            """#
        let record = try #require(try S3Fixtures.decode(body).records.first)
        #expect(record.isObjectRemoved)
        #expect(record.eventTime == S3Fixtures.date(2026, 1, 2, 3, 4, 5))
        #expect(record.s3.object.size == nil)
        #expect(record.s3.object.eTag == nil)
        #expect(record.s3.object.versionID == "3HL4kqtJlcpXroDTDmJ")
        #expect(record.s3.object.key == "gone now.mp4")
        #expect(record.userIdentity == nil)
    }

    @Test("timestamps: with and without fractions, offsets; rejects garbage")
    func timestamps() throws {
        func parse(_ text: String) throws -> Date {
            let body = S3Fixtures.localStackPut.replacingOccurrences(of: "2026-11-25T15:02:54.393Z", with: text)
            return try #require(try S3Fixtures.decode(body).records.first).eventTime
        }
        let base = S3Fixtures.date(2026, 11, 25, 15, 2, 54)
        #expect(try parse("2026-11-25T15:02:54Z") == base)
        #expect(abs(try parse("2026-11-25T15:02:54.5Z").timeIntervalSince(base) - 0.5) < 1e-6)
        #expect(abs(try parse("2026-11-25T15:02:54.123456789Z").timeIntervalSince(base) - 0.123456789) < 1e-6)
        #expect(try parse("2026-11-25T16:02:54+01:00") == base)
        #expect(try parse("2026-11-25T14:32:54-00:30") == base)
        #expect(try parse("2000-02-29T00:00:00Z") == S3Fixtures.date(2000, 2, 29, 0, 0, 0))
        #expect(try parse("1969-12-31T23:59:59Z") == Date(timeIntervalSince1970: -1))
        for bad in ["2026-11-25 15:02", "2026-11-25T15:02:54", "2026-13-25T15:02:54Z", "2026-11-25T15:02:54.Z", "x"] {
            #expect(throws: DecodingError.self) { _ = try parse(bad) }
        }
    }

    @Test("the summary agrees with the full record on every fixture")
    func summaries() throws {
        for fixture in [S3Fixtures.cephRGW16Put, S3Fixtures.localStackPut, S3Fixtures.minIOWebhookPut] {
            let full = try S3Fixtures.decode(fixture).records
            let summaries = try JSONDecoder().decode(S3Event.Summaries.self, from: Data(fixture.utf8))
            #expect(!summaries.isTestEvent)
            #expect(summaries.records.count == full.count)
            for (summary, record) in zip(summaries.records, full) {
                #expect(summary.bucket == record.s3.bucket.name)
                #expect(summary.key == record.s3.object.key)
                #expect(summary.eventName == record.eventName)
                #expect(summary.eventSource == record.eventSource)
                #expect(summary.eTag == record.s3.object.eTag)
                #expect(summary.sequencer == record.s3.object.sequencer)
                #expect(summary.versionID == record.s3.object.versionID)
            }
        }
        let test = try JSONDecoder().decode(S3Event.Summaries.self, from: Data(S3Fixtures.localStackTestEvent.utf8))
        #expect(test.isTestEvent && test.records.isEmpty)
    }

    @Test("encoding round-trips every fixture")
    func roundTrip() throws {
        for body in [S3Fixtures.cephRGW16Put, S3Fixtures.localStackPut, S3Fixtures.minIOWebhookPut] {
            let event = try S3Fixtures.decode(body)
            let again = try JSONDecoder().decode(S3Event.self, from: JSONEncoder().encode(event))
            // Encoding writes milliseconds; compare the rest exactly.
            #expect(again.records.count == event.records.count)
            for (a, b) in zip(again.records, event.records) {
                #expect(abs(a.eventTime.timeIntervalSince(b.eventTime)) < 0.001)
                var a = a
                a.eventTime = b.eventTime
                #expect(a == b)
            }
        }
    }

    @Test("an event built in code encodes the key in AWS form")
    func buildEvent() throws {
        let record = S3Event.Record(
            eventTime: S3Fixtures.date(2026, 1, 1, 0, 0, 0), eventName: "ObjectCreated:Put",
            s3: .init(configurationID: "c", bucket: .init(name: "b"), object: .init(key: "dir/a b+c.mp4", size: 3)))
        #expect(record.s3.object.rawKey == "dir/a+b%2Bc.mp4")
        let json = String(decoding: try JSONEncoder().encode(S3Event(records: [record])), as: UTF8.self)
        #expect(json.contains(#""eventTime":"2026-01-01T00:00:00.000Z""#))
        let decoded = try S3Fixtures.decode(json)
        #expect(decoded.records.first?.s3.object.key == "dir/a b+c.mp4")
    }

    @Test("every body in shared/fixtures decodes", .enabled(if: S3EventTests.sharedFixtures != nil))
    func sharedFixtureFiles() throws {
        let directory = try #require(S3EventTests.sharedFixtures)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }
        #expect(!names.isEmpty)
        for name in names {
            let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))
            let event = try JSONDecoder().decode(S3Event.self, from: data)
            #expect(event.isTestEvent || !event.records.isEmpty, "\(name)")
        }
    }

    /// `shared/fixtures` beside the repository, where the workplace lays it.
    static var sharedFixtures: String? {
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let directory = repository.deletingLastPathComponent().appendingPathComponent("shared/fixtures").path
        return FileManager.default.fileExists(atPath: directory) ? directory : nil
    }
}
