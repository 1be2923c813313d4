import AsyncHTTPClient
import CoreMetrics
import Foundation
import Gateway
import InvocationQueue
import Logging
import NIOCore
import PollState
import Prometheus
import S3Client

/// Lists a bucket's objects (every page). `S3Client` in the gateway; a fake in tests.
protocol PollObjectLister: Sendable {
    func listObjects(bucket: String, prefix: String) async throws -> [ObjectSummary]
}

extension S3Client: PollObjectLister {
    func listObjects(bucket: String, prefix: String) async throws -> [ObjectSummary] {
        var objects: [ObjectSummary] = []
        for try await object in listAllObjects(bucket: bucket, prefix: prefix.isEmpty ? nil : prefix, pageSize: 1000) {
            objects.append(object)
        }
        return objects
    }
}

/// Triggers on any S3 store, without its notifications: lists one bucket (ListObjectsV2, every page) every
/// `interval`, compares the listing by key and ETag with what it has already seen, and turns each new or
/// changed object into the `ObjectCreated:Put` record a notification would have carried. The records go through
/// the gateway's `EventSink` (the webhook's trigger rules and dedupe keys), are committed to the durable queue, and are seen
/// by the event observer (the API's webhooks), exactly as an SQS message's are.
///
/// - The seen state (key → ETag and sequencer) is durable (`PollStateStore`) and written only after the
///   records' invocations are committed and observed: a crash at any point leaves at worst records that are
///   emitted again at the next scan, with the same dedupe keys (the sequencer is derived from LastModified and
///   ETag), which the queue keeps for `queue.retention` — so nothing is lost and nothing runs twice.
/// - A seen key the listing no longer has is dropped from the state, and an `ObjectRemoved:Delete` record is
///   emitted for it (it invokes only rules that ask for `ObjectRemoved` events).
/// - With the shared PostgreSQL queue the seen state is the fleet's (`PostgresPollState`): every gateway polling
///   the source reads it before each scan and records into it, so a gateway that joins, or returns after more
///   than `queue.retention`, does not emit again what another gateway already has. Gateways scanning at once
///   may both emit a new object; the dedupe key makes that one invocation.
/// - The first scan of a source emits every object present (`startFrom: beginning`) or records them as seen
///   without events (`startFrom: now`).
/// - Errors (store down, access denied, a listing that cannot be read, the queue unavailable) are logged,
///   counted, and retried after a backoff (1 s doubling to 30 s, never shorter than `interval`); nothing here
///   stops the gateway. `run()` returns when its task is cancelled (graceful shutdown).
final class PollEventSource: Sendable {
    let configuration: PollSourceConfiguration
    /// nil: an `S3Client` over an `HTTPClient` of its own, made and shut down by `run()`.
    private let injectedLister: (any PollObjectLister)?
    let state: any PollStateStore
    /// The gateway: intake, queue, event observer.
    let sink: EventSink
    let logger: Logger
    /// Fired once a scan (the first after start) has been committed; the gateway's first pruning waits for it.
    let scanned = AsyncEvent()
    private let counters: Counters

    /// Records per commit: one body, one queue transaction, one observer call, one state write.
    static let recordsPerCommit = 100

    private struct Counters: Sendable {
        let created, removed: CoreMetrics.Counter
        let scans: CoreMetrics.Counter
        let listErrors, commitErrors: CoreMetrics.Counter
        let tracked: CoreMetrics.Gauge
        let duration: CoreMetrics.Timer
    }

    init(
        configuration: PollSourceConfiguration, lister: (any PollObjectLister)? = nil, state: any PollStateStore,
        sink: EventSink, logger: Logger
    ) {
        self.configuration = configuration
        self.injectedLister = lister
        self.state = state
        self.sink = sink
        var logger = logger
        logger[metadataKey: "cinescale.poll.source"] = .string(configuration.name)
        self.logger = logger
        let factory = PrometheusMetricsFactory(registry: sink.registry)
        let source = ("source", configuration.name)
        func records(_ event: String) -> CoreMetrics.Counter {
            CoreMetrics.Counter(
                label: "cinescale_gateway_poll_records_emitted_total", dimensions: [source, ("event", event)],
                factory: factory)
        }
        func errors(_ stage: String) -> CoreMetrics.Counter {
            CoreMetrics.Counter(
                label: "cinescale_gateway_poll_errors_total", dimensions: [source, ("stage", stage)], factory: factory)
        }
        counters = Counters(
            created: records("ObjectCreated:Put"), removed: records("ObjectRemoved:Delete"),
            scans: CoreMetrics.Counter(
                label: "cinescale_gateway_poll_scans_total", dimensions: [source], factory: factory),
            listErrors: errors("list"), commitErrors: errors("commit"),
            tracked: CoreMetrics.Gauge(
                label: "cinescale_gateway_poll_objects_seen", dimensions: [source], factory: factory),
            duration: CoreMetrics.Timer(
                label: "cinescale_gateway_poll_scan_duration_seconds", dimensions: [source], factory: factory))
    }

