import AsyncHTTPClient
import CoreMetrics
import DurableSQLite
import Foundation
import GRDB
import Logging
import NIOCore
import ObjectStore
import Prometheus
import S3Wire
import ServiceLifecycle
import Synchronization

/// The embedded store's event notifications, MinIO-compatible: per-bucket rules
/// (`PutBucketNotificationConfiguration`) route each change to webhook targets; each event is written to a
/// durable queue (SQLite, fsync'd, group-committed) **before** the request that caused it is answered, then
/// POSTed at once by `concurrency` senders per target. A target that is down gets every event when it is
/// back (retried with backoff, no restart needed); a store restart loses none (the queue is reloaded). Past
/// `maxQueued` undelivered events, writes to buckets with rules are refused with 503 SlowDown — nothing is
/// dropped.
public final class EventNotifier: Service, Sendable {
    public let settings: NotificationSettings
    let database: DurableDatabase
    let logger: Logger
    let metrics: NotificationMetrics
    private let targets: [String: WebhookTarget]
    private let state: Mutex<State>

    struct Pending: Sendable {
        var id: Int64
        var body: Data
        var enqueuedAt: ContinuousClock.Instant
    }

    private struct TargetState {
        var queue: [Pending] = []
        var head = 0
        var inFlight = 0
        var waiters: [CheckedContinuation<Pending?, Never>] = []
        var up = true

        var count: Int { queue.count - head }

        mutating func popFirst() -> Pending? {
            guard head < queue.count else { return nil }
            let item = queue[head]
            head += 1
            if head > 1024 && head * 2 > queue.count {
                queue.removeFirst(head)
                head = 0
            }
            return item
        }

        mutating func pushFront(_ item: Pending) {
            if head > 0 {
                head -= 1
                queue[head] = item
            } else {
                queue.insert(item, at: 0)
            }
        }
    }

    private struct State {
        var configurations: [String: BucketNotificationConfiguration] = [:]
        var targets: [String: TargetState] = [:]
        var stopping = false
        var pending: Int { targets.values.reduce(0) { $0 + $1.count + $1.inFlight } }
    }

