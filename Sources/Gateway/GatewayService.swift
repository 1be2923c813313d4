import EventLoopExecutor
import Foundation
import Hummingbird
import InvocationQueue
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The gateway: one Runtime API listener per worker slot (127.0.0.1, free ports), the supervised worker
/// processes, the asynchronous scheduler, the public Invoke API server with the event webhook. Event sources
/// that poll (SQS, buckets: target EventSources) are built by the composition root over `eventSink` and run
/// among its parts (`services(eventSources:)`). Its long-running parts are services for the command's one
/// `ServiceGroup`: at graceful shutdown the gateway stops handing out work and SIGTERMs every worker at once,
/// then its parts stop in turn — sources, public server, scheduler (draining), workers (SIGKILL for stragglers
/// after the grace period, all reaped), Runtime API listeners. Cancellation kills the workers at once.
public final class GatewayService: FunctionInvoker {
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
    /// The public routes (Invoke API, event webhook, operator routes), built from the core and the scheduler.
    let routes: GatewayRoutes
    /// What event sources hand their events to.
    public let eventSink: EventSink
    private let pruneHolds: PruneHolds
    let logger: Logger
    let supervisor: WorkerSupervisor
    /// The public Invoke API server (with the routes added by `additionalRoutes`), pinned to one event loop.
    private let publicServer: any Service
    private let publicPort = AsyncValue<Int>()
    /// The Runtime API ports (`[function][slot]`), once every listener is bound.
    private let runtimePorts = AsyncValue<[[Int]]>()
    /// Set once the queue's pending invocations are scheduled: nothing new is accepted before.
    private let recovered: AsyncValue<Bool>
    private let started = Atomic<Bool>(false)