    // MARK: Polling

    /// Scans until cancelled.
    func run() async {
        if let injectedLister { return await poll(injectedLister) }
        // Its own connection pool, failing a request at once when the store refuses connections (the shared
        // client keeps retrying the connection until the request's deadline).
        var http = HTTPClient.Configuration()
        http.connectionPool.retryConnectionEstablishment = false
        http.timeout.connect = .seconds(5)
        let httpClient = HTTPClient(eventLoopGroupProvider: .singleton, configuration: http)
        let client = S3Client(
            configuration: S3ClientConfiguration(
                endpoint: configuration.endpoint, region: configuration.region, credentials: configuration.credentials,
                addressing: configuration.pathStyle ? .path : .virtualHost, timeout: .seconds(60)),
            httpClient: httpClient, logger: logger)
        await poll(client)
        try? await httpClient.shutdown()
    }

    /// Why a scan stopped short.
    private enum Failure: Error {
        case list(any Error)
        case commit(String, any Error)
        case cancelled
    }

    private func poll(_ lister: any PollObjectLister) async {
        logger.info(
            "polling bucket",
            metadata: [
                "cinescale.poll.endpoint": .string(configuration.endpoint.absoluteString),
                "cinescale.poll.interval_ms": .stringConvertible(Int(configuration.interval.seconds * 1000)),
                "cinescale.poll.start_from": .string(configuration.startFrom.rawValue),
            ])
        // nil until loaded; `fresh`: no scan of this source was ever recorded.
        var seen: [String: SeenObject]?
        var fresh = false
        var failures = 0
        while !Task.isCancelled {
            var wait = configuration.interval
            do {
                // A shared state is read again before every scan, before the listing: whatever another gateway
                // has recorded by then is not emitted again here, and what the listing shows is at least as new.
                if seen == nil || state.isShared {
                    do {
                        let loaded = try await state.load(source: configuration.stateID)
                        fresh = loaded == nil
                        seen = loaded ?? [:]
                    } catch {
                        throw Failure.commit("could not read the seen state", error)
                    }
                }
                try await scan(lister, seen: &seen!, fresh: &fresh)
                if failures > 0 {
                    logger.info(
                        "bucket scanned again", metadata: ["cinescale.poll.failures": .stringConvertible(failures)])
                    failures = 0
                }
                scanned.fire()
            } catch Failure.cancelled {
                break
            } catch {
                if Task.isCancelled { break }
                failures += 1
                let delay = SQSEventSource.backoff(afterFailures: failures)
                wait = max(wait, delay)
                var metadata: Logger.Metadata = [
                    "cinescale.poll.retry_in_ms": .stringConvertible(Int(wait.seconds * 1000))
                ]
                switch error {
                case Failure.list(let cause):
                    counters.listErrors.increment()
                    metadata["cinescale.error"] = .string(Self.describe(cause))
                    logger.warning("could not list the bucket; retrying", metadata: metadata)
                case Failure.commit(let what, let cause):
                    counters.commitErrors.increment()
                    metadata["cinescale.error"] = .string(Self.describe(cause))
                    logger.error("\(what); the records will be emitted again", metadata: metadata)
                default:
                    counters.commitErrors.increment()
                    metadata["cinescale.error"] = "\(error)"
                    logger.error("scan failed; retrying", metadata: metadata)
                }
            }
            guard (try? await Task.sleep(for: wait)) != nil else { break }
        }
        logger.info("stopped polling bucket")
    }