    /// Opens the queue (reloading undelivered events and bucket rules).
    public init(settings: NotificationSettings, registry: PrometheusCollectorRegistry, logger: Logger) throws {
        self.settings = settings
        self.logger = logger
        var targets: [String: WebhookTarget] = [:]
        for target in settings.targets { targets[target.id] = target }
        self.targets = targets
        metrics = NotificationMetrics(
            targets: settings.targets.map(\.id), limit: settings.maxQueued, registry: registry)

        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE event (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        target TEXT NOT NULL,
                        body BLOB NOT NULL,
                        created_at REAL NOT NULL
                    );
                    CREATE TABLE bucket_notification (
                        bucket TEXT PRIMARY KEY NOT NULL,
                        xml TEXT NOT NULL
                    );
                    """)
        }
        database = try DurableDatabase(path: settings.queuePath, migrator: migrator)
        let ids = Set(targets.keys)
        let (rows, configs) = try database.readNow { db in
            (
                try Row.fetchAll(db, sql: "SELECT id, target, body FROM event ORDER BY id"),
                try Row.fetchAll(db, sql: "SELECT bucket, xml FROM bucket_notification")
            )
        }
        var initial = State()
        for id in ids { initial.targets[id] = TargetState() }
        let now = ContinuousClock.now
        var orphaned = 0
        for row in rows {
            let target: String = row["target"]
            guard initial.targets[target] != nil else {
                orphaned += 1
                continue
            }
            initial.targets[target]!.queue.append(Pending(id: row["id"], body: row["body"], enqueuedAt: now))
        }
        for row in configs {
            let bucket: String = row["bucket"]
            let xml: String = row["xml"]
            do {
                initial.configurations[bucket] = try BucketNotificationConfiguration.parse(Data(xml.utf8), targets: ids)
            } catch {
                logger.error(
                    "a bucket's notification rules name a target that is no longer configured; its events are not sent",
                    metadata: [
                        "cinescale.bucket": .string(bucket), "cinescale.error": .string(error.description),
                    ])
            }
        }
        if orphaned > 0 {
            logger.error(
                "undelivered events for targets that are no longer configured are kept in the queue",
                metadata: [
                    "cinescale.count": .stringConvertible(orphaned)
                ])
        }
        let loaded = rows.count - orphaned
        if loaded > 0 {
            logger.info("undelivered events reloaded", metadata: ["cinescale.count": .stringConvertible(loaded)])
        }
        state = Mutex(initial)
        for (id, target) in initial.targets { metrics.depth(target: id, target.count) }
    }

    public var targetIDs: Set<String> { Set(targets.keys) }

    /// Undelivered events (queued and being sent), all targets.
    public var pendingCount: Int { state.withLock { $0.pending } }

    // MARK: Bucket rules

    public func configuration(for bucket: String) -> BucketNotificationConfiguration {
        state.withLock { $0.configurations[bucket] } ?? BucketNotificationConfiguration()
    }

    /// Stores a bucket's rules durably (an empty configuration removes them).
    public func setConfiguration(_ configuration: BucketNotificationConfiguration, for bucket: String) async throws {
        let xml = configuration.xml()
        let empty = configuration.queues.isEmpty
        try await database.write { db in
            if empty {
                try db.execute(sql: "DELETE FROM bucket_notification WHERE bucket = ?", arguments: [bucket])
            } else {
                try db.execute(
                    sql:
                        "INSERT INTO bucket_notification (bucket, xml) VALUES (?, ?) ON CONFLICT(bucket) DO UPDATE SET xml = excluded.xml",
                    arguments: [bucket, xml])
            }
        }
        state.withLock { s in s.configurations[bucket] = empty ? nil : configuration }
    }

    /// Forgets a deleted bucket's rules.
    public func bucketDeleted(_ bucket: String) async throws {
        try await setConfiguration(BucketNotificationConfiguration(), for: bucket)
    }

    // MARK: Events

    /// Call before a write to `bucket`: throws 503 SlowDown when the bucket has rules and the queue is full.
    public func admit(bucket: String) throws(NotificationError) {
        let (hasRules, pending) = state.withLock { s in (s.configurations[bucket] != nil, s.pending) }
        guard hasRules, pending >= settings.maxQueued else { return }
        metrics.refused.increment()
        throw NotificationError(
            "SlowDown", status: 503,
            "Please reduce your request rate. \(pending) event notifications are waiting for delivery (limit \(settings.maxQueued))."
        )
    }

    /// The `ObjectStore` observer: queues the event durably for every matching target; returns once it is on
    /// disk.
    public func record(_ event: ObjectStoreEvent) async throws {
        let name = EventFormat.eventName(event.kind)
        let matches = state.withLock { $0.configurations[event.bucket] }?.targets(eventName: name, key: event.key) ?? []
        guard !matches.isEmpty else { return }
        let request = EventRequestInfo.current
        let now = Date().timeIntervalSince1970
        let rows = matches.map { match in
            (
                match.target,
                EventFormat.body(
                    event, ruleID: match.ruleID, region: settings.region, origin: settings.originEndpoint,
                    request: request)
            )
        }
        let ids = try await database.write { db in
            try rows.map { target, body in
                try db.cachedStatement(sql: "INSERT INTO event (target, body, created_at) VALUES (?, ?, ?)")
                    .execute(arguments: [target, body, now])
                return db.lastInsertedRowID
            }
        }
        let enqueuedAt = ContinuousClock.now
        var resumes: [(CheckedContinuation<Pending?, Never>, Pending)] = []
        var depths: [(String, Int)] = []
        state.withLock { s in
            for ((target, body), id) in zip(rows, ids) {
                let item = Pending(id: id, body: body, enqueuedAt: enqueuedAt)
                if !s.targets[target]!.waiters.isEmpty {
                    s.targets[target]!.inFlight += 1
                    resumes.append((s.targets[target]!.waiters.removeLast(), item))
                } else {
                    s.targets[target]!.queue.append(item)
                }
                depths.append((target, s.targets[target]!.count + s.targets[target]!.inFlight))
            }
        }
        for (continuation, item) in resumes { continuation.resume(returning: item) }
        for (target, depth) in depths { metrics.depth(target: target, depth) }
        metrics.queued.increment(by: Int64(rows.count))
    }

    // MARK: Delivery

    public func run() async throws {
        guard !settings.targets.isEmpty else {
            // Nothing to deliver; run until shutdown like every other service of the group.
            try? await gracefulShutdown()
            return
        }
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = settings.concurrency
        configuration.timeout.connect = .seconds(2)
        // No spans: with no tracer bootstrapped AsyncHTTPClient still made a no-op span per POST (1.3 % of the
        // store's CPU on 1 KB uploads).
        configuration.tracing.tracer = nil
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                for target in settings.targets {
                    for _ in 0..<settings.concurrency {
                        group.addTask { await self.send(to: target, client: client) }
                    }
                }
            }
        } onGracefulShutdown: {
            self.stop()
        }
        try? await client.shutdown()
        // Every delete of a delivered event on disk before returning.
        try? await database.flush()
    }

    private func stop() {
        let waiters = state.withLock { s -> [CheckedContinuation<Pending?, Never>] in
            s.stopping = true
            var all: [CheckedContinuation<Pending?, Never>] = []
            for id in s.targets.keys {
                all += s.targets[id]!.waiters
                s.targets[id]!.waiters = []
            }
            return all
        }
        for waiter in waiters { waiter.resume(returning: nil) }
    }

    /// The next events for `target`: the oldest waiting, and up to `limit` in all (and about
    /// ``maxBatchBytes``) when more are waiting. Waits when none is; nil once stopping.
    private func next(_ target: String, limit: Int) async -> [Pending]? {
        let item: Pending? = await withCheckedContinuation { continuation in
            let item = state.withLock { s -> Pending?? in
                if s.stopping { return .some(nil) }
                if let item = s.targets[target]!.popFirst() {
                    s.targets[target]!.inFlight += 1
                    return .some(item)
                }
                s.targets[target]!.waiters.append(continuation)
                return nil
            }
            if let item { continuation.resume(returning: item) }
        }
        guard let item else { return nil }
        guard limit > 1 else { return [item] }
        return state.withLock { s in
            var items = [item]
            var bytes = item.body.count
            while items.count < limit, bytes < Self.maxBatchBytes, let more = s.targets[target]!.popFirst() {
                s.targets[target]!.inFlight += 1
                items.append(more)
                bytes += more.body.count
            }
            return items
        }
    }

    /// A batch stops growing past this many bytes of events (about 800 small ones), well below what an
    /// endpoint accepts (the gateway takes 6 MB), so a batch is never too large to be delivered.
    static let maxBatchBytes = 1 << 20

    /// One sender: takes the next events, POSTs them until a 2xx, deletes them from the queue.
    private func send(to target: WebhookTarget, client: HTTPClient) async {
        while let items = await next(target.id, limit: target.batchSize) {
            let body = Self.body(of: items)
            var delay = settings.retryInitial
            var delivered = false
            while true {
                if let failure = await post(body, to: target, client: client) {
                    metrics.failures(target: target.id).increment()
                    let wasUp = state.withLock { s -> Bool in
                        defer { s.targets[target.id]!.up = false }
                        return s.targets[target.id]!.up
                    }
                    if wasUp {
                        metrics.up(target: target.id, false)
                        logger.warning(
                            "webhook target unreachable; events are kept and retried",
                            metadata: [
                                "cinescale.target": .string(target.id), "cinescale.error": .string(failure),
                            ])
                    }
                    if state.withLock({ $0.stopping }) { break }
                    try? await Task.sleep(for: delay)
                    delay = min(delay * 2, settings.retryMax)
                    if state.withLock({ $0.stopping }) { break }
                    continue
                }
                delivered = true
                break
            }
            if delivered {
                let ids = items.map(\.id)
                // Not fsync'd: after a power cut the events may be delivered again, and the gateway dedupes them.
                database.submit(durable: false) { db in
                    let delete = try db.cachedStatement(sql: "DELETE FROM event WHERE id = ?")
                    for id in ids { try delete.execute(arguments: [id]) }
                }
                let now = ContinuousClock.now
                for item in items { metrics.delivered(target: target.id, latency: now - item.enqueuedAt) }
            }
            let (depth, recovered) = state.withLock { s -> (Int, Bool) in
                s.targets[target.id]!.inFlight -= items.count
                if !delivered {
                    for item in items.reversed() { s.targets[target.id]!.pushFront(item) }
                }
                let recovered = delivered && !s.targets[target.id]!.up
                if delivered { s.targets[target.id]!.up = true }
                return (s.targets[target.id]!.count + s.targets[target.id]!.inFlight, recovered)
            }
            metrics.depth(target: target.id, depth)
            if recovered {
                metrics.up(target: target.id, true)
                logger.info(
                    "webhook target reachable again; delivering queued events",
                    metadata: [
                        "cinescale.target": .string(target.id), "cinescale.pending": .stringConvertible(depth),
                    ])
            }
        }
    }

    /// One event's body as stored (MinIO's format); several events' records in one `{"Records":[…]}` body.
    static func body(of items: [Pending]) -> ByteBuffer {
        guard items.count > 1 else { return ByteBuffer(bytes: items[0].body) }
        var buffer = ByteBuffer()
        buffer.reserveCapacity(items.reduce(16) { $0 + $1.body.count })
        buffer.writeString(#"{"Records":["#)
        var first = true
        for item in items {
            let bytes = Array(item.body)
            // Each stored body holds exactly one record; written by EventFormat, so it always parses.
            for range in JSONText.arrayElements(ofTopLevelKey: "Records", in: bytes) ?? [] {
                if !first { buffer.writeInteger(UInt8(ascii: ",")) }
                first = false
                buffer.writeBytes(bytes[range])
            }
        }
        buffer.writeString("]}")
        return buffer
    }

    /// nil on a 2xx, else why not.
    private func post(_ body: ByteBuffer, to target: WebhookTarget, client: HTTPClient) async -> String? {
        var request = HTTPClientRequest(url: target.endpoint.absoluteString)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "CineScale (notification)")
        if let token = target.authToken { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        request.body = .bytes(body)
        do {
            let (seconds, attoseconds) = settings.timeout.components
            let response = try await client.execute(
                request, timeout: .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000))
            _ = try? await response.body.collect(upTo: 1 << 20)
            guard (200..<300).contains(response.status.code) else { return "HTTP \(response.status.code)" }
            return nil
        } catch {
            return "\(error)"
        }
    }
}

/// The store's notification instruments.
struct NotificationMetrics: Sendable {
    let queued: CoreMetrics.Counter
    let refused: CoreMetrics.Counter
    private let depths: [String: CoreMetrics.Gauge]
    private let deliveredCounters: [String: CoreMetrics.Counter]
    private let failureCounters: [String: CoreMetrics.Counter]
    private let latencies: [String: CoreMetrics.Timer]
    private let ups: [String: CoreMetrics.Gauge]

    init(targets: [String], limit: Int, registry: PrometheusCollectorRegistry) {
        let factory = PrometheusMetricsFactory(registry: registry)
        queued = CoreMetrics.Counter(label: "cinescale_store_notifications_queued_total", factory: factory)
        refused = CoreMetrics.Counter(
            label: "cinescale_store_requests_refused_total", dimensions: [("reason", "notification_queue_full")],
            factory: factory)
        CoreMetrics.Gauge(label: "cinescale_store_notification_queue_limit", factory: factory).record(limit)
        var depths: [String: CoreMetrics.Gauge] = [:]
        var delivered: [String: CoreMetrics.Counter] = [:]
        var failures: [String: CoreMetrics.Counter] = [:]
        var latencies: [String: CoreMetrics.Timer] = [:]
        var ups: [String: CoreMetrics.Gauge] = [:]
        for target in targets {
            let dims = [("target", target)]
            depths[target] = CoreMetrics.Gauge(
                label: "cinescale_store_notification_queue_depth", dimensions: dims, factory: factory)
            delivered[target] = CoreMetrics.Counter(
                label: "cinescale_store_notifications_delivered_total", dimensions: dims, factory: factory)
            failures[target] = CoreMetrics.Counter(
                label: "cinescale_store_notification_failures_total", dimensions: dims, factory: factory)
            latencies[target] = CoreMetrics.Timer(
                label: "cinescale_store_notification_delivery_seconds", dimensions: dims, factory: factory)
            ups[target] = CoreMetrics.Gauge(
                label: "cinescale_store_notification_target_up", dimensions: dims, factory: factory)
            ups[target]!.record(1)
        }
        self.depths = depths
        deliveredCounters = delivered
        failureCounters = failures
        self.latencies = latencies
        self.ups = ups
    }

    func depth(target: String, _ value: Int) { depths[target]?.record(value) }
    func failures(target: String) -> CoreMetrics.Counter { failureCounters[target]! }
    func up(target: String, _ up: Bool) { ups[target]?.record(up ? 1 : 0) }

    func delivered(target: String, latency: Duration) {
        deliveredCounters[target]?.increment()
        let (s, atto) = latency.components
        latencies[target]?.recordNanoseconds(s * 1_000_000_000 + atto / 1_000_000_000)
    }
}
