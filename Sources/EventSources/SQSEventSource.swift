import AsyncHTTPClient
import CoreMetrics
import Foundation
import Gateway
import InvocationQueue
import Logging
import NIOCore
import Prometheus
import SQSClient
import Synchronization

/// The SQS calls the event source makes (`SQSClient`; a fake in tests).
protocol SQSEventSourceClient: Sendable {
    func receiveMessages(
        queueURL: String, maxMessages: Int, waitTimeSeconds: Int, visibilityTimeout: Int?, systemAttributes: [String]
    ) async throws(SQSError) -> [SQSMessage]
    func deleteMessage(queueURL: String, receiptHandle: String) async throws(SQSError)
    func changeMessageVisibility(queueURL: String, receiptHandle: String, visibilityTimeout: Int) async throws(SQSError)
}

extension SQSClient: SQSEventSourceClient {}

/// Polls one SQS queue for object-store events, like Lambda's SQS event source mapping: long-polls
/// (ReceiveMessage), turns each message — an S3 event notification, bare or in an SNS envelope — into
/// invocations with the gateway's `EventSink` (the webhook's trigger rules and dedupe keys), commits them to the
/// durable queue, keeps the message invisible (ChangeMessageVisibility every half visibility timeout) until each of its
/// invocations has succeeded or been dead-lettered, then deletes it.
///
/// - `s3:TestEvent` messages are deleted without invoking anything.
/// - A message that is not an S3 event is logged and left alone: it becomes visible again after the visibility
///   timeout, and the queue's redrive policy moves it to its dead-letter queue after maxReceiveCount receipts.
/// - At most `maxInFlight` messages are held at a time. SQS errors (endpoint down, queue missing) are logged and
///   polling backs off exponentially (1 s doubling to 30 s, with jitter); nothing here stops the gateway.
/// - `run()` returns when its task is cancelled (graceful shutdown): messages still held are not deleted and
///   come back after their visibility timeout; the next receipt finds their invocations by dedupe key and
///   deletes the message once they have finished.
final class SQSEventSource: Sendable {
    let configuration: SQSSourceConfiguration
    /// nil: an `SQSClient` over an `HTTPClient` of its own, made and shut down by `run()`.
    private let injectedClient: (any SQSEventSourceClient)?
    /// The gateway: intake, queue, and the event observer, which sees every event body whose invocations are
    /// committed before the message is let go (as `POST /events`'s does): a failure releases the message, which
    /// comes back.
    let sink: EventSink
    let logger: Logger
    private let inFlight = Mutex(0)
    /// A message let go frees a slot (the newest signal is kept until the polling loop waits for one).
    private let slotFreed: (stream: AsyncStream<Void>, continuation: AsyncStream<Void>.Continuation)
    private let counters: Counters

    /// Longest wait between two polls after errors.
    static let maxBackoff: Duration = .seconds(30)

    private struct Counters: Sendable {
        let received, deleted, testEvents, invalid, released: CoreMetrics.Counter
        let errors: CoreMetrics.Counter
        let held: CoreMetrics.Gauge
    }

    init(
        configuration: SQSSourceConfiguration, client: (any SQSEventSourceClient)? = nil, sink: EventSink,
        logger: Logger
    ) {
        self.configuration = configuration
        self.injectedClient = client
        self.sink = sink
        slotFreed = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
        var logger = logger
        logger[metadataKey: "cinescale.sqs.queue"] = .string(configuration.queueName)
        self.logger = logger
        let factory = PrometheusMetricsFactory(registry: sink.registry)
        func messages(_ outcome: String) -> CoreMetrics.Counter {
            CoreMetrics.Counter(
                label: "cinescale_gateway_sqs_messages_total",
                dimensions: [("queue", configuration.queueName), ("outcome", outcome)], factory: factory)
        }
        counters = Counters(
            received: messages("received"), deleted: messages("deleted"), testEvents: messages("test_event"),
            invalid: messages("invalid"), released: messages("released"),
            errors: CoreMetrics.Counter(
                label: "cinescale_gateway_sqs_errors_total", dimensions: [("queue", configuration.queueName)],
                factory: factory),
            held: CoreMetrics.Gauge(
                label: "cinescale_gateway_sqs_messages_in_flight", dimensions: [("queue", configuration.queueName)],
                factory: factory))
    }

