import Foundation
import Hummingbird
import InvocationQueue
import Logging
import NIOCore
import NIOPosix
import PollState
import ServiceLifecycle
import Synchronization

/// The gateway as a `Service`: one Runtime API listener per worker slot (127.0.0.1, free ports), the public
/// Invoke API server, and the supervised worker processes. `run()` returns after a clean shutdown: on
/// graceful shutdown it stops handing out work, SIGTERMs every worker, SIGKILLs stragglers after the grace
/// period, reaps them all, then stops its HTTP servers. Cancellation kills the workers at once.
public final class GatewayService: Service, FunctionInvoker {
    public let configuration: GatewayConfiguration
    /// The Invoke API routes, to mount on another router as well if wanted.
    public let invokeAPI: InvokeAPI
    /// The durable queue of asynchronous invocations (events, `Event` invokes): SQLite, or PostgreSQL shared
    /// with other gateways — whichever the composition root handed in.
    public let invocationQueue: any DurableInvocationQueue
    /// Served at `/metrics`.
    public let metrics: GatewayMetrics
    let core: GatewayCore
    let scheduler: AsyncScheduler
    let operatorAPI: OperatorAPI
    /// `sources.sqs`: queues polled for object-store events.
    let sqsSources: [SQSEventSource]
    /// `sources.poll`: buckets listed for new and changed objects.
    let pollSources: [PollEventSource]
    let logger: Logger
    private let additionalRoutes: @Sendable (Router<BasicRequestContext>) -> Void
    private let publicPort = AsyncValue<Int>()
    private let started = Atomic<Bool>(false)

    /// A gateway over `invocationQueue`, built by the composition root: a `SQLiteInvocationQueue` at
    /// `configuration.queue.path`, or a `PostgresInvocationQueue` shared with other gateways (then a service of the
    /// same group, listed before this one so that it stops after it). With poll sources, their seen state is
    /// `pollState` when given (the shared queue's `PostgresPollState`); else the SQLite file
    /// `configuration.pollStatePath`, else `poll.sqlite` beside `queue.path`.
    ///
    /// - Parameters:
    ///   - additionalRoutes: adds routes to the public server's router (next to the Invoke API).
    ///   - eventObserver: sees every store notification body `POST /events` accepts, after its invocations are
    ///     committed and before the store is answered (the product API's webhooks).
    public init(
        configuration: GatewayConfiguration, invocationQueue: any DurableInvocationQueue,
        pollState: (any PollStateStore)? = nil, logger: Logger,
        additionalRoutes: @escaping @Sendable (Router<BasicRequestContext>) -> Void = { _ in },
        eventObserver: (@Sendable (ByteBuffer) async throws -> Void)? = nil
    ) throws(GatewayError) {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        self.core = GatewayCore(configuration: configuration, logger: logger)
        self.invocationQueue = invocationQueue
        metrics = GatewayMetrics(functions: configuration.functions.map(\.name))
        scheduler = AsyncScheduler(
            queue: invocationQueue, core: core, metrics: metrics, maxPending: configuration.queue.maxPending,
            logger: logger)
        invokeAPI = InvokeAPI(core: core, scheduler: scheduler, logger: logger)
        operatorAPI = OperatorAPI(
            core: core, scheduler: scheduler, intake: EventIntake(configuration: configuration), invokeAPI: invokeAPI,
            metrics: metrics, token: configuration.eventToken, eventObserver: eventObserver, logger: logger)
        let (scheduler, metrics) = (scheduler, metrics)
        sqsSources = configuration.sqsSources.map { source in
            SQSEventSource(
                configuration: source, scheduler: scheduler, intake: EventIntake(configuration: configuration),
                metrics: metrics, eventObserver: eventObserver, logger: logger)
        }
        if configuration.pollSources.isEmpty {
            pollSources = []
        } else {
            let state: any PollStateStore
            if let pollState {
                state = pollState
            } else {
                guard
                    let path = configuration.pollStatePath
                        ?? configuration.queue.path.map({
                            URL(fileURLWithPath: $0).deletingLastPathComponent().appendingPathComponent("poll.sqlite")
                                .path
                        })
                else {
                    throw .configuration(
                        "sources.poll", "needs a file for its seen state: set queue.path or the gateway's pollStatePath")
                }
                do {
                    state = try SQLitePollState(path: path)
                } catch {
                    throw GatewayError(.invalidConfiguration, "sources.poll: \(error.description)", underlying: error)
                }
            }
            pollSources = configuration.pollSources.map { source in
                PollEventSource(
                    configuration: source, state: state, scheduler: scheduler,
                    intake: EventIntake(configuration: configuration), metrics: metrics, eventObserver: eventObserver,
                    logger: logger)
            }
        }
        self.additionalRoutes = additionalRoutes
    }

