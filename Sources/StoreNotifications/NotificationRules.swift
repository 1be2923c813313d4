import Foundation
import S3Wire

/// Why a notification configuration or an event was refused, with the S3 error code to answer.
public struct NotificationError: Error, Sendable, CustomStringConvertible {
    /// S3 error code: `InvalidArgument`, `MalformedXML`, `SlowDown`.
    public var code: String
    /// HTTP status to answer with.
    public var status: Int
    public var message: String

    public init(_ code: String, status: Int = 400, _ message: String) {
        self.code = code
        self.status = status
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// One `QueueConfiguration` of a bucket's notification configuration: which events, for which keys, go to
/// which webhook target (`arn:minio:sqs:<region>:<target id>:webhook`, as MinIO names them).
public struct QueueRule: Sendable, Hashable {
    public var id: String
    public var arn: String
    /// `s3:ObjectCreated:*`, `s3:ObjectCreated:Put`, `s3:ObjectRemoved:Delete`...
    public var events: [String]
    public var prefix: String
    public var suffix: String

    public init(id: String, arn: String, events: [String], prefix: String = "", suffix: String = "") {
        self.id = id
        self.arn = arn
        self.events = events
        self.prefix = prefix
        self.suffix = suffix
    }

    /// The webhook target id named by the ARN.
    public var targetID: String? { Self.targetID(arn: arn) }

    static func targetID(arn: String) -> String? {
        let parts = arn.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6, parts[0] == "arn", parts[1] == "minio", parts[2] == "sqs", parts[5] == "webhook",
            !parts[4].isEmpty
        else { return nil }
        return String(parts[4])
    }

    /// Whether an event (`s3:ObjectCreated:Put`) on `key` matches.
    public func matches(eventName: String, key: String) -> Bool {
        guard key.hasPrefix(prefix), key.hasSuffix(suffix) else { return false }
        return events.contains { pattern in
            pattern.hasSuffix("*") ? eventName.hasPrefix(pattern.dropLast()) : eventName == pattern
        }
    }

    /// Event names the store emits.
    public static let supportedEvents: Set<String> = [
        "s3:ObjectCreated:*", "s3:ObjectCreated:Put", "s3:ObjectCreated:Post", "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload", "s3:ObjectRemoved:*", "s3:ObjectRemoved:Delete",
    ]
}

/// A bucket's notification configuration (`PutBucketNotificationConfiguration`). Only queue (webhook)
/// destinations exist here; an empty configuration removes every rule.
public struct BucketNotificationConfiguration: Sendable, Hashable {
    public var queues: [QueueRule]

    public init(queues: [QueueRule] = []) { self.queues = queues }

    /// Parses the request body; `targets` are the ids of the configured webhook targets.
    public static func parse(_ data: Data, targets: Set<String>) throws(NotificationError)
        -> BucketNotificationConfiguration
    {
        let root: S3XMLElement
        do {
            root = try S3XMLElement.parse(data)
        } catch {
            throw NotificationError(
                "MalformedXML",
                "The XML you provided was not well-formed or did not validate against our published schema.")
        }
        guard root.name == "NotificationConfiguration" else {
            throw NotificationError(
                "MalformedXML", "Expected a NotificationConfiguration document, got <\(root.name)>.")
        }
        if root.child("TopicConfiguration") != nil || root.child("CloudFunctionConfiguration") != nil
            || root.child("LambdaFunctionConfiguration") != nil
        {
            throw NotificationError(
                "InvalidArgument",
                "A specified destination ARN does not exist or is not well-formed. Only QueueConfiguration with a webhook ARN (arn:minio:sqs::<id>:webhook) is supported."
            )
        }
        var rules: [QueueRule] = []
        var ids: Set<String> = []
        for (index, element) in root.children("QueueConfiguration").enumerated() {
            let arn = element.string("Queue") ?? ""
            guard let target = QueueRule.targetID(arn: arn), targets.contains(target) else {
                throw NotificationError(
                    "InvalidArgument",
                    "A specified destination ARN does not exist or is not well-formed. Verify the destination ARN. (\(arn.isEmpty ? "no <Queue>" : arn); configured: \(targets.sorted().map { "arn:minio:sqs::\($0):webhook" }.joined(separator: ", ")))"
                )
            }
            let events = element.children("Event").map(\.text)
            guard !events.isEmpty else {
                throw NotificationError("InvalidArgument", "A QueueConfiguration must name at least one <Event>.")
            }
            for event in events where !QueueRule.supportedEvents.contains(event) {
                throw NotificationError("InvalidArgument", "The event '\(event)' is not supported for notifications.")
            }
            var rule = QueueRule(
                id: element.string("Id").flatMap { $0.isEmpty ? nil : $0 } ?? "queue-\(index + 1)", arn: arn,
                events: events)
            for filter in element.descendant("Filter", "S3Key")?.children("FilterRule") ?? [] {
                let name = (filter.string("Name") ?? "").lowercased()
                let value = filter.string("Value") ?? ""
                switch name {
                case "prefix": rule.prefix = value
                case "suffix": rule.suffix = value
                default:
                    throw NotificationError(
                        "InvalidArgument",
                        "FilterRule names must be 'prefix' or 'suffix', not '\(filter.string("Name") ?? "")'.")
                }
            }
            guard ids.insert(rule.id).inserted else {
                throw NotificationError("InvalidArgument", "Two configurations have the same Id '\(rule.id)'.")
            }
            rules.append(rule)
        }
        return BucketNotificationConfiguration(queues: rules)
    }

    /// The `GetBucketNotificationConfiguration` document.
    public func xml() -> String {
        var xml = S3XMLWriter(root: "NotificationConfiguration")
        for rule in queues {
            xml.group("QueueConfiguration") { x in
                x.element("Id", rule.id)
                x.element("Queue", rule.arn)
                for event in rule.events { x.element("Event", event) }
                if !rule.prefix.isEmpty || !rule.suffix.isEmpty {
                    x.group("Filter") { f in
                        f.group("S3Key") { k in
                            for (name, value) in [("prefix", rule.prefix), ("suffix", rule.suffix)] where !value.isEmpty
                            {
                                k.group("FilterRule") { r in
                                    r.element("Name", name)
                                    r.element("Value", value)
                                }
                            }
                        }
                    }
                }
            }
        }
        return xml.finish()
    }

    /// Target ids of the rules matching an event, each once, in rule order, with the matching rule's id.
    func targets(eventName: String, key: String) -> [(target: String, ruleID: String)] {
        var seen: Set<String> = []
        var result: [(String, String)] = []
        for rule in queues where rule.matches(eventName: eventName, key: key) {
            if let target = rule.targetID, seen.insert(target).inserted { result.append((target, rule.id)) }
        }
        return result
    }
}
