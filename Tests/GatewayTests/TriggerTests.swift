import Foundation
import Gateway
import InvocationQueue
import PostgresInvocationQueue
import PostgresTestSupport
import Testing

/// Object-store events through the webhook into the durable queue and out to real (awslambdaric) workers.
@Suite("Triggers and asynchronous invocations", .enabled(if: Python.available, Python.skipMessage))
struct TriggerTests {
    static let token = "webhook-test-token"

    /// A MinIO webhook body (event version 2.0, key escaped like Go's url.QueryEscape).
    static func minioBody(bucket: String, key: String, etag: String, sequencer: String, size: Int = 11) -> String {
        let escaped = key.addingPercentEncoding(
            withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-_.~ ")))!
            .replacingOccurrences(of: " ", with: "+")
        return """
            {"EventName":"s3:ObjectCreated:Put","Key":"\(bucket)/\(escaped)","Records":[{"eventVersion":"2.0",
            "eventSource":"minio:s3","awsRegion":"","eventTime":"2026-11-25T10:00:00.123Z",
            "eventName":"s3:ObjectCreated:Put","userIdentity":{"principalId":"cinescale"},
            "requestParameters":{"principalId":"cinescale","region":"","sourceIPAddress":"127.0.0.1"},
            "responseElements":{"x-amz-request-id":"17B","x-minio-origin-endpoint":"http://127.0.0.1:9000"},
            "s3":{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{"name":"\(bucket)",
            "ownerIdentity":{"principalId":"cinescale"},"arn":"arn:aws:s3:::\(bucket)"},"object":{"key":"\(escaped)",
            "size":\(size),"eTag":"\(etag)","contentType":"video/mp4","userMetadata":{"content-type":"video/mp4"},
            "sequencer":"\(sequencer)"}},"source":{"host":"127.0.0.1","port":"","userAgent":"cinescale"}}]}
            """
    }

    /// An AWS S3 event 2.1 record.
    static func awsRecord(bucket: String, key: String, etag: String, sequencer: String) -> String {
        """
        {"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2026-11-25T10:00:00.000Z",
        "eventName":"ObjectCreated:Put","userIdentity":{"principalId":"AWS:X"},"requestParameters":{"sourceIPAddress":"1.2.3.4"},
        "responseElements":{"x-amz-request-id":"R","x-amz-id-2":"I"},"s3":{"s3SchemaVersion":"1.0","configurationId":"c",
        "bucket":{"name":"\(bucket)","ownerIdentity":{"principalId":"O"},"arn":"arn:aws:s3:::\(bucket)"},
        "object":{"key":"\(key)","size":5,"eTag":"\(etag)","sequencer":"\(sequencer)"}}}
        """
    }

    func recorder(_ dir: HandlerDirectory, fail: Bool = false, attempts: Int = 3) -> FunctionConfiguration {
        var function = dir.function(
            "rec", module: "recorder", concurrency: 2,
            environment: ["RECORD_DIR": dir.path, "FAIL": fail ? "1" : "0"])
        function.retry = RetryPolicy(
            maxAttempts: attempts, initialBackoff: .milliseconds(50), maxBackoff: .milliseconds(200))
        return function
    }

    func configure(_ c: inout GatewayConfiguration) {
        c.eventToken = Self.token
        c.triggers = [TriggerRule(function: "rec", bucket: "ingest", prefix: "videos/", suffix: ".mp4")]
    }

    /// `configure` on `backend`'s queue (a fresh PostgreSQL database, or the per-test SQLite file).
    func configure(_ backend: QueueBackend) async throws -> @Sendable (inout GatewayConfiguration) -> Void {
        let url = try await backend.freshPostgresURL()
        return { c in
            c.eventToken = Self.token
            c.triggers = [TriggerRule(function: "rec", bucket: "ingest", prefix: "videos/", suffix: ".mp4")]
            c.queue.postgres = url
        }
    }

    func post(_ gw: LiveGateway, _ body: String, token: String? = TriggerTests.token) async throws -> LiveGateway.Reply
    {
        var headers: [(name: String, value: String)] = [(name: "content-type", value: "application/json")]
        if let token { headers.append((name: "authorization", value: "Bearer \(token)")) }
        return try await gw.send("POST", "/events", headers: headers, body: Array(body.utf8), credentials: nil)
    }

    func waitUntil(_ what: String, timeout: Duration = .seconds(60), _ condition: () async throws -> Bool) async throws
    {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("timed out waiting for \(what)")
        throw CancellationError()
    }

    @Test(arguments: QueueBackend.allCases) func aMinIONotificationInvokesTheMatchingFunctionWithTheRecord(
        _ backend: QueueBackend
    ) async throws {
        let setup = try await configure(backend)
        let dir = try HandlerDirectory()
        try await LiveGateway.run([recorder(dir)], configure: setup) { gw in
            let key = "videos/my clip+1.mp4"
            let reply = try await post(
                gw, Self.minioBody(bucket: "ingest", key: key, etag: "abc123", sequencer: "1877A0B1C2D3E4F5"))
            #expect(reply.status == 200)
            #expect(reply.json?["queued"] as? Int == 1)
            // Not matching: other suffix, other prefix, other bucket.
            for (bucket, other) in [
                ("ingest", "videos/notes.txt"), ("ingest", "other/a.mp4"), ("media", "videos/a.mp4"),
            ] {
                let ignored = try await post(gw, Self.minioBody(bucket: bucket, key: other, etag: "e", sequencer: "1"))
                #expect(ignored.status == 200)
                #expect(ignored.json?["queued"] as? Int == 0)
            }
            try await waitUntil("the effect") { dir.effects().count == 1 }
            let run = try #require(dir.runs().first)
            let event = try #require(run["event"] as? [String: Any])
            let records = try #require(event["Records"] as? [[String: Any]])
            #expect(records.count == 1)
            let object = try #require((records[0]["s3"] as? [String: Any])?["object"] as? [String: Any])
            let rawKey = try #require(object["key"] as? String)
            #expect(rawKey.replacingOccurrences(of: "+", with: " ").removingPercentEncoding == key)
            #expect(object["eTag"] as? String == "abc123")
            #expect(object["size"] as? Int == 11)
            #expect(dir.runs().count == 1)
        }
    }

    @Test(arguments: QueueBackend.allCases) func severalRecordsEachInvokeOnceAndDuplicatesHaveNoSecondEffect(
        _ backend: QueueBackend
    ) async throws {
        let setup = try await configure(backend)
        let dir = try HandlerDirectory()
        try await LiveGateway.run([recorder(dir)], configure: setup) { gw in
            let records = (1...3).map {
                Self.awsRecord(bucket: "ingest", key: "videos/v\($0).mp4", etag: "e\($0)", sequencer: "0A\($0)")
            }
            let body = "{\"Records\":[\(records.joined(separator: ","))]}"
            let first = try await post(gw, body)
            #expect(first.json?["records"] as? Int == 3)
            #expect(first.json?["queued"] as? Int == 3)
            let again = try await post(gw, body)
            #expect(again.status == 200)
            #expect(again.json?["queued"] as? Int == 0)
            #expect(again.json?["duplicates"] as? Int == 3)
            try await waitUntil("three effects") { dir.effects().count == 3 }
            try await Task.sleep(for: .milliseconds(300))
            #expect(dir.runs().count == 3)
            #expect(dir.effects().count == 3)
            let keys = Set(
                dir.runs().compactMap { run -> String? in
                    let records = (run["event"] as? [String: Any])?["Records"] as? [[String: Any]]
                    return ((records?.first?["s3"] as? [String: Any])?["object"] as? [String: Any])?["key"] as? String
                })
            #expect(keys == ["videos/v1.mp4", "videos/v2.mp4", "videos/v3.mp4"])
            // A new version of the same key (new eTag and sequencer) is a new change.
            let newer = try await post(
                gw,
                "{\"Records\":[\(Self.awsRecord(bucket: "ingest", key: "videos/v1.mp4", etag: "e9", sequencer: "0B1"))]}"
            )
            #expect(newer.json?["queued"] as? Int == 1)
            try await waitUntil("the fourth effect") { dir.effects().count == 4 }
        }
    }

    @Test func aBatchLargerThanTheBoundGetsInWhileThereIsRoomAndAFullQueueRefuses() async throws {
        let dir = try HandlerDirectory()
        var function = recorder(dir)
        function.environment["SLEEP"] = "0.5"
        try await LiveGateway.run(
            [function],
            configure: { c in
                configure(&c)
                c.queue.maxPending = 2
            }
        ) { gw in
            let records = (1...5).map {
                Self.awsRecord(bucket: "ingest", key: "videos/b\($0).mp4", etag: "e\($0)", sequencer: "0C\($0)")
            }
            let batch = try await post(gw, "{\"Records\":[\(records.joined(separator: ","))]}")
            #expect(batch.status == 200)
            #expect(batch.json?["queued"] as? Int == 5)
            let one =
                "{\"Records\":[\(Self.awsRecord(bucket: "ingest", key: "videos/late.mp4", etag: "l", sequencer: "0D1"))]}"
            let refused = try await post(gw, one)
            #expect(refused.status == 503)
            #expect((refused.json?["error"] as? [String: Any])?["code"] as? String == "SlowDown")
            try await waitUntil("five effects") { dir.effects().count == 5 }
            try await waitUntil("room again") { try await post(gw, one).status == 200 }
            try await waitUntil("the sixth effect") { dir.effects().count == 6 }
            #expect(dir.runs().count == 6)
        }
    }

    @Test func theWebhookRefusesWhatItCannotTrust() async throws {
        let dir = try HandlerDirectory()
        try await LiveGateway.run([recorder(dir)], configure: configure) { gw in
            let body = Self.minioBody(bucket: "ingest", key: "videos/a.mp4", etag: "e", sequencer: "1")
            #expect(try await post(gw, body, token: nil).status == 401)
            #expect(try await post(gw, body, token: "wrong").status == 401)
            let garbage = try await post(gw, "this is not json")
            #expect(garbage.status == 400)
            let noRecords = try await post(gw, "{\"hello\":1}")
            #expect(noRecords.status == 400)
            #expect((noRecords.json?["error"] as? [String: Any])?["code"] as? String == "InvalidEvent")
            let badRecord = try await post(gw, "{\"Records\":[{\"eventName\":\"ObjectCreated:Put\"}]}")
            #expect(badRecord.status == 400)
            let test = try await post(
                gw,
                #"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-25T10:00:00.000Z","Bucket":"ingest"}"#)
            #expect(test.status == 200)
            #expect(test.json?["records"] as? Int == 0)
            try await Task.sleep(for: .milliseconds(200))
            #expect(dir.runs().isEmpty)
        }
    }

    @Test(arguments: QueueBackend.allCases) func aFunctionThatAlwaysFailsGetsExactlyItsAttemptsThenOneDeadLetter(
        _ backend: QueueBackend
    ) async throws {
        let setup = try await configure(backend)
        let dir = try HandlerDirectory()
        try await LiveGateway.run([recorder(dir, fail: true, attempts: 3)], configure: setup) { gw in
            let reply = try await post(
                gw, Self.minioBody(bucket: "ingest", key: "videos/bad.mp4", etag: "e", sequencer: "1"))
            #expect(reply.json?["queued"] as? Int == 1)
            var dead: [[String: Any]] = []
            try await waitUntil("a dead letter") {
                dead =
                    try await gw.send("GET", "/invocations?state=dead").json?["invocations"] as? [[String: Any]] ?? []
                return !dead.isEmpty
            }
            try await Task.sleep(for: .milliseconds(400))
            #expect(dir.runs().count == 3)
            #expect(dead.count == 1)
            let letter = dead[0]
            #expect(letter["attempts"] as? Int == 3)
            #expect(letter["errorType"] as? String == "RuntimeError")
            #expect(letter["errorMessage"] as? String == "always fails")
            #expect(((letter["event"] as? [String: Any])?["Records"] as? [Any])?.count == 1)
            let id = try #require(letter["id"] as? String)
            // Every attempt carried the same request id.
            #expect(Set(dir.runs().compactMap { $0["requestId"] as? String }) == [id])

            // Re-drive: a fresh budget of attempts, then dead again.
            let redriven = try await gw.send("POST", "/invocations/\(id)/redrive")
            #expect(redriven.status == 200)
            #expect(redriven.json?["state"] as? String == "queued")
            try await waitUntil("six runs") { dir.runs().count == 6 }
            try await waitUntil("dead again") {
                try await gw.send("GET", "/invocations/\(id)").json?["state"] as? String == "dead"
            }
            #expect(try await gw.send("POST", "/invocations/\(id)/redrive", credentials: nil).status == 403)
            #expect(try await gw.send("POST", "/invocations/nope/redrive").status == 404)
            #expect(try await gw.send("GET", "/invocations?state=sideways").status == 400)
            let metrics = try await gw.send("GET", "/metrics", credentials: nil)
            #expect(metrics.text.contains(#"cinescale_gateway_async_attempts_total{function="rec",outcome="dead"} 2"#))
            #expect(
                metrics.text.contains(#"cinescale_gateway_async_attempts_total{function="rec",outcome="failed"} 4"#))
        }
    }

    @Test(arguments: QueueBackend.allCases) func eventInvokesAreQueuedDurablyAndListed(_ backend: QueueBackend)
        async throws
    {
        let setup = try await configure(backend)
        let dir = try HandlerDirectory()
        try await LiveGateway.run([recorder(dir)], configure: setup) { gw in
            let reply = try await gw.invoke("rec", #"{"hello":"world"}"#, type: "Event")
            #expect(reply.status == 202)
            let id = try #require(reply.header("x-amzn-RequestId"))
            try await waitUntil("success") {
                try await gw.send("GET", "/invocations/\(id)").json?["state"] as? String == "succeeded"
            }
            #expect(dir.effects() == [id])
            let listed = try await gw.send("GET", "/invocations?function=rec&state=succeeded&limit=10")
            let items = try #require(listed.json?["invocations"] as? [[String: Any]])
            #expect(items.map { $0["id"] as? String } == [id])
            #expect(items[0]["source"] as? String == "invoke")
            #expect(items[0]["durationMs"] as? Double != nil)
            let health = try await gw.send("GET", "/healthz", credentials: nil)
            #expect(health.status == 200)
            #expect(health.json?["status"] as? String == "ok")
        }
    }

    @Test func invocationsInterruptedByACrashRunAfterRestart() async throws {
        let dir = try HandlerDirectory()
        let path = dir.path + "/queue.sqlite"
        // The state a killed gateway leaves: three queued, two running.
        do {
            let queue = try SQLiteInvocationQueue(path: path)
            let now = Date()
            let invocations = (1...5).map { n in
                QueuedInvocation(
                    id: "crash-\(n)", function: "rec", source: "s3", dedupeKey: "k\(n)",
                    payload: Data("{\"n\":\(n)}".utf8),
                    maxAttempts: 3, createdAt: now, expiresAt: now.addingTimeInterval(3600), nextAttemptAt: now)
            }
            _ = try await queue.enqueue(invocations)
            queue.recordStart(id: "crash-1", attempt: 1, at: now)
            queue.recordStart(id: "crash-2", attempt: 1, at: now)
            try await queue.database.flush()
        }
        try await LiveGateway.run(
            [recorder(dir)],
            configure: { c in
                configure(&c)
                c.queue.path = path
            }
        ) { gw in
            try await waitUntil("five effects") { dir.effects().count == 5 }
            #expect(dir.effects() == Set((1...5).map { "crash-\($0)" }))
            try await waitUntil("all succeeded") {
                let items =
                    try await gw.send("GET", "/invocations?state=succeeded").json?["invocations"] as? [[String: Any]]
                return items?.count == 5
            }
            let items = try #require(try await gw.send("GET", "/invocations").json?["invocations"] as? [[String: Any]])
            #expect(items.allSatisfy { $0["attempts"] as? Int == 1 })
        }
    }

    /// The shared queue's counterpart: a gateway died holding two attempts and three queued; another gateway
    /// runs the queued ones at once and takes the two over when their lease expires, each exactly once.
    @Test func attemptsOfAGatewayThatDiedAreTakenOverFromTheSharedQueue() async throws {
        let dir = try HandlerDirectory()
        let url = try #require(try await QueueBackend.postgres.freshPostgresURL())
        // Just before the dead gateway's claim: its leases end 3 s after the database made them, so no later
        // than that plus 3 s can the two be taken over (measured from here, not from the survivor's start, which
        // a loaded machine may reach well after the claim).
        var claiming = ContinuousClock.now
        do {
            var configuration = try PostgresQueueConfiguration(url: url)
            configuration.owner = "gateway-that-died"
            configuration.leaseDuration = .seconds(3)
            let queue = try PostgresInvocationQueue(configuration: configuration, logger: LiveGateway.logger)
            let pool = Task { await queue.run() }
            let now = Date()
            let invocations = (1...5).map { n in
                QueuedInvocation(
                    id: "crash-\(n)", function: "rec", source: "s3", dedupeKey: "k\(n)",
                    payload: Data("{\"n\":\(n)}".utf8),
                    maxAttempts: 3, createdAt: now, expiresAt: now.addingTimeInterval(3600),
                    nextAttemptAt: now.addingTimeInterval(n <= 2 ? 0 : 0.001))
            }
            _ = try await queue.enqueue(invocations)
            claiming = ContinuousClock.now
            #expect(try await queue.claim(["rec": 2], now: now).map(\.id) == ["crash-1", "crash-2"])
            pool.cancel()
            await pool.value
        }
        let claimed = claiming
        try await LiveGateway.run(
            [recorder(dir)],
            configure: { c in
                configure(&c)
                c.queue.postgres = url
                // The dead gateway's leases (3 s, above) are what expire; this one's are long, so a loaded
                // machine renewing late never lets it lose (and run again) an attempt of its own.
                c.queue.lease = .seconds(60)
            }
        ) { gw in
            try await waitUntil("three effects") { dir.effects().count >= 3 }
            try await waitUntil("five effects") { dir.effects().count == 5 }
            // The leased two waited for their lease (3 s from the claim) to expire.
            #expect(ContinuousClock.now - claimed >= .seconds(2.9))
            #expect(dir.effects() == Set((1...5).map { "crash-\($0)" }))
            try await waitUntil("all succeeded") {
                let items =
                    try await gw.send("GET", "/invocations?state=succeeded").json?["invocations"] as? [[String: Any]]
                return items?.count == 5
            }
            let items = try #require(try await gw.send("GET", "/invocations").json?["invocations"] as? [[String: Any]])
            #expect(items.allSatisfy { $0["attempts"] as? Int == 1 })
            #expect(dir.runs().count == 5)
        }
    }
}
