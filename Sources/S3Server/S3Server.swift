import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ObjectStore
import StoreNotifications

/// The embedded S3-compatible server: an `ObjectStore` behind the S3 REST API.
public enum S3Server {
    /// Builds the HTTP application (a `Service`) serving `store` on `host:port`.
    /// `onRunning` receives the bound port (useful with port 0). `users`: a directory the caller keeps to replace
    /// the users while the store runs (else one made from `configuration.users`).
    public static func makeApplication(
        store: ObjectStore,
        configuration: S3ServerConfiguration,
        host: String = "127.0.0.1",
        port: Int = 9000,
        logger: Logger,
        notifier: EventNotifier? = nil,
        metrics: (@Sendable () -> [UInt8])? = nil,
        users: StoreUsers? = nil,
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in }
    ) -> some ApplicationProtocol {
        let responder = S3Responder(
            store: store, configuration: configuration, logger: logger, notifier: notifier, metrics: metrics,
            users: users)
        return Application(
            responder: responder,
            server: .http1(
                configuration: .init(
                    additionalChannelHandlers: [ExpectContinueHandler()],
                    idleTimeout: .seconds(300))),
            configuration: .init(address: .hostname(host, port: port), serverName: nil),
            onServerRunning: { channel in
                await onRunning(channel.localAddress?.port ?? port)
            },
            logger: logger)
    }
}