    /// A gateway over `invocationQueue`, built by the composition root: `.local`, a `SQLiteInvocationQueue` at
    /// `configuration.queue.path`, or `.shared`, a `PostgresInvocationQueue` shared with other gateways (then a
    /// service of the same group, listed before this one so that it stops after it); the scheduler follows from
    /// which.
    ///
    /// - Parameters:
    ///   - additionalRoutes: adds routes to the public server's router (next to the Invoke API).
    ///   - eventObserver: sees every store notification body `POST /events` accepts (and every body an event
    ///     source commits through `eventSink`), after its invocations are committed and before the store is
    ///     answered (the product API's webhooks).
    public init(
        configuration: GatewayConfiguration, invocationQueue: InvocationQueueKind, logger: Logger,
        additionalRoutes: @escaping @Sendable (Router<BasicRequestContext>) -> Void = { _ in },
        eventObserver: (@Sendable (ByteBuffer) async throws -> Void)? = nil
    ) throws(GatewayError) {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        let (recovered, pruneHolds) = (AsyncValue<Bool>(), PruneHolds())
        (self.recovered, self.pruneHolds) = (recovered, pruneHolds)
        self.core = GatewayCore(configuration: configuration, logger: logger)
        self.invocationQueue = invocationQueue.queue
        metrics = GatewayMetrics(functions: configuration.functions.map(\.name))
        scheduler = AsyncScheduler(
            queue: invocationQueue, core: core, metrics: metrics, maxPending: configuration.queue.maxPending,
            logger: logger)
        routes = GatewayRoutes(
            core: core, invoker: core, scheduler: scheduler, metrics: metrics, eventObserver: eventObserver,
            logger: logger)
        invokeAPI = routes.invokeAPI
        supervisor = WorkerSupervisor(configuration: configuration, dispatchers: core.ordered, logger: logger)

        // The public Invoke API, event webhook and operator routes, on one event loop: a request is parsed,
        // handled and answered on one thread.
        var serverLogger = logger
        if logger.logLevel > .trace { serverLogger.logLevel = max(logger.logLevel, .warning) }
        let router = Router(context: BasicRequestContext.self)
        routes.addRoutes(to: router)
        additionalRoutes(router)
        let (publicPort, host, functionCount) = (publicPort, configuration.host, core.ordered.count)
        let publicLoop = MultiThreadedEventLoopGroup.singleton.next()
        let publicApp = Application(
            router: router, server: .http1(),
            configuration: .init(address: .hostname(host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                publicPort.set(.success(port))
                logger.debug(
                    "gateway listening",
                    metadata: [
                        "cinescale.endpoint": .string("http://\(host):\(port)"),
                        "cinescale.functions": .stringConvertible(functionCount),
                    ])
            },
            eventLoopGroupProvider: .shared(publicLoop),
            logger: serverLogger)
        publicServer = PinnedService(base: publicApp, executor: EventLoopTaskExecutor(publicLoop), name: "invoke-api")
        eventSink = EventSink(
            intake: EventIntake(configuration: configuration), scheduler: scheduler, metrics: metrics,
            observer: eventObserver, recovered: recovered, pruneHolds: pruneHolds)
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

    // MARK: Services

    /// The gateway's long-running parts, without event sources: `services(eventSources: [])`.
    public var services: [any Service] { services(eventSources: []) }

    /// The gateway's long-running parts with `eventSources` among them, to run in the command's `ServiceGroup` in
    /// this order (after whatever they use, such as the shared queue's service; the group stops them in reverse
    /// order):
    /// - `runtime`: the Runtime API listeners, bound before any worker starts, and the worker supervisor; stops
    ///   last, once every worker is reaped.
    /// - `scheduler`: recovers the queue's pending invocations, then starts due attempts; at shutdown, drains
    ///   them (the grace period and 2 s more).
    /// - `invoke-api`: the public server, up once the queue is recovered; at shutdown it finishes the requests
    ///   in flight (their workers are being stopped).
    /// - `eventSources` (`sqs:<queue>`, `poll:<bucket>`, built over `eventSink`): from recovery (they wait for
    ///   `eventSink.ready()`) until shutdown.
    /// - `prune`: deletes finished invocations past their retention, hourly (the first time once the sources'
    ///   `holdPruning` waits have returned).
    /// - `shutdown`: signalled first, it stops the scheduler from starting attempts and the workers (SIGTERM)
    ///   at once, so that no part waits for a worker the others would keep busy.
    /// Each runs once.
    public func services(eventSources: [any Service]) -> [any Service] {
        let scheduler = self.scheduler
        let supervisor = self.supervisor
        return [
            GatewayPart("runtime") { try await self.runWorkers() },
            GatewayPart("scheduler") { try await self.runScheduler() },
            GatewayPart("invoke-api") { try await self.runPublicServer() },
        ]
            + eventSources
            + [
                GatewayPart("prune") {
                    [
                        queue = invocationQueue, retention = configuration.queue.retention, logger = logger,
                        pruneHolds = pruneHolds
                    ] in
                    await Self.pruneFinished(queue: queue, retention: retention, logger: logger) {
                        // After a crash between a poll source's commit to the queue and its seen-state write, its
                        // first scan emits those records again: they must still find their invocations (and
                        // their dedupe keys), however long the gateway was down. At most an hour late.
                        await pruneHolds.wait(until: ContinuousClock.now + .seconds(3600))
                    }
                },
                GatewayPart("shutdown") {
                    guard (try? await gracefulShutdown()) != nil else { return }  // cancelled
                    scheduler.stop()
                    supervisor.requestStop()
                },
            ]
    }

    /// Binds the Runtime API listeners, runs the workers until shutdown, then closes the listeners.
    private func runWorkers() async throws {
        guard !started.exchange(true, ordering: .acquiringAndReleasing) else {
            throw GatewayError(.serverFailed, "the gateway's services can only be run once")
        }
        defer { runtimePorts.set(.failure(GatewayError(.shuttingDown, "the gateway stopped"))) }
        let loops = MultiThreadedEventLoopGroup.singleton
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
            runtimePorts.set(.failure(error))
            throw error
        }
        runtimePorts.set(.success(ports))
        // Workers run while the gateway runs, even if the public server is still binding; until graceful
        // shutdown (the `shutdown` part), or cancellation.
        await supervisor.run(ports: ports)
        // The `shutdown` part may have stopped the workers before the group reached this one: a service that
        // returns before its turn makes the group cancel the others.
        try? await gracefulShutdown()
        for server in runtimeServers { await server.close() }
        if !Task.isCancelled { logger.info("gateway stopped") }
    }

    /// Once the listeners are up: schedules the invocations pending from before a crash or restart, then runs
    /// the scheduler until shutdown and drains it.
    private func runScheduler() async throws {
        defer { recovered.set(.failure(GatewayError(.shuttingDown, "the gateway stopped"))) }
        do {
            _ = try await runtimePorts.get()
        } catch {
            recovered.set(.failure(error))
            throw error
        }
        do {
            try await scheduler.recover()
        } catch {
            let failure = GatewayError(
                .serverFailed, "the invocation queue could not be recovered: \(error)", underlying: error)
            publicPort.set(.failure(failure))
            throw failure
        }
        recovered.set(.success(true))
        let (scheduler, drainFor) = (self.scheduler, configuration.shutdownGracePeriod + .seconds(2))
        await withGracefulShutdownHandler {
            await scheduler.run(drainFor: drainFor)
        } onGracefulShutdown: {
            scheduler.stop()
        }
        // Stopped by the `shutdown` part, it may have drained before the group reached this one (see runWorkers).
        try? await gracefulShutdown()
    }

    /// The public server, from recovery until shutdown.
    private func runPublicServer() async throws {
        do {
            _ = try await recovered.get()
        } catch {
            // The listeners or the recovery failed, or the gateway stopped first.
            publicPort.set(.failure(error))
            throw error
        }
        do {
            try await publicServer.run()
        } catch {
            let failure = GatewayError(.serverFailed, "the Invoke API server failed: \(error)", underlying: error)
            publicPort.set(.failure(failure))
            throw failure
        }
        publicPort.set(.failure(GatewayError(.shuttingDown, "the Invoke API server stopped")))
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
                        logger.info(
                            "pruned finished invocations", metadata: ["cinescale.count": .stringConvertible(removed)])
                    }
                } catch {
                    logger.warning("could not prune finished invocations", metadata: ["cinescale.error": "\(error)"])
                }
                try await Task.sleep(for: .seconds(3600))
            }
        }
    }
}

/// One long-running part of the gateway, as a `Service` named in the group's logs.
struct GatewayPart: Service, CustomStringConvertible {
    let description: String
    let body: @Sendable () async throws -> Void

    init(_ name: String, _ body: @escaping @Sendable () async throws -> Void) {
        description = name
        self.body = body
    }

    func run() async throws { try await body() }
}
