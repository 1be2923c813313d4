import ArgumentParser
import EventSources
import Foundation
import Gateway
import Logging
import NIOCore
import ProductAPI
import ServiceLifecycle

/// `cinescale gateway`: runs the invocation gateway — function workers over the Lambda Runtime API and
/// the Lambda Invoke API for clients.
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract:
            "Run the invocation gateway: supervise function workers, serve the Lambda Invoke API (and, with --api-store, the product API)."
    )

    @Option(help: "Functions file (YAML): executables, environment, timeout, concurrency, limits.")
    var config: String

    @Option(help: "Address to bind the Invoke API.")
    var host: String = "127.0.0.1"

    @Option(help: "Port of the Invoke API (0 picks a free port).")
    var port: Int = 9001

    @Option(
        help:
            "Data directory; the invocation queue is <data-dir>/queue.sqlite unless the file sets queue.path (env CINESCALE_GATEWAY_DATA_DIR)."
    )
    var dataDir: String?

    @Option(
        help:
            "Bearer token the event webhook (POST /events) requires (env CINESCALE_EVENT_TOKEN; overrides events.token)."
    )
    var eventToken: String?

    @Option(
        help:
            "Serve the product API and web page over this S3 endpoint (the store the functions use; env CINESCALE_API_STORE)."
    )
    var apiStore: String?

    @Option(help: "The store's URL as clients reach it, for presigned URLs (default: --api-store).")
    var apiPublicStore: String?

    @OptionGroup var apiOptions: APIOptions

    @Flag(help: "Check the functions file (and the ${NAME} variables it passes on), print what it declares, and exit.")
    var check = false

    @OptionGroup var credentialOptions: CredentialOptions

    @OptionGroup var processOptions: ProcessOptions

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let logger = processOptions.makeLogger(label: "cinescale.gateway")
        let yaml: String
        do {
            yaml = try String(contentsOfFile: config, encoding: .utf8)
        } catch {
            throw ValidationError("cannot read \(config): \(error.localizedDescription)")
        }
        let baseDirectory = URL(fileURLWithPath: config).deletingLastPathComponent().path
        // One file, two parts: the gateway core's and the event sources' (`sources:`).
        let file = try ConfigurationFile(yaml: yaml, baseDirectory: baseDirectory, environment: environment)
        var configuration = try file.decode(GatewayConfiguration.self)
        let sources = try file.decode(EventSourcesConfiguration.self)
        if check {
            try configuration.validate()
            try sources.validate()
            for function in configuration.functions {
                print(
                    "function \(function.name): \(function.command.joined(separator: " ")) (concurrency \(function.concurrency), variables \(function.environment.keys.sorted().joined(separator: ",")))"
                )
            }
            for trigger in configuration.triggers {
                print("trigger \(trigger.bucket) \(trigger.prefix)*\(trigger.suffix) → \(trigger.function)")
            }
            for source in sources.sqs {
                print(
                    "source sqs \(source.queueURL) (region \(source.region), endpoint \(source.endpoint.absoluteString), visibility \(source.visibilityTimeout) s, maxInFlight \(source.maxInFlight))"
                )
            }
            for source in sources.poll {
                print(
                    "source poll \(source.endpoint.absoluteString) bucket \(source.bucket)\(source.prefix.isEmpty ? "" : " prefix \(source.prefix)") every \(source.interval) (region \(source.region), startFrom \(source.startFrom.rawValue))"
                )
            }
            return
        }
        configuration.host = host
        configuration.port = port
        configuration.region = credentialOptions.region ?? environment["CINESCALE_REGION"] ?? configuration.region
        configuration.credentials = [credentialOptions.credentials(environment: environment)]
        if let token = eventToken ?? environment["CINESCALE_EVENT_TOKEN"], !token.isEmpty {
            configuration.eventToken = token
        }
        if configuration.queue.path == nil {
            let directory = dataDir ?? environment["CINESCALE_GATEWAY_DATA_DIR"] ?? "./.data/gateway"
            configuration.queue.path = URL(fileURLWithPath: directory).appendingPathComponent("queue.sqlite").path
        }

        let store = (apiStore ?? environment["CINESCALE_API_STORE"]).flatMap { $0.isEmpty ? nil : $0 }
        // The API's keys live beside the queue (its SQLite file or the shared PostgreSQL database).
        var keyService: (any Service)?
        let api = try store.map { store in
            let keys = try KeyStores.open(configuration.queue, logger: logger)
            keyService = keys.service
            return try apiOptions.makeAPI(
                store: store, publicStore: apiPublicStore ?? store, region: configuration.region,
                credentials: configuration.credentials[0], keys: keys.store, logger: logger)
        }
        var observer: (@Sendable (ByteBuffer) async throws -> Void)?
        if let api { observer = { body in try await api.observeStoreEvents(body) } }
        let parts = try GatewayQueue.open(configuration, sources: sources, logger: logger)
        let gateway = try GatewayService(
            configuration: configuration, invocationQueue: parts.queue, logger: logger,
            additionalRoutes: { router in api?.addRoutes(to: router) }, eventObserver: observer)
        // The SQS and poll sources, over the gateway's event sink; run among its parts.
        let eventSources = try EventSources(
            configuration: sources, queue: configuration.queue, sink: gateway.eventSink, pollState: parts.pollState,
            logger: logger)
        let portFile = processOptions.portFile
        let host = configuration.host
        let functionNames = configuration.functions.map(\.name).joined(separator: ",")
        // The shared queue, then the key store's connection pool, first: the group stops services in reverse
        // order, so the queue outlives the gateway (which writes the outcomes of the attempts it drains) and the
        // key store the servers that authenticate through it.
        let group = ServiceGroup(
            configuration: .init(
                services: [parts.service, keyService].compactMap { $0 }
                    + gateway.services(eventSources: eventSources.services)
                    + (api.map { [$0.makeWebhookSender(), $0.makeUploadJanitor()] } ?? []),
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            tasks.addTask {
                let bound = try await gateway.listeningPort()
                logger.info(
                    "gateway listening",
                    metadata: [
                        "cinescale.endpoint": .string("http://\(host):\(bound)"),
                        "cinescale.functions": .string(functionNames),
                    ])
                try ProcessOptions.announce(port: bound, to: portFile)
            }
            try await tasks.waitForAll()
        }
    }
}
