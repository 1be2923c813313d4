import Foundation
import InvocationQueue
import Logging
import NIOCore
import Prometheus
import S3Events
import S3Wire
import Synchronization

/// Turns an S3 event notification (MinIO's webhook body, AWS's S3 event 2.1, Ceph RGW's 2.2 — a `Records`
/// array of one or more records) into invocations: one per record and matching trigger rule. Each function
/// receives `{"Records":[<the record as sent>]}`, the shape Lambda hands an S3-triggered function.
///
/// The webhook (`POST /events`, on the gateway's public server) and every event source (target EventSources,
/// through `EventSink`) go through it, so that a record has the same invocations and dedupe keys however it came.
public struct EventIntake: Sendable {
    let rules: [TriggerRule]
    let policies: [String: RetryPolicy]

    public init(configuration: GatewayConfiguration) {
        rules = configuration.triggers
        var policies: [String: RetryPolicy] = [:]
        for function in configuration.functions { policies[function.name] = function.retry }
        self.policies = policies
    }

    public struct Batch: Sendable {
        /// Records in the notification (0 for AWS's `s3:TestEvent`).
        public var records: Int
        public var invocations: [QueuedInvocation]
    }

    public func invocations(from body: ByteBuffer, now: Date) throws(GatewayError) -> Batch {
        let bytes = Array(body.readableBytesView)
        let event: S3Event.Summaries
        do {
            event = try JSONDecoder().decode(S3Event.Summaries.self, from: Data(bytes))
        } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
            throw GatewayError(.invalidRequestContent, "The body is not a JSON object.")
        } catch {
            throw GatewayError(
                .invalidRequestContent, "The body is not an S3 event notification: \(Self.describe(error))")
        }
        // The records exactly as sent, to hand on without re-serialising them.
        guard let raw = JSONText.arrayElements(ofTopLevelKey: "Records", in: bytes) else {
            if event.isTestEvent { return Batch(records: 0, invocations: []) }
            throw GatewayError(
                .invalidRequestContent, "The body is not an S3 event notification (no 'Records' array).")
        }
        guard raw.count == event.records.count else {
            throw GatewayError(.invalidRequestContent, "The 'Records' array could not be read.")
        }
        var invocations: [QueuedInvocation] = []
        for (record, range) in zip(event.records, raw) {
            let bucket = record.bucket
            let key = record.key
            var payload: Data?
            for rule in rules where rule.matches(bucket: bucket, eventName: record.eventName, key: key) {
                if payload == nil {
                    var data = Data(capacity: range.count + 14)
                    data.append(contentsOf: Self.payloadPrefix)
                    data.append(contentsOf: bytes[range])
                    data.append(contentsOf: Self.payloadSuffix)
                    payload = data
                }
                let policy = policies[rule.function] ?? RetryPolicy()
                let version = [record.eTag ?? "", record.sequencer ?? "", record.versionID ?? ""]
                let identity = version.allSatisfy(\.isEmpty) ? record.eventTime : version.joined(separator: "/")
                invocations.append(
                    QueuedInvocation(
                        id: LambdaFormat.requestID(), function: rule.function, source: "s3",
                        dedupeKey: [rule.function, bucket, key, record.eventName, identity].joined(separator: "\n"),
                        payload: payload!, maxAttempts: policy.maxAttempts, createdAt: now,
                        expiresAt: now.addingTimeInterval(policy.maxEventAge.seconds), nextAttemptAt: now))
            }
        }
        return Batch(records: event.records.count, invocations: invocations)
    }

    private static let payloadPrefix = Array(#"{"Records":["#.utf8)
    private static let payloadSuffix = Array("]}".utf8)

    private static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let key, let context):
            let path = (context.codingPath + [key]).map(\.stringValue).joined(separator: ".")
            return "missing '\(path)'"
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
            DecodingError.dataCorrupted(let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return "invalid '\(path)': \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }
}

/// What an event source beside the gateway core (target EventSources: SQS queues, polled buckets) hands its
/// events to, from `GatewayService.eventSink`: the webhook's intake, the durable queue's admission and commit,
/// the event observer (the product API's webhooks), the gateway's metrics registry. A source holds its events
/// (an SQS message kept invisible, a bucket's objects) until they are committed here.
public struct EventSink: Sendable {
    let intake: EventIntake
    let scheduler: AsyncScheduler
    let metrics: GatewayMetrics
    var observer: (@Sendable (ByteBuffer) async throws -> Void)?
    let recovered: AsyncValue<Bool>
    let pruneHolds: PruneHolds

    /// Where sources register their own metrics (served at the gateway's `/metrics`).
    public var registry: PrometheusCollectorRegistry { metrics.registry }

    /// Returns once the gateway has scheduled its queue's pending invocations (nothing new is committed
    /// before); throws if the gateway failed to start or stopped first.
    public func ready() async throws(GatewayError) {
        _ = try await recovered.get()
    }

    /// The invocations a notification body makes (`EventIntake`), counted as a notification when it is one.
    public func invocations(from body: ByteBuffer, now: Date = Date()) throws(GatewayError) -> EventIntake.Batch {
        let batch = try intake.invocations(from: body, now: now)
        metrics.eventNotifications.increment()
        metrics.eventRecords.increment(by: Int64(batch.records))
        return batch
    }

    /// Waits until the queue lets `count` invocations in, trying once a second and logging the first refusal
    /// (`waiting` says what is held meanwhile); `meanwhile` runs after each wait, and returning false gives up.
    /// False when the task is cancelled or `meanwhile` gave up.
    public func admitWhenRoom(
        _ count: Int, logger: Logger, waiting: String, meanwhile: () async -> Bool = { true }
    ) async -> Bool {
        await scheduler.admitWhenRoom(count, logger: logger, waiting: waiting, meanwhile: meanwhile)
    }

    /// Durably queues `invocations` (deduplicated by their keys) and schedules the new ones.
    public func enqueue(_ invocations: [QueuedInvocation]) async throws -> [EnqueueResult] {
        try await scheduler.enqueue(invocations)
    }

    /// An invocation as the queue has it now; nil once pruned.
    public func invocation(id: String) async throws -> QueuedInvocation? {
        try await scheduler.queue.get(id: id)
    }

    /// Hands a committed body to the event observer, if the gateway has one.
    public func observe(_ body: ByteBuffer) async throws {
        try await observer?(body)
    }

    /// Whether `observe(_:)` does anything.
    public var hasObserver: Bool { observer != nil }

    /// This sink with `observer` in place of the gateway's event observer (nil: none).
    public func observing(_ observer: (@Sendable (ByteBuffer) async throws -> Void)?) -> EventSink {
        var sink = self
        sink.observer = observer
        return sink
    }

    /// Delays the gateway's first pruning of finished invocations until `ready` returns, or at most until the
    /// deadline it is given (an hour after the prune part starts): a source that may emit records again after a
    /// crash (a poll source before its first scan) needs their invocations, and their dedupe keys, kept.
    public func holdPruning(until ready: @escaping @Sendable (ContinuousClock.Instant) async -> Void) {
        pruneHolds.add(ready)
    }
}

/// The `EventSink.holdPruning` waits, run by the gateway's prune part before its first pass.
final class PruneHolds: Sendable {
    private let holds = Mutex<[@Sendable (ContinuousClock.Instant) async -> Void]>([])

    func add(_ hold: @escaping @Sendable (ContinuousClock.Instant) async -> Void) {
        holds.withLock { $0.append(hold) }
    }

    func wait(until deadline: ContinuousClock.Instant) async {
        for hold in holds.withLock({ $0 }) { await hold(deadline) }
    }
}
