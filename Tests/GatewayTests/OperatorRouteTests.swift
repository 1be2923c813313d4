import Foundation
import HTTPTypes
import Hummingbird
import InvocationQueue
import SigV4
import Testing

@testable import Gateway

/// The gateway's own routes in process (the fixture is in GatewayRouteTests.swift): the event webhook, the
/// operator view of the queue, `/metrics` and `/healthz`.
extension GatewayRouteTests {
    // MARK: POST /events

    static func awsBody(_ keys: [String], bucket: String = "ingest") -> String {
        let records = keys.enumerated().map { n, key in
            TriggerTests.awsRecord(bucket: bucket, key: key, etag: "e\(n)", sequencer: "0A\(n)")
        }
        return #"{"Records":[\#(records.joined(separator: ","))]}"#
    }

    @Test func eventsAreCommittedThenCountedInTheAnswer() async throws {
        try await Self.withRoutes { parts, call in
            let auth: HTTPFields = [.authorization: "Bearer \(Self.token)"]
            let body = Self.awsBody(["a.mp4", "b.mp4"])
            let first = try await call(.post, "/events", body, headers: auth, credentials: nil)
            #expect(first.status == .ok && first.header("Content-Type") == "application/json")
            #expect(first.text == #"{"records":2,"queued":2,"duplicates":0}"#)
            #expect(parts.queue.all.map(\.function) == ["echo", "echo"])
            #expect(parts.queue.all.allSatisfy { $0.source == "s3" && $0.dedupeKey != nil })
            #expect(parts.scheduler.scheduled.count == 2)
            // The same notification again (a store's retry): deduplicated. The token as a query parameter.
            let again = try await call(.post, "/events?token=\(Self.token)", body, credentials: nil)
            #expect(again.text == #"{"records":2,"queued":0,"duplicates":2}"#)
            // A bucket no rule names, and AWS's test event: read, nothing queued.
            #expect(
                try await call(
                    .post, "/events", Self.awsBody(["c.mp4"], bucket: "other"), headers: auth, credentials: nil
                )
                .text == #"{"records":1,"queued":0,"duplicates":0}"#)
            let test =
                #"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-25T10:00:00.000Z","Bucket":"ingest"}"#
            #expect(
                try await call(.post, "/events", test, headers: auth, credentials: nil).text
                    == #"{"records":0,"queued":0,"duplicates":0}"#)
            #expect(parts.queue.all.count == 2)
            // The observer saw every accepted body, after its commit.
            #expect(parts.observed.withLock { $0.count } == 4)
            let metrics = try await call(.get, "/metrics", credentials: nil)
            #expect(metrics.status == .ok)
            #expect(metrics.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
            #expect(metrics.text.contains("cinescale_gateway_event_notifications_total 4"))
            #expect(metrics.text.contains("cinescale_gateway_event_records_total 5"))
        }
    }

