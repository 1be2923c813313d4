import Foundation
import FunctionRuntime
import InvocationQueue
import NIOCore

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
        let data = Data(body.readableBytesView)
        guard let top = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw GatewayError(.invalidRequestContent, "The body is not a JSON object.")
        }
        guard let records = top["Records"] as? [Any] else {
            if top["Event"] as? String == "s3:TestEvent" { return Batch(records: 0, invocations: []) }
            throw GatewayError(
                .invalidRequestContent, "The body is not an S3 event notification (no 'Records' array).")
        }
        var invocations: [QueuedInvocation] = []
        let decoder = JSONDecoder()
        for (index, element) in records.enumerated() {
            guard let object = element as? [String: Any],
                let raw = try? JSONSerialization.data(withJSONObject: object, options: [.withoutEscapingSlashes])
            else {
                throw GatewayError(.invalidRequestContent, "Records[\(index)] is not a JSON object.")
            }
            let record: S3Event.Record
            do {
                record = try decoder.decode(S3Event.Record.self, from: raw)
            } catch {
                throw GatewayError(
                    .invalidRequestContent, "Records[\(index)] is not an S3 event record: \(Self.describe(error))")
            }
            let bucket = record.s3.bucket.name
            let key = record.s3.object.key
            var payload = Data(#"{"Records":["#.utf8)
            payload.append(raw)
            payload.append(contentsOf: Array("]}".utf8))
            for rule in rules where rule.matches(bucket: bucket, eventName: record.eventName, key: key) {
                let policy = policies[rule.function] ?? RetryPolicy()
                let object = record.s3.object
                let version = [object.eTag ?? "", object.sequencer ?? "", object.versionID ?? ""]
                let identity = version.allSatisfy(\.isEmpty)
                    ? record.eventTime.timeIntervalSince1970.description : version.joined(separator: "/")
                invocations.append(
                    QueuedInvocation(
                        id: LambdaFormat.requestID(), function: rule.function, source: "s3",
                        dedupeKey: [rule.function, bucket, key, record.eventName, identity].joined(separator: "\n"),
                        payload: payload, maxAttempts: policy.maxAttempts, createdAt: now,
                        expiresAt: now.addingTimeInterval(policy.maxEventAge.seconds), nextAttemptAt: now))
            }
        }
        return Batch(records: records.count, invocations: invocations)
    }

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
