import Foundation
import InvocationQueue

/// How a function's asynchronous invocations are retried, like Lambda's `MaximumRetryAttempts` and
/// `MaximumEventAgeInSeconds`: after `maxAttempts` failed attempts, or once the event is older than
/// `maxEventAge`, the invocation goes to the dead-letter queue.
public struct RetryPolicy: Sendable, Hashable {
    /// Attempts in all, the first included. Default 3 (Lambda's default: 1 + 2 retries).
    public var maxAttempts: Int
    /// Delay before the first retry; doubled for each further one, up to `maxBackoff`. Each delay is
    /// drawn uniformly from [delay/2, delay] ("equal jitter"). Default 1 s.
    public var initialBackoff: Duration
    /// Default 300 s.
    public var maxBackoff: Duration
    /// Default 6 h (Lambda's default and maximum).
    public var maxEventAge: Duration

    public init(
        maxAttempts: Int = 3, initialBackoff: Duration = .seconds(1), maxBackoff: Duration = .seconds(300),
        maxEventAge: Duration = .seconds(21_600)
    ) {
        self.maxAttempts = maxAttempts
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.maxEventAge = maxEventAge
    }

    /// The delay before the attempt after `failedAttempt` (1-based), jitter drawn from `random`.
    public func delay(after failedAttempt: Int, random: Double = Double.random(in: 0...1)) -> Duration {
        let exponent = min(max(failedAttempt - 1, 0), 40)
        let base = min(maxBackoff.seconds, initialBackoff.seconds * pow(2, Double(exponent)))
        let jittered = base / 2 + base / 2 * min(max(random, 0), 1)
        return .milliseconds(Int64((jittered * 1000).rounded()))
    }

    func validate(path: String, function: String) throws(GatewayError) {
        guard (1...100).contains(maxAttempts) else {
            throw .configuration("\(path).maxAttempts", "must be between 1 and 100", function: function)
        }
        guard initialBackoff >= .zero, maxBackoff >= initialBackoff else {
            throw .configuration("\(path).maxBackoff", "must be at least backoff (and both ≥ 0)", function: function)
        }
        guard maxEventAge >= .seconds(1) else {
            throw .configuration("\(path).maxEventAge", "must be at least 1 second", function: function)
        }
    }
}

extension RetryPolicy: Decodable {
    /// `functions.<name>.retry`.
    public init(from decoder: any Decoder) throws {
        let path = decoder.configurationPath
        let function = ConfigurationPath.function(path)
        let fields = try decoder.configurationFields(
            notAMapping: "expected a mapping (maxAttempts, backoff, maxBackoff, maxEventAge)", function: function)
        self.init()
        for field in fields.keys {
            let value = try fields.value(field)
            func seconds() throws(GatewayError) -> Duration {
                guard let s = value.text.flatMap({ Double($0) }), s >= 0, s <= 31_536_000 else {
                    throw fields.error(field, "expected a number of seconds, got \(value)")
                }
                return .milliseconds(Int64((s * 1000).rounded()))
            }
            switch field {
            case "maxAttempts":
                guard let n = value.text.flatMap({ Int($0) }) else { throw fields.error(field, "expected an integer") }
                maxAttempts = n
            case "backoff": initialBackoff = try seconds()
            case "maxBackoff": maxBackoff = try seconds()
            case "maxEventAge": maxEventAge = try seconds()
            default:
                throw fields.error(field, "unknown field (expected maxAttempts, backoff, maxBackoff or maxEventAge)")
            }
        }
        try validate(path: path, function: function ?? "")
    }
}

/// Routes object-store events to a function: every record whose bucket, event name and key match is queued
/// as one invocation of `function` (a record matching several rules invokes each function once).
public struct TriggerRule: Sendable, Hashable {
    public var function: String
    /// Exact bucket name.
    public var bucket: String
    /// Event-name patterns, with or without the `s3:` prefix; a trailing `*` matches any rest
    /// (`s3:ObjectCreated:*`). Default: every `ObjectCreated` event.
    public var events: [String]
    public var prefix: String
    public var suffix: String

    public init(
        function: String, bucket: String, events: [String] = ["s3:ObjectCreated:*"], prefix: String = "",
        suffix: String = ""
    ) {
        self.function = function
        self.bucket = bucket
        self.events = events
        self.prefix = prefix
        self.suffix = suffix
    }

    /// Whether a record (decoded key, event name with or without `s3:`) matches.
    public func matches(bucket: String, eventName: String, key: String) -> Bool {
        guard bucket == self.bucket, key.hasPrefix(prefix), key.hasSuffix(suffix) else { return false }
        let name = Self.stripPrefix(eventName)
        return events.contains { pattern in
            let p = Self.stripPrefix(pattern)
            if p.hasSuffix("*") { return name.hasPrefix(p.dropLast()) }
            return name == p
        }
    }

    static func stripPrefix(_ name: String) -> Substring {
        name.hasPrefix("s3:") ? name.dropFirst(3) : Substring(name)
    }

    func validate(path: String) throws(GatewayError) {
        guard !bucket.isEmpty else { throw .configuration("\(path).bucket", "is required") }
        guard !events.isEmpty else { throw .configuration("\(path).events", "must name at least one event") }
        for event in events {
            let name = Self.stripPrefix(event)
            guard name.hasPrefix("ObjectCreated:") || name.hasPrefix("ObjectRemoved:") || name == "*" else {
                throw .configuration(
                    "\(path).events",
                    "'\(event)' is not an S3 event name (s3:ObjectCreated:*, s3:ObjectRemoved:Delete...)")
            }
        }
    }
}

