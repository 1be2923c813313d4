import Foundation
import Hummingbird
import Logging
import ObjectStore
import Prometheus
import S3Server
import ServiceLifecycle
import SigV4
import StoreNotifications

/// The embedded store's parts, assembled once for `cinescale store` and `cinescale dev`: the filesystem
/// store, its notifier (durable webhook queue) and the S3 HTTP application, as services for one group.
struct EmbeddedStore {
    struct Settings {
        var dataDirectory: String
        var host: String
        var port: Int
        var server: S3ServerConfiguration
        var fsync: Bool
        var targets: [WebhookTarget]
        var maxQueued: Int
        var createBuckets: [String]
        var freeSpaceFloor: FreeSpaceFloor = .standard
    }

    let store: ObjectStore
    let notifier: EventNotifier
    /// The store's users, replaceable while it runs.
    let users: StoreUsers
    let services: [any Service]

    init(settings: Settings, logger: Logger, onRunning: @escaping @Sendable (Int) async -> Void) async throws {
        let registry = PrometheusCollectorRegistry()
        let notifier = try EventNotifier(
            settings: NotificationSettings(
                targets: settings.targets, queuePath: settings.dataDirectory + "/notifications/queue.sqlite",
                maxQueued: settings.maxQueued),
            registry: registry, logger: logger)
        let store = try await ObjectStore(
            configuration: ObjectStoreConfiguration(
                root: settings.dataDirectory, fsync: settings.fsync, freeSpaceFloor: settings.freeSpaceFloor),
            logger: logger,
            observer: { event in try await notifier.record(event) })
        for bucket in settings.createBuckets where !bucket.isEmpty {
            do {
                _ = try await store.createBucket(bucket)
            } catch let error as ObjectStoreError where error.code == .bucketAlreadyOwnedByYou {}
        }
        let users = StoreUsers(settings.server.users)
        let space = SpaceMetrics(registry: registry)
        let app = S3Server.makeApplication(
            store: store, configuration: settings.server, host: settings.host, port: settings.port, logger: logger,
            notifier: notifier,
            metrics: {
                space.update(try? store.spaceStatus())
                return registry.emitToBuffer()
            },
            users: users, onRunning: onRunning)
        self.store = store
        self.notifier = notifier
        self.users = users
        services = [app, notifier]
    }
}

/// The store's disk in `/metrics`, read at each scrape: free and total bytes, the floor kept free, and the
/// writes refused for want of space.
struct SpaceMetrics: Sendable {
    let available: Gauge
    let capacity: Gauge
    let floor: Gauge
    let refused: Gauge

    init(registry: PrometheusCollectorRegistry) {
        func gauge(_ name: String, _ unit: String, _ help: String) -> Gauge {
            registry.makeGauge(
                descriptor: MetricNameDescriptor(
                    namespace: "cinescale", subsystem: "store", metricName: name, unitName: unit, helpText: help))
        }
        available = gauge("free", "bytes", "Bytes the store may still write on its disk.")
        capacity = gauge("disk", "bytes", "Size of the store's file system.")
        floor = gauge("free_floor", "bytes", "Free bytes the store keeps: writes past it get 507 StorageFull.")
        refused = gauge(
            "storage_full_refusals", "total",
            "Writes refused with 507 StorageFull (the disk full, or the free-space floor reached) since start-up.")
    }

    func update(_ status: ObjectStore.SpaceStatus?) {
        guard let status else { return }
        available.set(Double(status.available))
        capacity.set(Double(status.capacity))
        floor.set(Double(status.floor))
        refused.set(Double(status.refusedWrites))
    }
}