    /// One scan: list, diff, commit the changes in chunks. `seen` follows what is durably recorded.
    private func scan(_ lister: any PollObjectLister, seen: inout [String: SeenObject], fresh: inout Bool)
        async throws(Failure)
    {
        let started = ContinuousClock.now
        let listing: [ObjectSummary]
        do {
            listing = try await lister.listObjects(bucket: configuration.bucket, prefix: configuration.prefix)
        } catch {
            if Task.isCancelled { throw .cancelled }
            throw .list(error)
        }
        let diff = PollScan.diff(listing, seen: seen)
        if fresh, configuration.startFrom == .now {
            // The baseline: what is there now is not an event.
            var baseline: [String: SeenObject] = [:]
            for object in diff.changed { baseline[object.key] = PollScan.seen(object) }
            try await record(seen: baseline, removed: [:])
            seen = baseline
            fresh = false
            logger.info(
                "first scan: existing objects recorded as seen (startFrom: now)",
                metadata: [
                    "cinescale.count": .stringConvertible(baseline.count)
                ])
            finish(started, tracked: seen.count)
            return
        }
        let now = Date()
        var index = diff.changed.startIndex
        while index < diff.changed.endIndex {
            let chunk = diff.changed[index..<min(index + Self.recordsPerCommit, diff.changed.endIndex)]
            index = chunk.endIndex
            var updates: [String: SeenObject] = [:]
            var records: [String] = []
            for object in chunk {
                records.append(
                    PollScan.createdRecord(object, bucket: configuration.bucket, region: configuration.region, now: now)
                )
                updates[object.key] = PollScan.seen(object)
            }
            try await commit(records, seen: updates, removed: [:])
            counters.created.increment(by: Int64(records.count))
            seen.merge(updates) { $1 }
            fresh = false
        }
        var removals = diff.removed[...]
        while !removals.isEmpty {
            let chunk = removals.prefix(Self.recordsPerCommit)
            removals = removals.dropFirst(chunk.count)
            let records = chunk.map {
                PollScan.removedRecord(
                    key: $0.key, seen: $0.object, bucket: configuration.bucket, region: configuration.region, now: now)
            }
            try await commit(
                records, seen: [:], removed: Dictionary(uniqueKeysWithValues: chunk.map { ($0.key, $0.object) }))
            counters.removed.increment(by: Int64(records.count))
            for entry in chunk { seen[entry.key] = nil }
        }
        if fresh {
            // An empty first scan: recorded, so that objects appearing later are new, not a first scan's.
            try await record(seen: [:], removed: [:])
            fresh = false
        }
        if !diff.changed.isEmpty || !diff.removed.isEmpty {
            logger.debug(
                "bucket scanned",
                metadata: [
                    "cinescale.poll.listed": .stringConvertible(listing.count),
                    "cinescale.poll.changed": .stringConvertible(diff.changed.count),
                    "cinescale.poll.removed": .stringConvertible(diff.removed.count),
                ])
        }
        finish(started, tracked: seen.count)
    }

    private func finish(_ started: ContinuousClock.Instant, tracked: Int) {
        counters.scans.increment()
        counters.tracked.record(tracked)
        counters.duration.recordNanoseconds(Int64((ContinuousClock.now - started).seconds * 1e9))
    }

    /// Commits records as one notification: their invocations to the queue, the body to the observer, then the
    /// versions to the seen state — in that order, so that the state never runs ahead of the queue.
    private func commit(_ records: [String], seen: [String: SeenObject], removed: [String: SeenObject])
        async throws(Failure)
    {
        let body = ByteBuffer(string: PollScan.body(records))
        let batch: EventIntake.Batch
        do throws(GatewayError) {
            batch = try sink.invocations(from: body)
        } catch {
            throw .commit("could not read the records made from the listing", error)
        }
        if !batch.invocations.isEmpty {
            // Admission: past the queue's bound, wait for room (the bucket keeps the objects meanwhile).
            guard await sink.admitWhenRoom(batch.invocations.count, logger: logger, waiting: "waiting for room")
            else {
                throw .cancelled
            }
            do {
                _ = try await sink.enqueue(batch.invocations)
            } catch {
                throw .commit("could not commit the records' invocations to the queue", error)
            }
        }
        if sink.hasObserver {
            do {
                try await sink.observe(body)
            } catch {
                throw .commit("an event observer failed", error)
            }
        }
        try await record(seen: seen, removed: removed)
    }

    private func record(seen: [String: SeenObject], removed: [String: SeenObject]) async throws(Failure) {
        do {
            try await state.record(source: configuration.stateID, seen: seen, removed: removed)
        } catch {
            throw .commit("could not record the seen objects", error)
        }
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? S3Error { return error.description }
        if let error = error as? S3ClientError { return error.description }
        if let error = error as? GatewayError { return error.message }
        return String(describing: error)
    }
}
