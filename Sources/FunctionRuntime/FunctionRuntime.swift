import Dispatch
import EventLoopExecutor
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// Runs a function against the Lambda Runtime API named by `AWS_LAMBDA_RUNTIME_API`: the CineScale gateway
/// locally, or AWS Lambda (custom runtime `provided.al2023`) unchanged.
///
/// The `run` entry points never return: they exit 0 after SIGTERM/SIGINT (finishing the invocation in
/// progress first), 1 after an init error (posted to `/runtime/init/error`), and 1 when the Runtime API
/// cannot be reached or misbehaves — the gateway (or the Lambda sandbox) starts a fresh process.
public enum FunctionRuntime {
    /// Runs the handler that `makeHandler` creates once, at start-up. If it throws, the error is posted to
    /// `/runtime/init/error` and the process exits 1.
    public static func run<Handler: ByteHandler>(
        makeHandler: @escaping @Sendable () async throws -> Handler
    ) async -> Never {
        await runProcess(makeHandler: makeHandler)
    }

    /// Runs the typed handler that `makeHandler` creates once, at start-up; init errors as for a `ByteHandler`.
    public static func run<Handler: FunctionHandler>(
        makeHandler: @escaping @Sendable () async throws -> Handler
    ) async -> Never {
        await runProcess { JSONByteHandler(try await makeHandler()) }
    }

    /// Runs `handler`.
    public static func run(handler: some ByteHandler) async -> Never {
        await runProcess { handler }
    }

    /// Runs the typed `handler`.
    public static func run(handler: some FunctionHandler) async -> Never {
        await runProcess { JSONByteHandler(handler) }
    }

    /// Runs a closure taking a JSON event: `FunctionRuntime.run { (event: MyEvent, context) in … }`.
    public static func run<Event: Decodable & Sendable, Output: Encodable & Sendable>(
        _ body: @escaping @Sendable (Event, FunctionContext) async throws -> Output
    ) async -> Never {
        await runProcess { JSONByteHandler(ClosureFunctionHandler(body)) }
    }

    /// Runs a closure on raw bytes: `FunctionRuntime.run { (event: ByteBuffer, context) in … }`.
    public static func run(
        _ body: @escaping @Sendable (ByteBuffer, FunctionContext) async throws -> ByteBuffer
    ) async -> Never {
        await runProcess { ClosureByteHandler(body) }
    }

    /// How ``runLoop(client:configuration:logger:shutdown:maxInvocations:makeHandler:)`` ended.
    public enum LoopOutcome: Sendable, Equatable {
        /// Creating the handler failed; the error was posted to `/runtime/init/error`.
        case initFailed(ErrorReport)
        /// A stop was requested (SIGTERM); the invocation in progress was finished first.
        case stopped(invocations: Int)
        /// `maxInvocations` invocations were served.
        case finished(invocations: Int)
    }

    /// The run loop itself, without process concerns (no signals, no `exit`), generic over the client so
    /// tests can drive it. Throws when the client does (transport, unexpected status, protocol).
    public static func runLoop<Client: RuntimeAPIClient, Handler: ByteHandler>(
        client: Client,
        configuration: RuntimeConfiguration,
        logger: Logger,
        shutdown: ShutdownCoordinator = ShutdownCoordinator(),
        maxInvocations: Int? = nil,
        makeHandler: () async throws -> Handler
    ) async throws -> LoopOutcome {
        let handler: Handler
        do {
            handler = try await makeHandler()
        } catch {
            let report = ErrorReport(error)
            logger.error(
                "handler initialization failed",
                metadata: [
                    "cinescale.error.type": .string(report.errorType),
                    "cinescale.error.message": .string(report.errorMessage),
                ])
            try await client.reportInitError(report)
            return .initFailed(report)
        }
        logger.debug(
            "function runtime ready",
            metadata: ["cinescale.runtime.api": .string("\(configuration.host):\(configuration.port)")])

        var served = 0
        // The next invocation, when it was asked for together with the previous outcome.
        var fetched: Invocation?
        while maxInvocations.map({ served < $0 }) ?? true {
            let invocation: Invocation
            if let next = fetched {
                invocation = next
                fetched = nil
            } else {
                invocation = try await client.nextInvocation()
            }
            shutdown.beginInvocation()
            let context = makeContext(invocation, configuration: configuration, logger: logger)
            let result: Result<ByteBuffer, any Error>
            do {
                result = .success(try await handler.handle(invocation.event, context: context))
            } catch {
                result = .failure(error)
            }
            let outcome: InvocationOutcome
            switch result {
            case .success(let output):
                outcome = .response(output)
            case .failure(let error):
                let report = ErrorReport(error)
                context.logger.error(
                    "invocation failed",
                    metadata: [
                        "cinescale.error.type": .string(report.errorType),
                        "cinescale.error.message": .string(report.errorMessage),
                    ])
                outcome = .error(report)
            }
            // Ask for the next invocation together with this outcome, unless this is the last one (a stop
            // requested, or the budget spent). Once the outcome is posted the worker is idle: a stop
            // requested from then on exits at once, even while the next invocation is awaited.
            let thenNext = !shutdown.isStopRequested && (maxInvocations.map { served + 1 < $0 } ?? true)
            var stop = false
            fetched = try await client.post(outcome, requestID: invocation.requestID, thenNext: thenNext) {
                stop = shutdown.endInvocation()
                return !stop
            }
            served += 1
            if stop {
                logger.info("stop requested; exiting after the invocation in progress")
                return .stopped(invocations: served)
            }
        }
        return .finished(invocations: served)
    }

