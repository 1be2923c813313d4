import APIKeys
import ArgumentParser
import Crypto
import Foundation
import Gateway
import Logging
import S3Server
import ServiceLifecycle
import SigV4
import StoreNotifications
import VideoContract
import WireFormat

/// `cinescale dev`: the whole pipeline in one process, data under one directory — the embedded store with
/// the `ingest` and `media` buckets and their notification rules, the gateway supervising the `probe` and
/// `transcode` function processes, the product API and the web page.
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run the store, the gateway, the media functions and the product API in one process.")

    @Option(help: "Data directory: the store under store/, the queue under gateway/, scratch under work/.")
    var dataDir: String = "./.data/dev"

    @Option(help: "Address to bind both servers.")
    var host: String = "127.0.0.1"

    @Option(help: "Port of the API, the web page and the gateway (0 picks a free port).")
    var port: Int = 8080

    @Option(help: "Port of the embedded S3 store (0 picks a free port).")
    var storePort: Int = 9000

    @Option(
        help:
            "The store's URL as clients (browsers, players) reach it, for presigned URLs (default: http://HOST:STORE-PORT)."
    )
    var publicStoreURL: String?

    @Option(help: "Directory of the probe and transcode executables (default: next to this one).")
    var functionsDir: String?

    @Option(help: "Ladder heights, comma-separated.")
    var ladder: String = "240,360,720,1080"

    @Option(help: "libx264 preset for the ladder.")
    var x264Preset: String = "veryfast"

    @Option(help: "Transcode workers for chunks after the first (each uses every core); one more runs first chunks.")
    var transcoders: Int = 1

    @Option(
        help:
            "Cut each video into chunks of about this many seconds, one invocation each (0: one invocation per video).")
    var chunkSeconds: Double = 32

    @OptionGroup var apiOptions: APIOptions

    @Option(help: "Write {\"api\": URL, \"store\": URL} to this file once both servers listen.")
    var readyFile: String?

    @OptionGroup var credentialOptions: CredentialOptions

    @OptionGroup var processOptions: ProcessOptions

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let logger = processOptions.makeLogger(label: "cinescale.dev")
        let credentials = credentialOptions.credentials(environment: environment)
        let region = credentialOptions.resolvedRegion(environment: environment)
        let root = URL(fileURLWithPath: dataDir).standardizedFileURL.path
        for directory in ["store", "gateway", "work"] {
            try FileManager.default.createDirectory(atPath: "\(root)/\(directory)", withIntermediateDirectories: true)
        }
        let apiPort = port == 0 ? try FreePort.pick(host: host) : port
        let storePort = storePort == 0 ? try FreePort.pick(host: host) : storePort
        let storeURL = "http://\(host):\(storePort)"
        let apiURL = "http://\(host):\(apiPort)"
        let publicStore = publicStoreURL ?? storeURL
        // The webhook token: stable per data directory, never printed.
        let token = Hex.encode(
            SHA256.hash(data: Array("cinescale-dev-events\n\(credentials.secretAccessKey)\n\(root)".utf8)))

        // The store, its buckets, and the rules that turn uploads and metadata.json into events.
        // The gateway reads every record of a body, so a backlog (the gateway restarting) goes out in batches.
        let target = WebhookTarget(
            id: "gateway", endpoint: URL(string: "\(apiURL)/events")!, authToken: token, batchSize: 64)
        let started = StartupSignal()
        // Least privilege: the operator's key administers the store; the functions' key reads uploads and writes
        // media only, the API's reads and writes the two buckets. Both derive from the operator's secret, so
        // they stay the same across restarts and a new secret changes them.
        let functionsCredentials = Self.derivedCredentials("functions", from: credentials)
        let apiCredentials = Self.derivedCredentials("api", from: credentials)
        var server = S3ServerConfiguration(
            credentials: [], region: region, cors: CORSConfiguration(allowedOrigins: ["*"]))
        server.users = [
            StoreUser.administrator(credentials),
            StoreUser(
                name: "functions", accessKey: functionsCredentials.accessKeyId,
                secretKey: functionsCredentials.secretAccessKey,
                buckets: [apiOptions.ingestBucket: .read, apiOptions.mediaBucket: .readwrite]),
            StoreUser(
                name: "api", accessKey: apiCredentials.accessKeyId, secretKey: apiCredentials.secretAccessKey,
                buckets: [apiOptions.ingestBucket: .readwrite, apiOptions.mediaBucket: .readwrite]),
        ]
        let store = try await EmbeddedStore(
            settings: EmbeddedStore.Settings(
                dataDirectory: "\(root)/store", host: host, port: storePort,
                server: server,
                fsync: true, targets: [target], maxQueued: 100_000,
                createBuckets: [apiOptions.ingestBucket, apiOptions.mediaBucket]),
            logger: logger, onRunning: { _ in await started.signal("store") })
        try await store.notifier.setConfiguration(
            BucketNotificationConfiguration(queues: [
                QueueRule(id: "probe-uploads", arn: target.arn, events: ["s3:ObjectCreated:*"], prefix: "uploads/")
            ]), for: apiOptions.ingestBucket)
        // metadata.json → plan (or the whole transcode); a chunk's job object → that chunk; finish.json → finish.
        let mediaRules: [(String, String)] = [
            ("transcode-metadata", "/metadata.json"), ("transcode-lead", ChunkKeys.leadSuffix),
            ("transcode-chunk", ChunkKeys.chunkSuffix), ("transcode-finish", ChunkKeys.finishSuffix),
            // No function's: for the API's webhooks (video.playable, video.ready, video.failed).
            ("webhooks-status", "/status.json"), ("webhooks-playable", "/chunks/00000.json"),
        ]
        try await store.notifier.setConfiguration(
            BucketNotificationConfiguration(
                queues: mediaRules.map { id, suffix in
                    QueueRule(id: id, arn: target.arn, events: ["s3:ObjectCreated:*"], suffix: suffix)
                }), for: apiOptions.mediaBucket)

        // The gateway with the two functions, and the product API on the same port.
        let functions = functionsDir ?? Self.executableDirectory()
        for name in ["probe", "transcode"] where !FileManager.default.isExecutableFile(atPath: "\(functions)/\(name)") {
            throw ValidationError(
                "no \(name) executable in \(functions) (build it: swift build --product \(name), or pass --functions-dir)"
            )
        }
        let functionEnvironment: [String: String] = [
            "AWS_ACCESS_KEY_ID": functionsCredentials.accessKeyId,
            "AWS_SECRET_ACCESS_KEY": functionsCredentials.secretAccessKey,
            "AWS_REGION": region, "CINESCALE_S3_ENDPOINT": storeURL, "MEDIA_BUCKET": apiOptions.mediaBucket,
        ]
        var transcodeEnvironment = functionEnvironment.merging(
            ["LADDER": ladder, "X264_PRESET": x264Preset, "WORK_DIR": "\(root)/work"]) { $1 }
        if chunkSeconds > 0 {
            transcodeEnvironment["CHUNK_SECONDS"] = String(chunkSeconds)
            // Each video keeps one chunk per bulk worker (and one more) queued, so videos interleave.
            transcodeEnvironment["CHUNK_WINDOW"] = String(max(1, transcoders) + 1)
        }
        // The gateway's configuration, built as the typed struct a gateway file decodes to.
        let functionPath = URL(fileURLWithPath: functions).standardizedFileURL.path
        func function(
            _ name: String, _ executable: String, timeout: Int, concurrency: Int, environment: [String: String],
            maxAttempts: Int, nice: Int, idle: Bool = false
        ) -> FunctionConfiguration {
            FunctionConfiguration(
                name: name, command: ["\(functionPath)/\(executable)"], environment: environment,
                timeout: .seconds(timeout), concurrency: concurrency, workingDirectory: root,
                retry: RetryPolicy(maxAttempts: maxAttempts), nice: nice, idle: idle)
        }
        let gatewayConfiguration = GatewayConfiguration(
            functions: [
                function(
                    "probe", "probe", timeout: 120, concurrency: 2, environment: functionEnvironment,
                    maxAttempts: 3, nice: 5),
                // Plans and finishes (or, unchunked, whole videos). Every idle core, after the store, the gateway
                // and the API.
                function(
                    "transcode", "transcode", timeout: 3600, concurrency: max(2, transcoders),
                    environment: transcodeEnvironment, maxAttempts: 2, nice: 10),
                // Each video's first chunk on a worker of its own, at the priority of the servers, and the bulk
                // chunks under SCHED_IDLE (only on CPU time nothing else wants): a new upload becomes playable
                // while a long video's chunks keep both cores busy. Against nice-19 bulk chunks a 2 s lead
                // still took three times as long as alone (EEVDF lets each nice-19 thread finish its slice
                // before the lead's woken threads run); see FunctionConfiguration.idle.
                function(
                    "transcode-lead", "transcode", timeout: 900, concurrency: 1, environment: transcodeEnvironment,
                    maxAttempts: 3, nice: 0),
                function(
                    "transcode-chunk", "transcode", timeout: 900, concurrency: max(1, transcoders),
                    environment: transcodeEnvironment, maxAttempts: 3, nice: 19, idle: true),
            ],
            region: region, host: host, port: apiPort, credentials: [credentials], inheritedEnvironment: environment,
            triggers: [
                TriggerRule(function: "probe", bucket: apiOptions.ingestBucket, prefix: "uploads/"),
                TriggerRule(function: "transcode", bucket: apiOptions.mediaBucket, suffix: "/metadata.json"),
                TriggerRule(function: "transcode-lead", bucket: apiOptions.mediaBucket, suffix: ChunkKeys.leadSuffix),
                TriggerRule(function: "transcode-chunk", bucket: apiOptions.mediaBucket, suffix: ChunkKeys.chunkSuffix),
                TriggerRule(function: "transcode", bucket: apiOptions.mediaBucket, suffix: ChunkKeys.finishSuffix),
            ],
            eventToken: token, queue: QueueConfiguration(path: "\(root)/gateway/queue.sqlite"))
        try gatewayConfiguration.validate()

        // The API's keys beside the queue; the dev tenant's admin key is kept in the data directory (mode 0600),
        // so it stays the same across restarts (the web page remembers it), and made anew if it was revoked.
        let keys = try SQLiteAPIKeyStore(path: "\(root)/gateway/queue.sqlite")
        let apiKey = try await Self.devKey(keys, file: "\(root)/gateway/dev-api-key", logger: logger)
        let api = try apiOptions.makeAPI(
            store: storeURL, publicStore: publicStore, region: region, credentials: apiCredentials, keys: keys,
            signingSecret: credentials.secretAccessKey, logger: logger)
        let parts = try GatewayQueue.open(gatewayConfiguration, logger: logger)
        let gateway = try GatewayService(
            configuration: gatewayConfiguration, invocationQueue: parts.queue, logger: logger,
            additionalRoutes: { router in api.addRoutes(to: router) },
            eventObserver: { body in try await api.observeStoreEvents(body) })

        let group = ServiceGroup(
            configuration: .init(
                services: [parts.service].compactMap { $0 } + store.services + gateway.services
                    + [api.makeWebhookSender(), api.makeUploadJanitor()],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        let readyFile = self.readyFile
        let portFile = processOptions.portFile
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            tasks.addTask {
                await started.wait("store")
                _ = try await gateway.listeningPort()
                logger.notice(
                    "CineScale is running",
                    metadata: [
                        "cinescale.api": .string(apiURL), "cinescale.store": .string(storeURL),
                        "cinescale.data": .string(root),
                        "cinescale.tenant": .string(Self.devTenant), "cinescale.api.key": .string(apiKey),
                    ])
                try ProcessOptions.announce(port: apiPort, to: portFile)
                if let readyFile {
                    let ready = ["api": apiURL, "store": storeURL, "apiKey": apiKey, "tenant": Self.devTenant]
                    let data = try JSONSerialization.data(
                        withJSONObject: ready, options: [.sortedKeys, .withoutEscapingSlashes])
                    try data.write(to: URL(fileURLWithPath: readyFile), options: .atomic)
                }
            }
            try await tasks.waitForAll()
        }
    }

    static let devTenant = "dev"

    /// The dev tenant's admin token: the one in `file` while it still authenticates, else a new one.
    static func devKey(_ keys: any APIKeyStore, file: String, logger: Logger) async throws -> String {
        if let data = FileManager.default.contents(atPath: file) {
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if let key = try await keys.authenticate(token: token), key.tenant == devTenant, key.allows(.admin) {
                return token
            }
        }
        let created = try await keys.create(tenant: devTenant, name: "cinescale dev", scopes: [.admin])
        guard
            FileManager.default.createFile(
                atPath: file + ".tmp", contents: Data(created.token.utf8), attributes: [.posixPermissions: 0o600]),
            rename(file + ".tmp", file) == 0
        else { throw ValidationError("cannot write \(file)") }
        logger.info("created the dev tenant's admin key", metadata: ["cinescale.key": .string(created.key.id)])
        return created.token
    }

    static func executableDirectory() -> String {
        let path =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: path).deletingLastPathComponent().path
    }

    /// A key pair of the store for one part of the pipeline (`cinescale-functions`), its secret an HMAC of the
    /// operator's secret and the part's name.
    static func derivedCredentials(_ part: String, from operatorCredentials: Credentials) -> Credentials {
        let key = SymmetricKey(data: Array(operatorCredentials.secretAccessKey.utf8))
        let secret = Hex.encode(
            HMAC<SHA256>.authenticationCode(for: Array("cinescale-dev-store-user\n\(part)".utf8), using: key))
        return Credentials(accessKeyId: "cinescale-\(part)", secretAccessKey: String(secret.prefix(40)))
    }

}

/// Waits for named start-up events (a server listening) across tasks.
actor StartupSignal {
    private var seen: Set<String> = []
    private var waiting: [String: [CheckedContinuation<Void, Never>]] = [:]

    func signal(_ name: String) {
        seen.insert(name)
        for continuation in waiting.removeValue(forKey: name) ?? [] { continuation.resume() }
    }

    func wait(_ name: String) async {
        if seen.contains(name) { return }
        await withCheckedContinuation { waiting[name, default: []].append($0) }
    }
}

/// A port nobody listens on right now (bound and released), for servers that must know each other's
/// address before they start.
enum FreePort {
    static func pick(host: String) throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("cannot open a socket to pick a port") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr(host)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw ValidationError("cannot bind \(host) to pick a port") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
