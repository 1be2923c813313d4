import ArgumentParser
import Foundation
import Logging
import ObjectStore
import S3Server
import ServiceLifecycle
import SigV4
import StoreNotifications
import UnixSignals
import Yams

/// `cinescale store`: serves the embedded S3-compatible store.
struct StoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store", abstract: "Serve the embedded S3-compatible object store.")

    @Option(help: "Data directory (env CINESCALE_DATA_DIR).")
    var dataDir: String?

    @Option(help: "Address to bind.")
    var host: String = "127.0.0.1"

    @Option(help: "Port to listen on (0 picks a free port).")
    var port: Int = 9000

    @OptionGroup var credentialOptions: CredentialOptions

    @Option(
        help: """
            A YAML file of users, each {name, accessKey, secretKey} with admin: true, createBuckets: true and/or \
            buckets: {NAME: read|write|readwrite}; replaces --access-key/--secret-key. Re-read on SIGHUP.
            """)
    var users: String?

    @Option(
        help: """
            Free space the store keeps on its disk: writes that would leave less are refused with 507 StorageFull. \
            Bytes (512MiB, 2GB) or a share of the disk (1%). Default: 256MiB or 1%, whichever is smaller.
            """)
    var minFreeSpace: String?

    @Option(help: "Origins allowed by CORS, comma-separated ('*' for any, 'none' to disable).")
    var corsOrigins: String = "*"

    @Option(name: .customLong("public-read-bucket"), help: "A bucket readable without authentication (repeatable).")
    var publicReadBuckets: [String] = []

    @Option(help: "Domain for virtual-host-style addressing (Host: <bucket>.<domain>).")
    var virtualHostDomain: String?

    @Option(help: "Create these buckets at start-up if missing (comma-separated).")
    var createBuckets: String?

    @Flag(help: "Skip fsync (faster, not crash-safe). For scratch data only.")
    var noFsync = false

    @Option(
        name: .customLong("notify-webhook"),
        help:
            "A webhook target for bucket notifications, ID=URL (repeatable); rules name it as arn:minio:sqs::ID:webhook."
    )
    var notifyWebhooks: [String] = []

    @Option(help: "Bearer token sent to the webhook targets (env CINESCALE_NOTIFY_TOKEN).")
    var notifyToken: String?

    @Option(help: "Undelivered events past which writes to buckets with notification rules get 503 SlowDown.")
    var notifyQueueLimit: Int = 100_000

    @Option(
        help: """
            Most events per webhook POST. 1 sends MinIO's body, one event per POST; more lets a backlog go out \
            as {"Records":[…]} bodies of up to this many records (for targets that read them all, like the gateway).
            """)
    var notifyBatchSize: Int = 1

    @OptionGroup var processOptions: ProcessOptions

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let logger = processOptions.makeLogger(label: "cinescale.store")
        let dataDirectory = dataDir ?? environment["CINESCALE_DATA_DIR"] ?? "./.data/store"
        let credentials = credentialOptions.credentials(environment: environment)
        var storeUsers = [StoreUser.administrator(credentials)]
        if let users {
            guard credentialOptions.accessKey == nil, credentialOptions.secretKey == nil else {
                throw ValidationError("--users replaces --access-key/--secret-key: give one or the other")
            }
            storeUsers = try StoreUsersFile.load(users)
        } else if credentials.accessKeyId == CredentialOptions.defaultAccessKey
            && credentials.secretAccessKey == CredentialOptions.defaultSecretKey
        {
            logger.warning(
                "using the default development credentials; set CINESCALE_ACCESS_KEY and CINESCALE_SECRET_KEY")
        }
        var floor = FreeSpaceFloor.standard
        if let minFreeSpace {
            guard let parsed = FreeSpaceFloor.parse(minFreeSpace) else {
                throw ValidationError(
                    "--min-free-space: '\(minFreeSpace)' is not a size (512MiB, 2GB, 1048576) or a percentage (1%)")
            }
            floor = parsed
        }
        let cors: CORSConfiguration =
            corsOrigins == "none"
            ? .disabled
            : CORSConfiguration(
                allowedOrigins: corsOrigins.split(separator: ",").map {
                    String($0).trimmingCharacters(in: .whitespaces)
                })
        var serverConfiguration = S3ServerConfiguration(
            credentials: [credentials], region: credentialOptions.resolvedRegion(environment: environment),
            publicReadBuckets: Set(publicReadBuckets), cors: cors, virtualHostDomain: virtualHostDomain)
        serverConfiguration.users = storeUsers

        guard notifyQueueLimit >= 1 else { throw ValidationError("--notify-queue-limit must be at least 1") }
        guard (1...1000).contains(notifyBatchSize) else {
            throw ValidationError("--notify-batch-size must be 1 to 1000")
        }
        let token = notifyToken ?? environment["CINESCALE_NOTIFY_TOKEN"]
        var targets: [WebhookTarget] = []
        for text in notifyWebhooks {
            do {
                targets.append(
                    try WebhookTarget.parse(
                        text, token: token.flatMap { $0.isEmpty ? nil : $0 }, batchSize: notifyBatchSize))
            } catch {
                throw ValidationError("--notify-webhook: \(error.message)")
            }
        }
        guard Set(targets.map(\.id)).count == targets.count else {
            throw ValidationError("--notify-webhook: two targets have the same ID")
        }
        let portFile = processOptions.portFile
        let host = self.host
        let embedded = try await EmbeddedStore(
            settings: EmbeddedStore.Settings(
                dataDirectory: dataDirectory, host: host, port: port, server: serverConfiguration, fsync: !noFsync,
                targets: targets, maxQueued: notifyQueueLimit,
                createBuckets: (createBuckets ?? "").split(separator: ",").map(String.init), freeSpaceFloor: floor),
            logger: logger,
            onRunning: { port in
                logger.info(
                    "store listening",
                    metadata: [
                        "cinescale.endpoint": .string("http://\(host):\(port)"),
                        "cinescale.data": .string(dataDirectory),
                    ])
                do {
                    try ProcessOptions.announce(port: port, to: portFile)
                } catch {
                    logger.error("cannot write the port file", metadata: ["cinescale.error": .string("\(error)")])
                }
            })
        var services = embedded.services
        if let users {
            services.append(StoreUsersFile.Reloader(path: users, directory: embedded.users, logger: logger))
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// `--users FILE`: the store's users as YAML (a list of ``StoreUser``), read at start-up and on SIGHUP.
enum StoreUsersFile {
    static func load(_ path: String) throws -> [StoreUser] {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ValidationError("--users \(path): cannot read the file (\(error.localizedDescription))")
        }
        let users: [StoreUser]
        do {
            users = try YAMLDecoder().decode([StoreUser].self, from: text)
        } catch let DecodingError.keyNotFound(key, context) {
            throw ValidationError("--users \(path): \(describe(context.codingPath + [key])): missing")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
            let DecodingError.dataCorrupted(context)
        {
            throw ValidationError("--users \(path): \(describe(context.codingPath)): \(context.debugDescription)")
        } catch {
            throw ValidationError("--users \(path): not a YAML list of users (\(error))")
        }
        if let problem = StoreUser.problem(in: users) { throw ValidationError("--users \(path): \(problem)") }
        return users
    }

    /// `users[2].buckets.media` from a decoding path.
    static func describe(_ path: [any CodingKey]) -> String {
        var text = "users"
        for key in path {
            if let index = key.intValue { text += "[\(index)]" } else { text += "." + key.stringValue }
        }
        return text
    }

    /// Re-reads the users on SIGHUP. A file that no longer reads keeps the users in force (and says why).
    struct Reloader: Service {
        let path: String
        let directory: StoreUsers
        let logger: Logger

        func run() async throws {
            for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
                do {
                    let users = try StoreUsersFile.load(path)
                    directory.replace(with: users)
                    logger.notice(
                        "reloaded the store's users", metadata: ["cinescale.users": .stringConvertible(users.count)])
                } catch {
                    logger.error(
                        "could not reload the store's users; the previous ones stay in force",
                        metadata: ["cinescale.error": .string("\(error)")])
                }
            }
        }
    }
}