extension TriggerRule: Decodable {
    /// `triggers[i]`.
    public init(from decoder: any Decoder) throws {
        let fields = try decoder.configurationFields(notAMapping: "expected a mapping")
        var function: String?
        var bucket: String?
        self.init(function: "", bucket: "")
        for field in fields.keys {
            let value = try fields.value(field)
            func string() throws(GatewayError) -> String {
                guard let text = value.text else { throw fields.error(field, "expected a string") }
                return text
            }
            switch field {
            case "function": function = try string()
            case "bucket": bucket = try string()
            case "prefix": prefix = try string()
            case "suffix": suffix = try string()
            case "events":
                switch value {
                case .scalar(let text): events = [text]
                case .list:
                    events = try fields.decoder(field).configurationItems(notAList: "expected a list of event names")
                        .map { item in
                            guard let text = try ConfigurationValue(from: item).text else {
                                throw fields.error(field, "expected a list of event names")
                            }
                            return text
                        }
                case .mapping: throw fields.error(field, "expected a list of event names")
                }
            default:
                throw fields.error(field, "unknown field (expected function, bucket, events, prefix or suffix)")
            }
        }
        guard let function else { throw fields.error("function", "is required") }
        guard let bucket else { throw fields.error("bucket", "is required") }
        self.function = function
        self.bucket = bucket
    }
}

/// The durable queue of asynchronous invocations: a SQLite file of this gateway's own, or a PostgreSQL
/// database shared by several gateways.
public struct QueueConfiguration: Sendable, Hashable {
    /// The SQLite file. `nil`: the composition root must set one (the `cinescale gateway` command uses
    /// `<data dir>/gateway/queue.sqlite`). Ignored when `postgres` is set.
    public var path: String?
    /// A PostgreSQL URL (`postgres://user:password@host:5432/database?sslmode=disable|prefer|require`): the
    /// queue shared with every gateway configured with the same database.
    public var postgres: String?
    /// Shared queue: how long a claimed attempt stays leased without renewal (a dead gateway's attempts are
    /// taken over after this). Default 10 s.
    public var lease: Duration
    /// Shared queue: connections this gateway opens at most. Default 8.
    public var maxConnections: Int
    /// Pending invocations (queued, running, awaiting retry) past which events are refused with 503 and
    /// `Event` invokes with 429. Default 100 000.
    public var maxPending: Int
    /// How long finished invocations are kept, listed and deduplicated against. Default 3 days.
    public var retention: Duration

    public init(
        path: String? = nil, postgres: String? = nil, lease: Duration = .seconds(10), maxConnections: Int = 8,
        maxPending: Int = 100_000, retention: Duration = .seconds(259_200)
    ) {
        self.path = path
        self.postgres = postgres
        self.lease = lease
        self.maxConnections = maxConnections
        self.maxPending = maxPending
        self.retention = retention
    }

    func validate() throws(GatewayError) {
        guard maxPending >= 1 else { throw .configuration("queue.maxPending", "must be at least 1") }
        guard retention >= .seconds(60) else { throw .configuration("queue.retention", "must be at least 60 seconds") }
        guard lease >= .seconds(2) else { throw .configuration("queue.lease", "must be at least 2 seconds") }
        guard maxConnections >= 2 else { throw .configuration("queue.maxConnections", "must be at least 2") }
        if let postgres {
            do {
                _ = try PostgresQueueConfiguration(url: postgres)
            } catch {
                throw .configuration("queue.postgres", error.message)
            }
        }
    }

    /// The shared queue's settings, when `postgres` is set.
    public func postgresConfiguration() throws(GatewayError) -> PostgresQueueConfiguration? {
        guard let postgres else { return nil }
        do {
            var configuration = try PostgresQueueConfiguration(url: postgres)
            configuration.leaseDuration = lease
            configuration.maxConnections = maxConnections
            return configuration
        } catch {
            throw .configuration("queue.postgres", error.message)
        }
    }
}

extension QueueConfiguration: Decodable {
    /// `queue`. `${NAME}` in `postgres` was replaced before decoding (`GatewayConfiguration.substitutions`).
    public init(from decoder: any Decoder) throws {
        let context = decoder.configurationContext
        let fields = try decoder.configurationFields(
            notAMapping: "expected a mapping (path or postgres, maxPending, retention)")
        self.init()
        for field in fields.keys {
            let value = try fields.value(field)
            switch field {
            case "path":
                guard let text = value.text, !text.isEmpty else { throw fields.error(field, "expected a path") }
                path = context.resolve(text)
            case "maxPending":
                guard let n = value.text.flatMap({ Int($0) }) else { throw fields.error(field, "expected an integer") }
                maxPending = n
            case "retention":
                guard let s = value.text.flatMap({ Double($0) }), s > 0 else {
                    throw fields.error(field, "expected a number of seconds")
                }
                retention = .milliseconds(Int64(s * 1000))
            case "postgres":
                guard let text = value.text, !text.isEmpty else {
                    throw fields.error(field, "expected a postgres:// URL")
                }
                postgres = text
            case "lease":
                guard let s = value.text.flatMap({ Double($0) }), s > 0 else {
                    throw fields.error(field, "expected a number of seconds")
                }
                lease = .milliseconds(Int64(s * 1000))
            case "maxConnections":
                guard let n = value.text.flatMap({ Int($0) }) else { throw fields.error(field, "expected an integer") }
                maxConnections = n
            default:
                throw fields.error(
                    field, "unknown field (expected path, postgres, lease, maxConnections, maxPending or retention)")
            }
        }
        try validate()
    }
}