    /// Messages held now.
    var heldCount: Int { inFlight.withLock { $0 } }

    // MARK: Polling

    /// Polls until cancelled; each message is handled in a child task.
    func run() async {
        if let injectedClient { return await poll(injectedClient) }
        // Its own connection pool, failing a request at once when the endpoint refuses connections (the shared
        // client keeps retrying the connection until the request's deadline, 35 s for a long poll).
        var http = HTTPClient.Configuration()
        http.connectionPool.retryConnectionEstablishment = false
        http.timeout.connect = .seconds(5)
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
        let client = SQSClient(
            configuration: SQSClientConfiguration(
                endpoint: configuration.endpoint, region: configuration.region, credentials: configuration.credentials),
            httpClient: httpClient, logger: logger)
        await poll(client)
        try? await httpClient.shutdown()
    }

    private func poll(_ client: any SQSEventSourceClient) async {
        logger.info(
            "polling SQS queue",
            metadata: [
                "cinescale.sqs.endpoint": .string(configuration.endpoint.absoluteString),
                "cinescale.sqs.max_in_flight": .stringConvertible(configuration.maxInFlight),
            ])
        var slotsFreed = slotFreed.stream.makeAsyncIterator()
        await withDiscardingTaskGroup { group in
            var failures = 0
            while !Task.isCancelled {
                let free = configuration.maxInFlight - heldCount
                guard free > 0 else {
                    // Until a held message is let go (nil: cancelled).
                    _ = await slotsFreed.next()
                    continue
                }
                let messages: [SQSMessage]
                // The messages' visibility timeout starts when SQS answers; this instant is before that, so a
                // heartbeat counted from it extends early rather than late, however long the handler takes to start.
                let receivedAt = ContinuousClock.now
                do throws(SQSError) {
                    messages = try await client.receiveMessages(
                        queueURL: configuration.queueURL, maxMessages: min(10, free),
                        waitTimeSeconds: configuration.waitTimeSeconds,
                        visibilityTimeout: configuration.visibilityTimeout,
                        systemAttributes: ["ApproximateReceiveCount"])
                } catch {
                    if Task.isCancelled { break }
                    failures += 1
                    counters.errors.increment()
                    let delay = Self.backoff(afterFailures: failures)
                    logger.warning(
                        "could not receive from the SQS queue; retrying",
                        metadata: [
                            "cinescale.error": .string(error.description),
                            "cinescale.sqs.retry_in_ms": .stringConvertible(Int(delay.seconds * 1000)),
                        ])
                    guard (try? await Task.sleep(for: delay)) != nil else { break }
                    continue
                }
                if failures > 0 {
                    logger.info(
                        "SQS queue reachable again", metadata: ["cinescale.sqs.failures": .stringConvertible(failures)])
                    failures = 0
                }
                if !messages.isEmpty {
                    inFlight.withLock { $0 += messages.count }
                    counters.held.record(heldCount)
                    counters.received.increment(by: Int64(messages.count))
                }
                for message in messages {
                    group.addTask {
                        await self.handle(message, receivedAt: receivedAt, client)
                        self.inFlight.withLock { $0 -= 1 }
                        self.counters.held.record(self.heldCount)
                        self.slotFreed.continuation.yield()
                    }
                }
                // Short polling of an empty queue must not spin.
                if messages.isEmpty, configuration.waitTimeSeconds == 0 {
                    guard (try? await Task.sleep(for: .seconds(1))) != nil else { break }
                }
            }
            group.cancelAll()
        }
        logger.info("stopped polling SQS queue")
    }

