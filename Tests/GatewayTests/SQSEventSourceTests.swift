import EventSources
import Foundation
import InvocationQueue
import Logging
import NIOCore
import SQSClient
import Synchronization
import Testing

@testable import EventSources
@testable import Gateway

/// An in-memory SQS queue with visibility timeouts and receipt handles, as the event source sees SQS.
///
/// Its visibility timeouts run on the real clock, or, `manualClock`, on a clock of its own that moves only
/// when the test calls `advance(by:)`: then a held message becomes visible again only when the test says so,
/// however slowly a loaded machine runs the event source.
final class FakeQueue: SQSEventSourceClient {
    struct Message {
        var id: String
        var body: String
        var handle: String?
        var visibleAt: ContinuousClock.Instant
        var receives = 0
    }

    struct State {
        var messages: [Message] = []
        var deleted: [String] = []
        var extended: [String] = []
        var receiveCalls = 0
        var askedFor: [Int] = []
        var failReceives = false
        var handles = 0
        /// How far `advance(by:)` has moved the manual clock.
        var advanced: Duration = .zero
    }

    let state = Mutex(State())
    /// The manual clock's start; nil: the real clock.
    private let manualStart: ContinuousClock.Instant?

    init(manualClock: Bool = false) {
        manualStart = manualClock ? .now : nil
    }

    /// The queue's time (call under the state's lock).
    private func now(_ s: State) -> ContinuousClock.Instant {
        manualStart.map { $0 + s.advanced } ?? .now
    }

    /// Moves the manual clock on.
    func advance(by duration: Duration) {
        precondition(manualStart != nil, "advance(by:) needs a FakeQueue(manualClock: true)")
        state.withLock { $0.advanced += duration }
    }

    func send(_ body: String) -> String {
        state.withLock { s in
            let id = "m\(s.messages.count + s.deleted.count + 1)"
            s.messages.append(Message(id: id, body: body, visibleAt: now(s)))
            return id
        }
    }

    var deleted: [String] { state.withLock { $0.deleted } }
    var extended: [String] { state.withLock { $0.extended } }
    func extensions(of id: String) -> Int { state.withLock { s in s.extended.filter { $0 == id }.count } }
    func receives(of id: String) -> Int { state.withLock { s in s.messages.first { $0.id == id }?.receives ?? -1 } }

    func receiveMessages(
        queueURL: String, maxMessages: Int, waitTimeSeconds: Int, visibilityTimeout: Int?, systemAttributes: [String]
    ) async throws(SQSError) -> [SQSMessage] {
        let (failing, got) = state.withLock { s -> (Bool, [SQSMessage]) in
            s.receiveCalls += 1
            s.askedFor.append(maxMessages)
            if s.failReceives { return (true, []) }
            var got: [SQSMessage] = []
            let instant = now(s)
            for i in s.messages.indices where s.messages[i].visibleAt <= instant && got.count < maxMessages {
                s.handles += 1
                s.messages[i].handle = "h\(s.handles)"
                s.messages[i].receives += 1
                s.messages[i].visibleAt = instant + .seconds(visibilityTimeout ?? 30)
                got.append(
                    SQSMessage(
                        messageID: s.messages[i].id, receiptHandle: "h\(s.handles)", body: s.messages[i].body,
                        attributes: ["ApproximateReceiveCount": "\(s.messages[i].receives)"]))
            }
            return (false, got)
        }
        if failing { throw SQSError(.transport, "connection refused") }
        if got.isEmpty { try? await Task.sleep(for: .milliseconds(50)) }
        return got
    }

    func deleteMessage(queueURL: String, receiptHandle: String) async throws(SQSError) {
        let found = state.withLock { s -> Bool in
            guard let i = s.messages.firstIndex(where: { $0.handle == receiptHandle }) else { return false }
            s.deleted.append(s.messages.remove(at: i).id)
            return true
        }
        if !found { throw SQSError(.service, "bad handle", serviceCode: "ReceiptHandleIsInvalid", statusCode: 400) }
    }

    func changeMessageVisibility(queueURL: String, receiptHandle: String, visibilityTimeout: Int) async throws(SQSError)
    {
        let found = state.withLock { s -> Bool in
            guard let i = s.messages.firstIndex(where: { $0.handle == receiptHandle }) else { return false }
            s.messages[i].visibleAt = now(s) + .seconds(visibilityTimeout)
            s.extended.append(s.messages[i].id)
            return true
        }
        if !found { throw SQSError(.service, "bad handle", serviceCode: "ReceiptHandleIsInvalid", statusCode: 400) }
    }
}

