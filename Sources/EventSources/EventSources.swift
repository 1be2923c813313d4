import Foundation
import Gateway
import Logging
import PollState
import ServiceLifecycle

/// The event sources of the gateway file's `sources:` section (SQS queues, polled buckets), decoded from the
/// same file as the gateway core's `GatewayConfiguration` (`ConfigurationFile.decode`).
public struct EventSourcesConfiguration: Sendable, ConfigurationSection {
    /// SQS queues polled for object-store events (`sources.sqs`), next to the webhook.
    public var sqs: [SQSSourceConfiguration]
    /// Buckets listed for new and changed objects (`sources.poll`), for stores without usable notifications.
    public var poll: [PollSourceConfiguration]
    /// The SQLite file of the poll sources' seen state (key → ETag per source), honoured with either queue.
    /// `nil` (the default): with the PostgreSQL queue, tables in its database that every gateway of the fleet
    /// shares; with the SQLite queue, `poll.sqlite` beside `queue.path`.
    public var pollStatePath: String?

    public init(
        sqs: [SQSSourceConfiguration] = [], poll: [PollSourceConfiguration] = [], pollStatePath: String? = nil
    ) {
        self.sqs = sqs
        self.poll = poll
        self.pollStatePath = pollStatePath
    }

    /// No source.
    public var isEmpty: Bool { sqs.isEmpty && poll.isEmpty }

    /// An SQS field is the gateway's variable when it is `${NAME}` as a whole; a poll source's takes `${NAME}`
    /// anywhere (as written, not percent-encoded).
    public static let substitutions = [
        Substitution(["sources", "sqs", .anyItem, .anyKey], .wholeValue),
        Substitution(["sources", "poll", .anyItem, .anyKey], .anywhere(percentEncoded: false)),
    ]

    /// Reads `sources` and `region` (the sources' default region, wherever it is in the file); the rest of the
    /// file is the gateway core's.
    public init(from decoder: any Decoder) throws {
        self.init()
        let file = try decoder.configurationFields(notAMapping: "expected a mapping with a 'functions' key")
        let keys = file.keys
        var region = "us-east-1"
        if keys.contains("region"), let text = try file.text("region"), !text.isEmpty { region = text }
        guard keys.contains("sources"), !(try file.value("sources").isNull) else { return }
        let fields = try file.decoder("sources").configurationFields(notAMapping: "expected a mapping (sqs, poll)")
        for field in fields.keys {
            switch field {
            case "sqs":
                sqs = try fields.decoder(field).configurationItems(notAList: "expected a list of queues").map {
                    item in try SQSSourceConfiguration(from: item, defaultRegion: region)
                }
            case "poll":
                let items = try fields.decoder(field).configurationItems(
                    notAList: "expected a list of buckets ({endpoint, bucket, interval, …})")
                var ids: Set<String> = []
                poll = try items.map { item in
                    let source = try PollSourceConfiguration(from: item, defaultRegion: region)
                    guard ids.insert(source.stateID).inserted else {
                        throw GatewayError.configuration(
                            item.configurationPath, "polls the same endpoint, bucket and prefix as an earlier entry")
                    }
                    return source
                }
            default:
                throw fields.error(field, "unknown source (expected sqs or poll)")
            }
        }
    }

    /// The `sources:` section of a gateway file (see `GatewayConfiguration.load` for the whole file).
    public static func load(yaml: String, baseDirectory: String, environment: [String: String] = [:])
        throws(GatewayError) -> EventSourcesConfiguration
    {
        try ConfigurationFile(yaml: yaml, baseDirectory: baseDirectory, environment: environment)
            .decode(EventSourcesConfiguration.self)
    }

    /// Checks sources built in code as the file's are checked.
    public func validate() throws(GatewayError) {
        for (index, source) in sqs.enumerated() { try source.validate(path: "sources.sqs[\(index)]") }
        for (index, source) in poll.enumerated() { try source.validate(path: "sources.poll[\(index)]") }
    }
}

/// The event sources built over a gateway's `EventSink` by the composition root, each a `Service`
/// (`sqs:<queue>`, `poll:<bucket>`) to run among the gateway's parts: `gateway.services(eventSources:)`.
public struct EventSources: Sendable {
    let sqs: [SQSEventSource]
    let poll: [PollEventSource]

    /// - Parameters:
    ///   - queue: the gateway's queue configuration; with the SQLite queue, the poll sources' seen state defaults
    ///     to `poll.sqlite` beside its file.
    ///   - pollState: the poll sources' seen state when the composition root has one (the shared queue's
    ///     `PostgresPollState`); else the SQLite file `configuration.pollStatePath`, else beside `queue.path`.
    public init(
        configuration: EventSourcesConfiguration, queue: QueueConfiguration, sink: EventSink,
        pollState: (any PollStateStore)? = nil, logger: Logger
    ) throws(GatewayError) {
        try configuration.validate()
        sqs = configuration.sqs.map { SQSEventSource(configuration: $0, sink: sink, logger: logger) }
        guard !configuration.poll.isEmpty else {
            poll = []
            return
        }
        let state: any PollStateStore
        if let pollState {
            state = pollState
        } else {
            guard
                let path = configuration.pollStatePath
                    ?? queue.path.map({
                        URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent("poll.sqlite").path
                    })
            else {
                throw GatewayError(
                    .invalidConfiguration,
                    "sources.poll: needs a file for its seen state: set queue.path or the gateway's pollStatePath")
            }
            do {
                state = try SQLitePollState(path: path)
            } catch {
                throw GatewayError(.invalidConfiguration, "sources.poll: \(error.description)", underlying: error)
            }
        }
        poll = configuration.poll.map { PollEventSource(configuration: $0, state: state, sink: sink, logger: logger) }
        for source in poll {
            // The gateway's first pruning waits for each source's first scan (see `EventSink.holdPruning`).
            let scanned = source.scanned
            sink.holdPruning { deadline in _ = await scanned.sleep(for: max(.zero, deadline - .now)) }
        }
    }

    /// One service per source, each waiting for the gateway to be ready (its queue recovered) and running until
    /// graceful shutdown: an SQS source stops receiving (messages still held come back after their visibility
    /// timeout); a poll source stops scanning (records not yet recorded as seen are emitted again, and
    /// deduplicated, at the next start).
    public var services: [any Service] {
        sqs.map { source in
            SourceService("sqs:\(source.configuration.queueName)", sink: source.sink) { await source.run() }
        }
            + poll.map { source in
                SourceService("poll:\(source.configuration.bucket)", sink: source.sink) { await source.run() }
            }
    }
}

/// One source as a `Service` named in the group's logs.
struct SourceService: Service, CustomStringConvertible {
    let description: String
    let sink: EventSink
    let body: @Sendable () async -> Void

    init(_ name: String, sink: EventSink, _ body: @escaping @Sendable () async -> Void) {
        description = name
        self.sink = sink
        self.body = body
    }

    func run() async throws {
        try await sink.ready()
        await cancelWhenGracefulShutdown { await body() }
    }
}

extension GatewayError {
    /// `path: message`, as the gateway's own configuration errors.
    static func configuration(_ path: String, _ message: String) -> GatewayError {
        GatewayError(.invalidConfiguration, "\(path): \(message)")
    }
}

extension Duration {
    /// The duration in seconds, as a Double.
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}
