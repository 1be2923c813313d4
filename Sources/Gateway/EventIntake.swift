import Foundation
import InvocationQueue
import NIOCore
import S3Events
import S3Wire

/// Turns an S3 event notification (MinIO's webhook body, AWS's S3 event 2.1, Ceph RGW's 2.2 — a `Records`
/// array of one or more records) into invocations: one per record and matching trigger rule. Each function
/// receives `{"Records":[<the record as sent>]}`, the shape Lambda hands an S3-triggered function.
struct EventIntake: Sendable {
    let rules: [TriggerRule]
    let policies: [String: RetryPolicy]

    init(configuration: GatewayConfiguration) {
        rules = configuration.triggers
        var policies: [String: RetryPolicy] = [:]
        for function in configuration.functions { policies[function.name] = function.retry }
        self.policies = policies
    }

    struct Batch: Sendable {
        /// Records in the notification (0 for AWS's `s3:TestEvent`).
        var records: Int
        var invocations: [QueuedInvocation]
    }

    func invocations(from body: ByteBuffer, now: Date) throws(GatewayError) -> Batch {
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