    static func makeContext(
        _ invocation: Invocation, configuration: RuntimeConfiguration, logger: Logger
    ) -> FunctionContext {
        let now = ContinuousClock.now
        let nowMilliseconds = Int64((Date().timeIntervalSince1970 * 1000).rounded())
        // Without the header (AWS always sends it) allow Lambda's longest timeout, 15 minutes.
        let deadlineMilliseconds = invocation.deadlineMilliseconds ?? (nowMilliseconds + 900_000)
        return FunctionContext(
            requestID: invocation.requestID,
            deadline: FunctionContext.deadline(
                epochMilliseconds: deadlineMilliseconds, nowEpochMilliseconds: nowMilliseconds, now: now),
            deadlineMilliseconds: deadlineMilliseconds,
            invokedFunctionARN: invocation.invokedFunctionARN,
            functionName: configuration.functionName,
            functionVersion: configuration.functionVersion,
            memoryLimitMB: configuration.memoryLimitMB,
            traceID: invocation.traceID,
            clientContext: invocation.clientContext,
            cognitoIdentity: invocation.cognitoIdentity,
            logger: logger)
    }

    private static func runProcess<Handler: ByteHandler>(
        makeHandler: @escaping @Sendable () async throws -> Handler
    ) async -> Never {
        var logger = Logger(label: "cinescale.function")
        let configuration: RuntimeConfiguration
        do {
            configuration = try RuntimeConfiguration.fromEnvironment()
        } catch {
            logger.critical("cannot start the function runtime: \(error)")
            exit(1)
        }
        logger.logLevel = configuration.logLevel

        let shutdown = ShutdownCoordinator()
        let signalSources = [SIGTERM, SIGINT].map { signalNumber in
            installStopHandler(signalNumber, shutdown: shutdown, logger: logger)
        }
        // One loop thread carries the connection and, through the task executor preference below, the run
        // loop and the handler too: no thread hop between receiving an event and handling it.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let eventLoop = group.next()
        let client = RuntimeAPIHTTPClient(
            host: configuration.host, port: configuration.port, eventLoop: eventLoop, logger: logger)
        let code: Int32
        do {
            let outcome = try await withTaskExecutorPreference(EventLoopTaskExecutor(eventLoop)) {
                try await runLoop(
                    client: client, configuration: configuration, logger: logger, shutdown: shutdown,
                    makeHandler: makeHandler)
            }
            switch outcome {
            case .initFailed: code = 1
            case .stopped, .finished: code = 0
            }
        } catch {
            logger.critical("function runtime stopping: \(error)")
            code = 1
        }
        withExtendedLifetime(signalSources) {}
        exit(code)
    }

    private static func installStopHandler(
        _ signalNumber: Int32, shutdown: ShutdownCoordinator, logger: Logger
    ) -> any DispatchSourceSignal {
        signal(signalNumber, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
        source.setEventHandler {
            if shutdown.requestStop() {
                logger.info("stop signal while idle; exiting", metadata: ["cinescale.signal": "\(signalNumber)"])
                exit(0)
            }
            logger.info(
                "stop signal; finishing the invocation in progress", metadata: ["cinescale.signal": "\(signalNumber)"])
        }
        source.resume()
        return source
    }
}

/// Tracks whether an invocation is in progress, so a stop request (SIGTERM) can wait for it.
public final class ShutdownCoordinator: Sendable {
    private struct State {
        var invoking = false
        var stopRequested = false
    }

    private let state = Mutex(State())

    public init() {}

    /// Requests a stop. Returns `true` when no invocation is in progress, so the caller may exit now;
    /// otherwise the run loop stops after posting the current invocation's result.
    public func requestStop() -> Bool {
        state.withLock { state in
            state.stopRequested = true
            return !state.invoking
        }
    }

    /// Whether a stop was requested.
    public var isStopRequested: Bool {
        state.withLock { $0.stopRequested }
    }

    func beginInvocation() {
        state.withLock { $0.invoking = true }
    }

    /// Marks the invocation done; returns whether the loop should stop now.
    func endInvocation() -> Bool {
        state.withLock { state in
            state.invoking = false
            return state.stopRequested
        }
    }
}
