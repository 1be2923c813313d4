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
    }

    let store: ObjectStore
    let notifier: EventNotifier
    let services: [any Service]

    init(settings: Settings, logger: Logger, onRunning: @escaping @Sendable (Int) async -> Void) async throws {
        let registry = PrometheusCollectorRegistry()
        let notifier = try EventNotifier(
            settings: NotificationSettings(
                targets: settings.targets, queuePath: settings.dataDirectory + "/notifications/queue.sqlite",
                maxQueued: settings.maxQueued),
            registry: registry, logger: logger)
        let store = try await ObjectStore(
            configuration: ObjectStoreConfiguration(root: settings.dataDirectory, fsync: settings.fsync), logger: logger,
            observer: { event in try await notifier.record(event) })
        for bucket in settings.createBuckets where !bucket.isEmpty {
            do {
                _ = try await store.createBucket(bucket)
            } catch let error as ObjectStoreError where error.code == .bucketAlreadyOwnedByYou {}
        }
        let app = S3Server.makeApplication(
            store: store, configuration: settings.server, host: settings.host, port: settings.port, logger: logger,
            notifier: notifier, metrics: { registry.emitToBuffer() }, onRunning: onRunning)
        self.store = store
        self.notifier = notifier
        services = [app, notifier]
    }
}
