import Hummingbird
import InvocationQueue
import Logging
import NIOCore

/// What the public routes need of the asynchronous side: admission against the queue's bound, durable
/// enqueueing (then scheduling), scheduling a re-driven invocation, the pending counts, and the durable queue
/// itself for the operator view. `AsyncScheduler` in the gateway; an in-memory fake in the route tests.
protocol InvocationScheduling: Sendable {
    var queue: any DurableInvocationQueue { get }
    /// Throws `tooManyRequests` when the queue is at its bound; called before writing `count` invocations.
    func admit(_ count: Int) throws(GatewayError)
    /// Durably queues `invocations`, then schedules those that were new.
    func enqueue(_ invocations: [QueuedInvocation]) async throws -> [EnqueueResult]
    /// Schedules invocations already on disk.
    func schedule(_ invocations: [QueuedInvocation])
    func pending(of function: String) -> (waiting: Int, running: Int)
}

extension AsyncScheduler: InvocationScheduling {}

/// The gateway's public routes — the Invoke API, the event webhook, the operator view of the queue,
/// `/metrics` and `/healthz` — built from their parts, so that they can be served, and tested in process over
/// fakes, without the gateway's servers and worker processes (`GatewayService` builds them over its core and
/// scheduler).
struct GatewayRoutes: Sendable {
    let invokeAPI: InvokeAPI
    let operatorAPI: OperatorAPI

    /// - Parameters:
    ///   - core: the functions, looked up by name (their configuration, status and payload checks).
    ///   - invoker: runs `RequestResponse` invocations (the core itself in the gateway).
    ///   - scheduler: the asynchronous side (`Event` invokes, the webhook's events, re-drives).
    ///   - eventObserver: sees every notification body `POST /events` accepts (see `GatewayService`).
    init(
        core: GatewayCore, invoker: any FunctionInvoker, scheduler: any InvocationScheduling, metrics: GatewayMetrics,
        eventObserver: (@Sendable (ByteBuffer) async throws -> Void)?, logger: Logger
    ) {
        invokeAPI = InvokeAPI(core: core, invoker: invoker, scheduler: scheduler, logger: logger)
        operatorAPI = OperatorAPI(
            core: core, scheduler: scheduler, intake: EventIntake(configuration: core.configuration),
            invokeAPI: invokeAPI, metrics: metrics, token: core.configuration.eventToken, eventObserver: eventObserver,
            logger: logger)
    }

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        invokeAPI.addRoutes(to: router)
        operatorAPI.addRoutes(to: router)
    }
}