    /// 1 s doubling per consecutive failure up to `maxBackoff`, each drawn from [d/2, d].
    static func backoff(afterFailures failures: Int, random: Double = Double.random(in: 0...1)) -> Duration {
        let base = min(maxBackoff.seconds, pow(2, Double(min(max(failures - 1, 0), 16))))
        return .milliseconds(Int64((base / 2 + base / 2 * min(max(random, 0), 1)) * 1000))
    }

    // MARK: One message

    /// What a message body holds.
    enum Body: Equatable {
        /// An S3 event notification (unwrapped from its SNS envelope if it came in one).
        case event(ByteBuffer)
        /// AWS's `s3:TestEvent`, sent when a notification configuration is set.
        case testEvent
        /// Anything else: why it was not taken.
        case invalid(String)
    }

    /// Classifies a message body: unwraps an SNS notification (`{"Type":"Notification","Message":"<json>"}`),
    /// recognises `s3:TestEvent`. Whether an event's records can be read is left to `EventIntake`.
    static func classify(_ text: String) -> Body {
        var body = Data(text.utf8)
        guard var object = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else {
            return .invalid("the body is not a JSON object")
        }
        if object["Type"] as? String == "Notification", object["TopicArn"] != nil || object["MessageId"] != nil {
            guard let message = object["Message"] as? String else {
                return .invalid("an SNS notification without a 'Message' string")
            }
            body = Data(message.utf8)
            guard let inner = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] else {
                return .invalid("the SNS notification's Message is not a JSON object")
            }
            object = inner
        }
        if object["Event"] as? String == "s3:TestEvent", object["Records"] == nil { return .testEvent }
        return .event(ByteBuffer(data: body))
    }

    private func handle(
        _ message: SQSMessage, receivedAt: ContinuousClock.Instant, _ client: any SQSEventSourceClient
    ) async {
        var logger = self.logger
        logger[metadataKey: "cinescale.sqs.message.id"] = .string(message.messageID)
        if let count = message.approximateReceiveCount {
            logger[metadataKey: "cinescale.sqs.receive_count"] = .stringConvertible(count)
        }
        let body: ByteBuffer
        switch Self.classify(message.body) {
        case .testEvent:
            logger.debug("skipping s3:TestEvent")
            counters.testEvents.increment()
            await delete(message, client, logger: logger)
            return
        case .invalid(let reason):
            reject(message, reason, logger: logger)
            return
        case .event(let buffer):
            body = buffer
        }
        let batch: EventIntake.Batch
        do throws(GatewayError) {
            batch = try sink.invocations(from: body)
        } catch {
            reject(message, error.message, logger: logger)
            return
        }
        var heartbeat = Heartbeat(visibilityTimeout: configuration.visibilityTimeout, extendedAt: receivedAt)
        var ids: [String] = []
        if !batch.invocations.isEmpty {
            // Admission: past the queue's bound, hold the message (extending its visibility) until there is room,
            // rather than let it come back and count towards its maxReceiveCount.
            let admitted = await sink.admitWhenRoom(
                batch.invocations.count, logger: logger, waiting: "holding the SQS message",
                meanwhile: { await extendIfDue(message, &heartbeat, client, logger: logger) })
            guard admitted else { return release(message, "stopped or lost while waiting for room", logger: logger) }
            let results: [EnqueueResult]
            do {
                results = try await sink.enqueue(batch.invocations)
            } catch {
                logger.error(
                    "could not commit the SQS message's events to the queue; it will be received again",
                    metadata: [
                        "cinescale.error": "\(error)"
                    ])
                return release(message, "not committed", logger: logger)
            }
            ids = results.map { result in
                switch result {
                case .inserted(let invocation): invocation.id
                case .duplicate(let existing): existing
                }
            }
            logger.debug(
                "SQS message queued",
                metadata: [
                    "cinescale.records": .stringConvertible(batch.records),
                    "cinescale.invocations": .string(ids.joined(separator: ",")),
                ])
        }
        if sink.hasObserver {
            do {
                try await sink.observe(body)
            } catch {
                logger.error(
                    "an event observer failed; the SQS message will be received again",
                    metadata: [
                        "cinescale.error": "\(error)"
                    ])
                return release(message, "not observed", logger: logger)
            }
        }
        // Until every invocation has finished: check their state, extend the visibility when due.
        var pending = ids
        var wait: Duration = .milliseconds(100)
        let longestWait = min(Duration.seconds(1), .milliseconds(250 * Int64(configuration.visibilityTimeout)))
        while !pending.isEmpty {
            guard (try? await Task.sleep(for: wait)) != nil else {
                return release(message, "stopped before its invocations finished", logger: logger)
            }
            wait = min(wait * 2, longestWait)
            var still: [String] = []
            for (index, id) in pending.enumerated() {
                do {
                    // Gone (pruned after retention) counts as finished.
                    if let invocation = try await sink.invocation(id: id),
                        invocation.state != .succeeded, invocation.state != .dead
                    {
                        still.append(id)
                    }
                } catch {
                    logger.warning(
                        "could not read an invocation's state",
                        metadata: [
                            "cinescale.request.id": .string(id), "cinescale.error": "\(error)",
                        ])
                    still.append(contentsOf: pending[index...])
                    break
                }
            }
            pending = still
            if !pending.isEmpty, !(await extendIfDue(message, &heartbeat, client, logger: logger)) {
                return release(message, "lost before its invocations finished", logger: logger)
            }
        }
        await delete(message, client, logger: logger)
    }

    /// When the message was last made invisible, by receipt or ChangeMessageVisibility.
    private struct Heartbeat {
        var visibilityTimeout: Int
        var extendedAt: ContinuousClock.Instant
        var due: Bool { ContinuousClock.now - extendedAt >= .milliseconds(500 * Int64(visibilityTimeout)) }
    }

    /// Extends the message's visibility when half of it has passed. False once the receipt is no longer valid
    /// (the message became visible and was received again, or was deleted).
    private func extendIfDue(
        _ message: SQSMessage, _ heartbeat: inout Heartbeat, _ client: any SQSEventSourceClient, logger: Logger
    ) async -> Bool {
        guard heartbeat.due else { return true }
        let now = ContinuousClock.now
        do throws(SQSError) {
            try await client.changeMessageVisibility(
                queueURL: configuration.queueURL, receiptHandle: message.receiptHandle,
                visibilityTimeout: configuration.visibilityTimeout)
            heartbeat.extendedAt = now
            return true
        } catch {
            if Task.isCancelled { return false }
            counters.errors.increment()
            if error.isReceiptHandleInvalid {
                logger.notice(
                    "the SQS message is no longer held (visibility timeout passed)",
                    metadata: [
                        "cinescale.error": .string(error.description)
                    ])
                return false
            }
            logger.warning(
                "could not extend the SQS message's visibility",
                metadata: ["cinescale.error": .string(error.description)])
            return true
        }
    }

    private func delete(_ message: SQSMessage, _ client: any SQSEventSourceClient, logger: Logger) async {
        do throws(SQSError) {
            try await client.deleteMessage(queueURL: configuration.queueURL, receiptHandle: message.receiptHandle)
            counters.deleted.increment()
        } catch {
            counters.errors.increment()
            // It comes back; its invocations are found by dedupe key and it is deleted then.
            logger.warning(
                "could not delete the SQS message", metadata: ["cinescale.error": .string(error.description)])
        }
    }

    private func reject(_ message: SQSMessage, _ reason: String, logger: Logger) {
        counters.invalid.increment()
        logger.warning(
            "SQS message is not an S3 event notification; leaving it to the queue's redrive policy",
            metadata: [
                "cinescale.error": .string(reason),
                "cinescale.sqs.body": .string(String(message.body.prefix(256))),
            ])
    }

    private func release(_ message: SQSMessage, _ reason: String, logger: Logger) {
        counters.released.increment()
        logger.debug("SQS message released", metadata: ["cinescale.reason": .string(reason)])
    }
}