/// The SQS event source over a fake queue and a live gateway with awslambdaric workers (IntegrationTests/recorder.py).
@Suite("SQS event source, live", .enabled(if: Python.available, Python.skipMessage))
struct SQSEventSourceTests {
    func recorder(_ dir: HandlerDirectory, fail: Bool = false, sleep: Double = 0, concurrency: Int = 2)
        -> FunctionConfiguration
    {
        var function = dir.function(
            "rec", module: "recorder", timeout: .seconds(10), concurrency: concurrency,
            environment: ["RECORD_DIR": dir.path, "FAIL": fail ? "1" : "0", "SLEEP": "\(sleep)"])
        function.retry = RetryPolicy(maxAttempts: 1)
        return function
    }

    func configure(_ c: inout GatewayConfiguration) {
        c.triggers = [TriggerRule(function: "rec", bucket: "ingest", prefix: "videos/")]
    }

    /// Runs a source over `queue` alongside `body`; stops it afterwards.
    func withSource(
        _ gw: LiveGateway, _ queue: FakeQueue, visibilityTimeout: Int = 30, maxInFlight: Int = 10,
        observer: (@Sendable (ByteBuffer) async throws -> Void)? = nil, _ body: (SQSEventSource) async throws -> Void
    ) async throws {
        let configuration = SQSSourceConfiguration(
            queueURL: "http://127.0.0.1:1/000000000000/events", region: "us-east-1",
            credentials: LiveGateway.credentials, waitTimeSeconds: 1, visibilityTimeout: visibilityTimeout,
            maxInFlight: maxInFlight)
        let source = SQSEventSource(
            configuration: configuration, client: queue, sink: gw.service.eventSink.observing(observer),
            logger: LiveGateway.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await source.run() }
            defer { group.cancelAll() }
            try await body(source)
        }
    }

    func waitUntil(_ what: String, timeout: Duration = .seconds(60), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if condition() { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("timed out waiting for \(what)")
        throw CancellationError()
    }

    static func event(_ key: String, etag: String = "e1") -> String {
        #"{"Records":["# + TriggerTests.awsRecord(bucket: "ingest", key: key, etag: etag, sequencer: "00AA") + "]}"
    }

    /// Held messages wait for their invocations, which wait for the test (`release()`), and their visibility
    /// runs on the fake queue's manual clock: what is checked follows from events, not from how long anything
    /// takes. (It used to rely on a 5 s function outlasting a 4 s visibility timeout on the real clock: on a
    /// loaded machine the source's extension — due at half the timeout, but made only at its next check of the
    /// invocations' state, up to a second later — came after the fake had made the message visible again; the
    /// source received it anew, the old receipt handle was refused, and no extension of it was ever recorded.)
    @Test func messagesAreDeletedOnlyOnceTheirInvocationsHaveRun() async throws {
        let dir = try HandlerDirectory()
        let gate = try dir.gatedRecorder()
        var function = dir.function(
            "rec", module: "gated", timeout: .seconds(120), concurrency: 2, environment: ["RECORD_DIR": dir.path])
        function.retry = RetryPolicy(maxAttempts: 1)
        try await LiveGateway.run([function], configure: configure) { gw in
            let queue = FakeQueue(manualClock: true)
            try await withSource(gw, queue, visibilityTimeout: 4) { _ in
                let plain = queue.send(Self.event("videos/a.mp4"))
                let envelope = String(
                    decoding: try JSONSerialization.data(withJSONObject: [
                        "Type": "Notification", "MessageId": "n1", "TopicArn": "arn:aws:sns:us-east-1:0:t",
                        "Message": Self.event("videos/b.mp4"),
                    ]), as: UTF8.self)
                let sns = queue.send(envelope)
                let test = queue.send(#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"ingest"}"#)
                let garbage = queue.send("not an event")
                let unmatched = queue.send(
                    #"{"Records":["# + TriggerTests.awsRecord(bucket: "other", key: "x", etag: "e", sequencer: "1")
                        + "]}")
                try await waitUntil("the test event and the unmatched event deleted") {
                    Set(queue.deleted).isSuperset(of: [test, unmatched])
                }
                // Held while their invocations run: extended at half the visibility timeout (the source's clock).
                try await waitUntil("both held messages extended") {
                    queue.extensions(of: plain) >= 1 && queue.extensions(of: sns) >= 1
                }
                // 3 s on the queue's clock, then, once both are extended again, 3 s more: past the 4 s of their
                // receipt, not past their last extension. The garbage, never extended, comes back.
                queue.advance(by: .seconds(3))
                let extensions = (plain: queue.extensions(of: plain), sns: queue.extensions(of: sns))
                try await waitUntil("both held messages extended again") {
                    queue.extensions(of: plain) > extensions.plain && queue.extensions(of: sns) > extensions.sns
                }
                queue.advance(by: .seconds(3))
                try await waitUntil("the garbage received again after its visibility timeout") {
                    queue.receives(of: garbage) >= 2
                }
                #expect(queue.receives(of: plain) == 1 && queue.receives(of: sns) == 1)
                #expect(!queue.deleted.contains(plain) && !queue.deleted.contains(sns))  // still running
                #expect(dir.runs().isEmpty)
                gate.release()
                try await waitUntil("both events deleted") { Set(queue.deleted).isSuperset(of: [plain, sns]) }
                #expect(dir.effects().count == 2)
                #expect(!queue.deleted.contains(garbage))
                #expect(dir.runs().count == 2)
            }
        }
    }

    /// The observer (the product API's webhooks) sees every event body once its invocations are committed; one
    /// that fails leaves the message to come back, and the next receive is observed again.
    @Test func theEventObserverSeesEachBodyAndItsFailureReleasesTheMessage() async throws {
        let dir = try HandlerDirectory()
        let seen = Mutex<[String]>([])
        let failures = Mutex(1)
        let observer: @Sendable (ByteBuffer) async throws -> Void = { body in
            seen.withLock { $0.append(String(buffer: body)) }
            if failures.withLock({ failures in
                defer { failures -= 1 }
                return failures > 0
            }) {
                throw CancellationError()
            }
        }
        try await LiveGateway.run([recorder(dir)], configure: configure) { gw in
            let queue = FakeQueue()
            try await withSource(gw, queue, visibilityTimeout: 1, observer: observer) { _ in
                let message = queue.send(Self.event("videos/observed.mp4"))
                try await waitUntil("the message deleted after a second, observed receive") {
                    queue.deleted.contains(message)
                }
                // Observed on each of its (at least two) receives: the failed first left the message in the queue.
                #expect(
                    seen.withLock { $0 }.count >= 2
                        && seen.withLock { $0 }.allSatisfy { $0.contains("videos/observed.mp4") })
                #expect(dir.runs().count == 1)  // the invocation itself ran once: the queue deduped the redelivery
            }
        }
    }

    @Test func aDeadLetteredInvocationReleasesItsMessageAndADuplicateWaitsForTheFirst() async throws {
        let dir = try HandlerDirectory()
        try await LiveGateway.run([recorder(dir, fail: true)], configure: configure) { gw in
            let queue = FakeQueue()
            try await withSource(gw, queue) { _ in
                let first = queue.send(Self.event("videos/dead.mp4"))
                try await waitUntil("the failed event's message deleted") { queue.deleted.contains(first) }
                let dead = try await gw.service.invocationQueue.list(InvocationFilter(states: [.dead]))
                #expect(dead.count == 1)
                // The same object version again: deduplicated against the dead letter, deleted, not run again.
                let again = queue.send(Self.event("videos/dead.mp4"))
                try await waitUntil("the duplicate's message deleted") { queue.deleted.contains(again) }
                #expect(dir.runs().count == 1)
            }
        }
    }

    @Test func heldMessagesAreBoundedByMaxInFlight() async throws {
        let dir = try HandlerDirectory()
        try await LiveGateway.run([recorder(dir, sleep: 0.5, concurrency: 4)], configure: configure) { gw in
            let queue = FakeQueue()
            let ids = (0..<6).map { queue.send(Self.event("videos/\($0).mp4", etag: "e\($0)")) }
            try await withSource(gw, queue, maxInFlight: 2) { source in
                var most = 0
                let deadline = ContinuousClock.now + .seconds(120)
                while Set(queue.deleted) != Set(ids), ContinuousClock.now < deadline {
                    most = max(most, source.heldCount)
                    try await Task.sleep(for: .milliseconds(10))
                }
                #expect(Set(queue.deleted) == Set(ids))
                #expect(most <= 2 && most >= 1)
                #expect(queue.state.withLock { $0.askedFor.allSatisfy { (1...2).contains($0) } })
            }
        }
    }

    @Test func receiveErrorsBackOffInsteadOfSpinning() async throws {
        let dir = try HandlerDirectory()
        try await LiveGateway.run([recorder(dir)], configure: configure) { gw in
            let queue = FakeQueue()
            queue.state.withLock { $0.failReceives = true }
            try await withSource(gw, queue) { _ in
                func calls() -> Int { queue.state.withLock { $0.receiveCalls } }
                // Attempts at 0, after 0.5-1 s, after a further 1-2 s: it tries again, but never more than 4
                // times in the 2.5 s after the first attempt (a loaded machine may start the source late, so
                // the window opens at the first attempt, not at the start).
                try await waitUntil("a first receive", timeout: .seconds(60)) { calls() >= 1 }
                let first = ContinuousClock.now
                try await waitUntil("a retry after the failure", timeout: .seconds(60)) { calls() >= 2 }
                let left = .milliseconds(2500) - (ContinuousClock.now - first)
                if left > .zero { try await Task.sleep(for: left) }
                #expect(calls() <= 4, "\(calls()) receive calls")
                // Back up: the next poll (within 4 s more) takes the message.
                queue.state.withLock { $0.failReceives = false }
                let id = queue.send(#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#)
                try await waitUntil("received after recovery", timeout: .seconds(60)) { queue.deleted.contains(id) }
            }
        }
    }
}