    // MARK: Public API

    /// The bound port of the public Invoke API server, once listening (useful with port 0). Throws if the
    /// server could not start.
    public func listeningPort() async throws(GatewayError) -> Int {
        try await publicPort.get()
    }

    /// Status of every function, sorted by name.
    public func status() -> [FunctionStatus] { core.ordered.map { $0.status() } }

    /// Status of one function.
    public func status(of function: String) -> FunctionStatus? { core.dispatchers[function]?.status() }

    /// Invokes `function` synchronously (RequestResponse) in-process.
    public func invoke(function: String, payload: ByteBuffer, requestID: String? = nil) async throws(GatewayError)
        -> InvocationResult
    {
        try await core.invoke(function: function, payload: payload, requestID: requestID)
    }

    public func submit(
        function: String, payload: ByteBuffer, requestID: String?,
        completion: @escaping @Sendable (Result<InvocationResult, GatewayError>) -> Void
    ) throws(GatewayError) {
        try core.submit(function: function, payload: payload, requestID: requestID, completion: completion)
    }

    // MARK: Service

    public func run() async throws {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else {
            throw GatewayError(.serverFailed, "GatewayService.run() can only be called once")
        }
        try await runGateway()
    }

    private func runGateway() async throws {
        var serverLogger = logger
        if logger.logLevel > .trace { serverLogger.logLevel = max(logger.logLevel, .warning) }

        // Every server is pinned to one event loop, spread round-robin over the group: a request is
        // parsed, handled and answered on one thread.
        let loops = MultiThreadedEventLoopGroup.singleton

        // Runtime API listeners, one per worker slot, up before any worker starts.
        var runtimeServers: [RuntimeAPIServer] = []
        var ports: [[Int]] = []
        do throws(GatewayError) {
            for dispatcher in core.ordered {
                var row: [Int] = []
                for slot in 0..<dispatcher.configuration.concurrency {
                    let server = try await RuntimeAPIServer.start(dispatcher: dispatcher, slot: slot, on: loops.next())
                    runtimeServers.append(server)
                    row.append(server.port)
                }
                ports.append(row)
            }
        } catch {
            for server in runtimeServers { await server.close() }
            publicPort.set(.failure(error))
            throw error
        }

        // Pending invocations from before a crash or restart, scheduled before any new one is accepted.
        do {
            try await scheduler.recover()
        } catch {
            for server in runtimeServers { await server.close() }
            let failure = GatewayError(.serverFailed, "the invocation queue could not be recovered: \(error)", underlying: error)
            publicPort.set(.failure(failure))
            throw failure
        }

        // The public Invoke API, event webhook and operator routes.
        let router = Router(context: BasicRequestContext.self)
        invokeAPI.addRoutes(to: router)
        operatorAPI.addRoutes(to: router)
        additionalRoutes(router)
        let publicPort = self.publicPort
        let host = configuration.host
        let publicLoop = loops.next()
        let publicApp = Application(
            router: router, server: .http1(),
            configuration: .init(address: .hostname(host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in
                publicPort.set(.success(channel.localAddress?.port ?? 0))
            },
            eventLoopGroupProvider: .shared(publicLoop),
            logger: serverLogger)
        let servers = ServiceGroup(
            configuration: .init(
                services: [PinnedService(base: publicApp, executor: EventLoopTaskExecutor(publicLoop), name: "invoke-api")],
                logger: serverLogger))
        let supervisor = WorkerSupervisor(configuration: configuration, dispatchers: core.ordered, logger: logger)
        let logger = self.logger
        let functionCount = core.ordered.count
        let slotPorts = ports
        let scheduler = self.scheduler
        let queue = invocationQueue
        let retention = configuration.queue.retention
        let shutdownGrace = configuration.shutdownGracePeriod
        let sqsSources = self.sqsSources
        let pollSources = self.pollSources
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await servers.run()
                    } catch {
                        let failure = GatewayError(
                            .serverFailed, "the Invoke API server failed: \(error)", underlying: error)
                        publicPort.set(.failure(failure))
                        throw failure
                    }
                    publicPort.set(.failure(GatewayError(.shuttingDown, "the Invoke API server stopped")))
                }
                group.addTask {
                    await withGracefulShutdownHandler {
                        await scheduler.run(drainFor: shutdownGrace + .seconds(2))
                    } onGracefulShutdown: {
                        scheduler.stop()
                    }
                }
                group.addTask {
                    await Self.pruneFinished(queue: queue, retention: retention, logger: logger) {
                        // After a crash between a poll source's commit to the queue and its seen-state write, its
                        // first scan emits those records again: they must still find their invocations (and
                        // their dedupe keys), however long the gateway was down. At most an hour late.
                        let deadline = ContinuousClock.now + .seconds(3600)
                        for source in pollSources {
                            _ = await source.scanned.sleep(for: max(.zero, deadline - .now))
                        }
                    }
                }
                for source in sqsSources {
                    // Stops receiving at graceful shutdown; messages still held come back after their visibility timeout.
                    group.addTask { await cancelWhenGracefulShutdown { await source.run() } }
                }
                for source in pollSources {
                    // Stops scanning at graceful shutdown; records not yet recorded as seen are emitted again
                    // (and deduplicated) at the next start.
                    group.addTask { await cancelWhenGracefulShutdown { await source.run() } }
                }
                group.addTask {
                    // Workers run while the gateway runs, even if the public server is still binding.
                    await supervisor.run(ports: slotPorts)
                    await servers.triggerGracefulShutdown()
                }
                group.addTask {
                    if let port = try? await publicPort.get() {
                        logger.debug("gateway listening", metadata: [
                            "cinescale.endpoint": .string("http://\(host):\(port)"),
                            "cinescale.functions": .stringConvertible(functionCount),
                        ])
                    }
                }
                try await group.waitForAll()
            }
        } catch {
            for dispatcher in core.ordered { dispatcher.markStopped() }
            for server in runtimeServers { await server.close() }
            throw error
        }
        for server in runtimeServers { await server.close() }
        logger.info("gateway stopped")
    }

    /// Deletes finished invocations older than `retention`, hourly, until graceful shutdown; the first time
    /// once `ready` has returned.
    static func pruneFinished(
        queue: any DurableInvocationQueue, retention: Duration, logger: Logger,
        ready: @escaping @Sendable () async -> Void = {}
    ) async {
        try? await cancelWhenGracefulShutdown {
            await ready()
            while true {
                do {
                    let removed = try await queue.prune(finishedBefore: Date().addingTimeInterval(-retention.seconds))
                    if removed > 0 {
                        logger.info("pruned finished invocations", metadata: ["cinescale.count": .stringConvertible(removed)])
                    }
                } catch {
                    logger.warning("could not prune finished invocations", metadata: ["cinescale.error": "\(error)"])
                }
                try await Task.sleep(for: .seconds(3600))
            }
        }
    }
}