    @Test func theWebhookRefusesWhatItCannotTrust() async throws {
        try await Self.withRoutes { parts, call in
            let body = Self.awsBody(["a.mp4"])
            for headers: HTTPFields in [[:], [.authorization: "Bearer wrong"], [.authorization: Self.token]] {
                let refused = try await call(.post, "/events", body, headers: headers, credentials: nil)
                Self.expectError(refused, .unauthorized, "Unauthorized")
                #expect(refused.header("WWW-Authenticate") == "Bearer")
            }
            Self.expectError(
                try await call(.post, "/events?token=wrong", body, credentials: nil), .unauthorized, "Unauthorized")
            let auth: HTTPFields = [.authorization: "Bearer \(Self.token)"]
            for (garbage, message) in [
                ("this is not json", "The body is not a JSON object."),
                (#"{"hello":1}"#, "The body is not an S3 event notification (no 'Records' array)."),
                (#"{"Records":[{"eventName":"ObjectCreated:Put"}]}"#, nil),
            ] {
                let refused = try await call(.post, "/events", garbage, headers: auth, credentials: nil)
                Self.expectError(refused, .badRequest, "InvalidEvent", "\(garbage)")
                if let message { #expect(refused.error["message"] as? String == message) }
            }
            let huge = String(repeating: " ", count: OperatorAPI.maxEventBytes + 1)
            Self.expectError(
                try await call(.post, "/events", huge, headers: auth, credentials: nil), .contentTooLarge,
                "RequestEntityTooLarge")
            #expect(parts.queue.all.isEmpty && parts.observed.withLock { $0.isEmpty })
        }
    }

    @Test func theWebhookAtTheQueuesBoundSaysSlowDown() async throws {
        try await Self.withRoutes(maxPending: 2) { parts, call in
            let auth: HTTPFields = [.authorization: "Bearer \(Self.token)"]
            // One notification is let in below the bound, whatever its size.
            let batch = try await call(
                .post, "/events", Self.awsBody(["a", "b", "c"]), headers: auth, credentials: nil)
            #expect(batch.status == .ok && parts.queue.all.count == 3)
            let refused = try await call(.post, "/events", Self.awsBody(["d"]), headers: auth, credentials: nil)
            Self.expectError(refused, .serviceUnavailable, "SlowDown")
            #expect(refused.header("Retry-After") == "1")
            #expect(parts.queue.all.count == 3)
        }
    }

    @Test func theWebhooksOwnFailuresAre503WithARequestID() async throws {
        try await Self.withRoutes { parts, call in
            let auth: HTTPFields = [.authorization: "Bearer \(Self.token)"]
            parts.queue.failing = true
            Self.expectFault(
                try await call(.post, "/events", Self.awsBody(["a"]), headers: auth, credentials: nil),
                .serviceUnavailable, "QueueUnavailable", parts, logged: Self.internalDetail)
            parts.queue.failing = false
            parts.observerFails.store(true, ordering: .relaxed)
            Self.expectFault(
                try await call(.post, "/events", Self.awsBody(["b"]), headers: auth, credentials: nil),
                .serviceUnavailable, "ObserverUnavailable", parts, logged: Self.internalDetail)
            // Committed before the observer failed: the store's retry finds it a duplicate.
            parts.observerFails.store(false, ordering: .relaxed)
            #expect(
                try await call(.post, "/events", Self.awsBody(["b"]), headers: auth, credentials: nil).text
                    == #"{"records":1,"queued":0,"duplicates":1}"#)
        }
    }

    // MARK: The operator view of the queue

    static func seeded(
        _ id: String, function: String = "echo", state: QueuedInvocation.State, at seconds: TimeInterval
    ) -> QueuedInvocation {
        let created = Date(timeIntervalSince1970: seconds)
        return QueuedInvocation(
            id: id, function: function, source: "s3", dedupeKey: nil, payload: Data(#"{"n":"\#(id)"}"#.utf8),
            state: state, attempts: state == .dead ? 2 : 0, maxAttempts: 2, createdAt: created,
            expiresAt: created.addingTimeInterval(3600), nextAttemptAt: created,
            finishedAt: state == .dead ? created.addingTimeInterval(1) : nil,
            errorType: state == .dead ? "RuntimeError" : nil, errorMessage: state == .dead ? "always fails" : nil)
    }

    @Test func invocationsAreListedNewestFirstByFilter() async throws {
        try await Self.withRoutes { parts, call in
            parts.queue.seed(Self.seeded("i1", state: .succeeded, at: 1000))
            parts.queue.seed(Self.seeded("i2", state: .dead, at: 2000))
            parts.queue.seed(Self.seeded("i3", function: "small", state: .queued, at: 3000))
            parts.queue.seed(Self.seeded("i4", state: .dead, at: 4000))
            func ids(_ uri: String) async throws -> [String] {
                let answer = try await call(.get, uri)
                #expect(answer.status == .ok, "\(uri)")
                return (answer.json["invocations"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? String }
            }
            #expect(try await ids("/invocations") == ["i4", "i3", "i2", "i1"])
            #expect(try await ids("/invocations?state=dead") == ["i4", "i2"])
            #expect(try await ids("/invocations?state=dead-lettered,succeeded") == ["i4", "i2", "i1"])
            #expect(try await ids("/invocations?function=small") == ["i3"])
            #expect(try await ids("/invocations?before=3000") == ["i2", "i1"])
            // A full page says where the next one starts.
            let page = try await call(.get, "/invocations?limit=2")
            #expect(page.json["nextBefore"] as? Double == 3000)
            #expect(try await call(.get, "/invocations?limit=3").json["nextBefore"] as? Double == 2000)
            #expect(try await call(.get, "/invocations?limit=4").json["nextBefore"] as? Double == 1000)
            #expect(try await call(.get, "/invocations?limit=5").json["nextBefore"] == nil)
            let letter = try #require(
                (try await call(.get, "/invocations?state=dead&limit=1")
                    .json["invocations"] as? [[String: Any]])?.first)
            #expect(letter["errorType"] as? String == "RuntimeError" && letter["attempts"] as? Int == 2)
            #expect((letter["event"] as? [String: Any])?["n"] as? String == "i4")

            for uri in [
                "/invocations?state=sideways", "/invocations?limit=0", "/invocations?limit=1001",
                "/invocations?limit=many", "/invocations?before=yesterday",
            ] {
                Self.expectError(try await call(.get, uri), .badRequest, "InvalidParameterValue", "\(uri)")
            }
        }
    }

    @Test func oneInvocationById() async throws {
        try await Self.withRoutes { parts, call in
            parts.queue.seed(Self.seeded("i1", state: .queued, at: 1000))
            let one = try await call(.get, "/invocations/i1")
            #expect(one.status == .ok && one.json["id"] as? String == "i1" && one.json["state"] as? String == "queued")
            #expect(one.json["nextAttemptAt"] as? Double == 1000 && one.json["source"] as? String == "s3")
            let missing = try await call(.get, "/invocations/nope")
            Self.expectError(missing, .notFound, "ResourceNotFoundException")
            #expect(missing.error["message"] as? String == "No invocation with id 'nope'.")
        }
    }

    @Test func aDeadLetterIsRedrivenWithAFreshBudget() async throws {
        try await Self.withRoutes { parts, call in
            parts.queue.seed(Self.seeded("dead", state: .dead, at: 1000))
            parts.queue.seed(Self.seeded("done", state: .succeeded, at: 1000))
            parts.queue.seed(Self.seeded("gone", function: "removed", state: .dead, at: 1000))
            let redriven = try await call(.post, "/invocations/dead/redrive")
            #expect(redriven.status == .ok)
            #expect(redriven.json["state"] as? String == "queued" && redriven.json["attempts"] as? Int == 0)
            #expect(redriven.json["source"] as? String == "redrive")
            #expect(parts.scheduler.scheduled == ["dead"])
            // It is no longer dead: a second re-drive is a conflict.
            let twice = try await call(.post, "/invocations/dead/redrive")
            Self.expectError(twice, .conflict, "InvalidState")
            #expect(twice.error["message"] as? String == "Invocation 'dead' is queued, not dead-lettered.")
            Self.expectError(try await call(.post, "/invocations/done/redrive"), .conflict, "InvalidState")
            let unconfigured = try await call(.post, "/invocations/gone/redrive")
            Self.expectError(unconfigured, .conflict, "ResourceNotFoundException")
            #expect(
                unconfigured.error["message"] as? String == "Function 'removed' is not configured on this gateway.")
            Self.expectError(try await call(.post, "/invocations/nope/redrive"), .notFound, "ResourceNotFoundException")
            // Another operator re-drove it between the look and the write.
            parts.queue.seed(Self.seeded("raced", state: .dead, at: 1000))
            parts.queue.beforeRedrive { $0["raced"]?.state = .queued }
            let raced = try await call(.post, "/invocations/raced/redrive")
            Self.expectError(raced, .conflict, "InvalidState")
            #expect(raced.error["message"] as? String == "Invocation 'raced' is no longer dead-lettered.")
            #expect(parts.scheduler.scheduled == ["dead"])
        }
    }

    @Test func aRedriveAtTheQueuesBoundIs429() async throws {
        try await Self.withRoutes(maxPending: 1) { parts, call in
            parts.queue.seed(Self.seeded("dead", state: .dead, at: 1000))
            parts.queue.seed(Self.seeded("busy", state: .running, at: 2000))
            let refused = try await call(.post, "/invocations/dead/redrive")
            Self.expectError(refused, .tooManyRequests, "TooManyRequestsException")
            #expect(refused.header("Retry-After") == "1")
            #expect(try await parts.queue.get(id: "dead")?.state == .dead)
        }
    }

    @Test func theOperatorRoutesAreSigned() async throws {
        try await Self.withRoutes { parts, call in
            parts.queue.seed(Self.seeded("dead", state: .dead, at: 1000))
            for (method, uri) in [
                (HTTPRequest.Method.get, "/invocations"), (.get, "/invocations/dead"),
                (.post, "/invocations/dead/redrive"),
            ] {
                Self.expectError(
                    try await call(method, uri, credentials: nil), .forbidden, "MissingAuthenticationTokenException",
                    "\(uri)")
                Self.expectError(
                    try await call(
                        method, uri,
                        credentials: Credentials(accessKeyId: Self.credentials.accessKeyId, secretAccessKey: "wrong")),
                    .forbidden, "InvalidSignatureException", "\(uri)")
                Self.expectError(
                    try await call(
                        method, uri, credentials: Credentials(accessKeyId: "AKIDNOPE", secretAccessKey: "x")),
                    .forbidden, "UnrecognizedClientException", "\(uri)")
            }
            #expect(try await parts.queue.get(id: "dead")?.state == .dead)
        }
    }

    @Test func aQueueThatFailsIsA500WithARequestID() async throws {
        try await Self.withRoutes { parts, call in
            parts.queue.seed(Self.seeded("dead", state: .dead, at: 1000))
            parts.queue.failing = true
            for (method, uri) in [
                (HTTPRequest.Method.get, "/invocations"), (.get, "/invocations/dead"),
                (.post, "/invocations/dead/redrive"),
            ] {
                Self.expectFault(
                    try await call(method, uri), .internalServerError, "QueueUnavailable", parts,
                    logged: Self.internalDetail)
            }
        }
    }

    // MARK: /healthz

    @Test func healthSaysWhetherEveryFunctionServes() async throws {
        try await Self.withRoutes { parts, call in
            parts.queue.seed(Self.seeded("w", state: .queued, at: 1000))
            parts.queue.seed(Self.seeded("r", state: .running, at: 1000))
            let healthy = try await call(.get, "/healthz", credentials: nil)
            #expect(healthy.status == .ok && healthy.json["status"] as? String == "ok")
            let functions = try #require(healthy.json["functions"] as? [[String: Any]])
            #expect(functions.map { $0["name"] as? String } == ["echo", "small"])
            #expect(functions[0]["state"] as? String == "active" && functions[0]["workers"] as? Int == 0)
            #expect(functions[0]["queued"] as? Int == 1 && functions[0]["running"] as? Int == 1)

            parts.dispatcher("small").beginStop()
            let degraded = try await call(.get, "/healthz", credentials: nil)
            #expect(degraded.status == .serviceUnavailable && degraded.json["status"] as? String == "degraded")
            #expect((degraded.json["functions"] as? [[String: Any]])?[1]["state"] as? String == "stopped")
        }
    }
}
