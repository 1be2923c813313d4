import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// A worker parked in `/next`. `token` identifies its connection, so a closed one can withdraw
/// (`abandonNext`); `deliver` runs once, on any thread.
struct NextWaiter: Sendable {
    var token: Int
    var deliver: @Sendable (Work?) -> Void

    @inline(__always)
    func resume(_ work: Work?) { deliver(work) }
}

/// Why a function fails fast.
struct InitFailure: Sendable {
    /// errorType of the invocations failed because of it ("Runtime.InitError", "Runtime.ExitError").
    var invocationErrorType: String
    /// Description, also logged.
    var message: String
}

/// Per function: the bounded FIFO of pending invocations and the workers parked in `/next`, behind one
/// `Mutex`. Each invocation is handed to exactly one worker; completing it resumes its caller directly.
final class FunctionDispatcher: Sendable {
    let configuration: FunctionConfiguration
    let arn: String
    let logger: Logger
    private let maxInitFailures: Int
    private let healthyUptime: Duration
    private let state: Mutex<State>

    private struct InFlight {
        var requestID: String
        var completion: Completion
        var deadline: ContinuousClock.Instant
    }

    private struct Pending {
        var requestID: String
        var payload: ByteBuffer
        var completion: Completion
    }

    private struct Slot {
        var waiter: NextWaiter?
        var current: InFlight?
        var process: ChildProcess?
        var startedAt: ContinuousClock.Instant?
        var sawNext = false
        var initError: InitFailure?
        var servedByProcess = 0
        var invocations = 0
        var starts = 0
        var phase: WorkerStatus.State = .stopped
        var port: Int?
        var lastExit: String?
    }

    private struct State {
        mutating func takeWatchdog() -> UnsafeContinuation<Void, Never>? {
            defer { watchdog = nil }
            return watchdog
        }

        var queue = CircularBuffer<Pending>()
        var idle = CircularBuffer<Int>()
        var slots: [Slot]
        var failure: InitFailure?
        var consecutiveInitFailures = 0
        var lastInitError: String?
        var stopping = false
        var stopped = false
        /// The timeout watchdog, parked while no invocation runs.
        var watchdog: UnsafeContinuation<Void, Never>?
    }

    init(
        configuration: FunctionConfiguration, arn: String, maxInitFailures: Int, healthyUptime: Duration,
        logger: Logger
    ) {
        self.configuration = configuration
        self.arn = arn
        self.maxInitFailures = maxInitFailures
        self.healthyUptime = healthyUptime
        var logger = logger
        logger[metadataKey: "cinescale.function"] = .string(configuration.name)
        self.logger = logger
        var initial = State(slots: Array(repeating: Slot(), count: configuration.concurrency))
        initial.queue.reserveCapacity(min(configuration.maxQueued, 1024))
        initial.idle.reserveCapacity(configuration.concurrency)
        self.state = Mutex(initial)
    }

    var name: String { configuration.name }

    // MARK: Intake

    /// Queues an invocation or hands it to an idle worker. Never blocks. Throws (without calling `completion`)
    /// when the queue is full or the gateway is stopping; otherwise `completion` runs exactly once.
    func submit(requestID: String, payload: ByteBuffer, completion: Completion) throws(GatewayError) {
        enum Action {
            case dispatch(NextWaiter, Work, UnsafeContinuation<Void, Never>?)
            case failFast(InitFailure)
            case refuse(GatewayError)
            case none
        }
        let action = state.withLock { s -> Action in
            if s.stopping { return .refuse(.stopping(function: name)) }
            if let failure = s.failure { return .failFast(failure) }
            if let slot = s.idle.popFirst() {
                let waiter = s.slots[slot].waiter!
                s.slots[slot].waiter = nil
                let work = assign(&s, slot: slot, requestID: requestID, payload: payload, completion: completion)
                return .dispatch(waiter, work, s.takeWatchdog())
            }
            guard s.queue.count < configuration.maxQueued else { return .refuse(.throttled(function: name)) }
            s.queue.append(Pending(requestID: requestID, payload: payload, completion: completion))
            return .none
        }
        switch action {
        case .dispatch(let waiter, let work, let watchdog):
            waiter.resume(work)
            watchdog?.resume()
        case .failFast(let failure): completion.complete(.success(failedByInit(failure, requestID: requestID)))
        case .refuse(let error): throw error
        case .none: break
        }
    }

    /// Invokes and waits.
    func invoke(requestID: String, payload: ByteBuffer) async -> Result<InvocationResult, GatewayError> {
        await withUnsafeContinuation { continuation in
            do throws(GatewayError) {
                try submit(requestID: requestID, payload: payload, completion: .continuation(continuation))
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
    }

    /// Marks `slot` busy with a new invocation and sets its deadline. Called with the lock held; the caller
    /// wakes the watchdog if it was parked (`State.takeWatchdog()`).
    private func assign(
        _ s: inout State, slot: Int, requestID: String, payload: ByteBuffer, completion: Completion
    ) -> Work {
        let now = LambdaFormat.epochMilliseconds()
        let timeout = configuration.timeout
        s.slots[slot].current = InFlight(
            requestID: requestID, completion: completion, deadline: ContinuousClock.now + timeout)
        s.slots[slot].phase = .busy
        s.slots[slot].servedByProcess += 1
        s.slots[slot].invocations += 1
        return Work(requestID: requestID, payload: payload, deadlineMs: now + Int64(timeout.seconds * 1000))
    }

    private func failedByInit(_ failure: InitFailure, requestID: String) -> InvocationResult {
        let message =
            failure.invocationErrorType == "Runtime.InitError"
            ? failure.message : "RequestId: \(requestID) Error: \(failure.message)"
        return .failure(requestID: requestID, type: failure.invocationErrorType, message: message)
    }

    // MARK: Runtime API

    /// `GET /next` for the process in `slot`: returns `.some(work)` (or `.some(nil)`: refused, the process is
    /// gone or the gateway is stopping) at once, or parks `waiter` and returns nil; a parked waiter is resumed
    /// exactly once: with work by `submit`, or with nil when its process exits or it is replaced.
    func requestNext(slot: Int, waiter: NextWaiter) -> Work?? {
        var recovered: Int?
        var abandoned: InFlight?
        var replaced: NextWaiter?
        var watchdog: UnsafeContinuation<Void, Never>?
        let immediate = state.withLock { s -> Work?? in
            guard !s.stopping, s.slots[slot].process != nil else { return .some(nil) }
            if !s.slots[slot].sawNext {
                s.slots[slot].sawNext = true
                if s.consecutiveInitFailures > 0 || s.failure != nil {
                    recovered = s.consecutiveInitFailures
                    s.consecutiveInitFailures = 0
                    s.failure = nil
                }
            }
            if let current = s.slots[slot].current {
                // The runtime asked for more work without answering the last invocation.
                abandoned = current
                s.slots[slot].current = nil
            }
            if let old = s.slots[slot].waiter {
                replaced = old
                s.slots[slot].waiter = nil
                if let i = s.idle.firstIndex(of: slot) { s.idle.remove(at: i) }
            }
            if let pending = s.queue.popFirst() {
                let work = assign(
                    &s, slot: slot, requestID: pending.requestID, payload: pending.payload,
                    completion: pending.completion)
                watchdog = s.takeWatchdog()
                return .some(work)
            }
            s.slots[slot].waiter = waiter
            s.slots[slot].phase = .idle
            s.idle.append(slot)
            return .none
        }
        replaced?.resume(nil)
        watchdog?.resume()
        if let abandoned {
            abandoned.completion.complete(
                .success(
                    .failure(
                        requestID: abandoned.requestID, type: "Runtime.InvalidResponse",
                        message:
                            "RequestId: \(abandoned.requestID) Error: the runtime asked for the next invocation without answering this one"
                    )))
        }
        if let recovered {
            logger.notice(
                "function recovered: a worker initialised",
                metadata: [
                    "cinescale.init.failures": .stringConvertible(recovered)
                ])
        }
        return immediate
    }

    /// The connection that was waiting in `/next` closed: forget its waiter (matched by `token`) so no
    /// invocation is handed to it.
    func abandonNext(slot: Int, token: Int) {
        let removed = state.withLock { s -> NextWaiter? in
            guard let waiter = s.slots[slot].waiter, waiter.token == token else { return nil }
            s.slots[slot].waiter = nil
            if let i = s.idle.firstIndex(of: slot) { s.idle.remove(at: i) }
            s.slots[slot].phase = .starting
            return waiter
        }
        removed?.resume(nil)
    }

    enum CompletionOutcome {
        case completed
        case unknownRequest
    }

    /// `POST /response` or `/error` for `requestID` from the process in `slot`.
    func complete(slot: Int, requestID: String, result: InvocationResult) -> CompletionOutcome {
        let inFlight = state.withLock { s -> InFlight? in
            guard s.slots[slot].current?.requestID == requestID else { return nil }
            defer { s.slots[slot].current = nil }
            s.slots[slot].phase = .starting
            return s.slots[slot].current
        }
        guard let inFlight else { return .unknownRequest }
        inFlight.completion.complete(.success(result))
        return .completed
    }

    /// Whether `requestID` is the invocation `slot` is running.
    func isCurrent(slot: Int, requestID: String) -> Bool {
        state.withLock { $0.slots[slot].current?.requestID == requestID }
    }

    /// `POST /runtime/init/error`.
    func initError(slot: Int, errorType: String, message: String) {
        state.withLock { s in
            s.slots[slot].initError = InitFailure(
                invocationErrorType: "Runtime.InitError", message: "\(errorType): \(message)")
        }
        logger.error(
            "function init error",
            metadata: [
                "cinescale.worker": .stringConvertible(slot), "cinescale.error.type": .string(errorType),
                "cinescale.error.message": .string(message),
            ])
    }

    // MARK: Timeouts

    /// The earliest deadline of the running invocations, nil when none runs.
    func nextDeadline() -> ContinuousClock.Instant? {
        state.withLock { s in s.slots.compactMap { $0.current?.deadline }.min() }
    }

    /// Parks the watchdog until an invocation starts (or the gateway stops). Returns at once if one runs.
    func waitForInvocation() async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.stopping || s.slots.contains(where: { $0.current != nil }) { return true }
                s.watchdog = continuation
                return false
            }
            if now { continuation.resume() }
        }
    }

    /// Fails every invocation past its deadline with Runtime.TimeoutError and SIGKILLs its worker's group.
    func expireOverdue(now: ContinuousClock.Instant = .now) {
        let expired = state.withLock { s -> [(slot: Int, InFlight, ChildProcess?)] in
            var expired: [(slot: Int, InFlight, ChildProcess?)] = []
            for i in s.slots.indices {
                guard let current = s.slots[i].current, current.deadline <= now else { continue }
                s.slots[i].current = nil
                expired.append((i, current, s.slots[i].process))
            }
            return expired
        }
        for (slot, inFlight, process) in expired {
            process?.signalGroup(SIGKILL)
            let requestID = inFlight.requestID
            let seconds = LambdaFormat.seconds(configuration.timeout)
            let message =
                "\(LambdaFormat.timestamp(epochMilliseconds: LambdaFormat.epochMilliseconds())) \(requestID) Task timed out after \(seconds) seconds"
            logger.warning(
                "invocation timed out; killing the worker",
                metadata: [
                    "cinescale.request.id": .string(requestID), "cinescale.worker": .stringConvertible(slot),
                    "cinescale.pid": .stringConvertible(process?.pid ?? 0),
                ])
            inFlight.completion.complete(
                .success(.failure(requestID: requestID, type: "Runtime.TimeoutError", message: message)))
        }
    }

    // MARK: Supervision

    func setPort(slot: Int, port: Int) {
        state.withLock { $0.slots[slot].port = port }
    }

    func setPhase(slot: Int, _ phase: WorkerStatus.State) {
        state.withLock { $0.slots[slot].phase = phase }
    }

    enum LaunchOutcome {
        case started(ChildProcess)
        case failed(GatewayError)
        case stopping
    }

    /// Starts the process of `slot` with `spawn`, under the lock so that a concurrent stop either sees the
    /// new process or prevents it, and so the process is known before it can call `/next`.
    func launch(slot: Int, spawn: () -> Result<ChildProcess, GatewayError>) -> LaunchOutcome {
        state.withLock { s -> LaunchOutcome in
            guard !s.stopping else { return .stopping }
            s.slots[slot].starts += 1
            s.slots[slot].startedAt = .now
            s.slots[slot].sawNext = false
            s.slots[slot].initError = nil
            s.slots[slot].servedByProcess = 0
            switch spawn() {
            case .success(let process):
                s.slots[slot].process = process
                s.slots[slot].phase = .starting
                return .started(process)
            case .failure(let error):
                return .failed(error)
            }
        }
    }

    /// Processes currently running.
    func liveProcesses() -> [ChildProcess] {
        state.withLock { s in s.slots.compactMap(\.process) }
    }

    struct ExitOutcome {
        /// Served an invocation or lived long enough: restart without delay, reset the backoff.
        var healthy: Bool
        var initFailure: Bool
        var stopping: Bool
    }

    /// The process of `slot` exited (or could not start, `exit` nil with `spawnError`).
    func processExited(slot: Int, exit: ProcessExit?, spawnError: GatewayError? = nil) -> ExitOutcome {
        var toFail: [(Completion, Result<InvocationResult, GatewayError>)] = []
        var waiter: NextWaiter?
        var newlyFailing: InitFailure?
        var initMessage: String?
        let exitText = exit?.description ?? "spawn failed"
        let outcome = state.withLock { s -> ExitOutcome in
            var slotState = s.slots[slot]
            if let current = slotState.current {
                let message = "RequestId: \(current.requestID) Error: Runtime exited with error: \(exitText)"
                toFail.append(
                    (
                        current.completion,
                        .success(.failure(requestID: current.requestID, type: "Runtime.ExitError", message: message))
                    ))
                slotState.current = nil
            }
            if let w = slotState.waiter {
                waiter = w
                slotState.waiter = nil
                if let i = s.idle.firstIndex(of: slot) { s.idle.remove(at: i) }
            }
            let uptime = slotState.startedAt.map { ContinuousClock.now - $0 } ?? .zero
            let isInitFailure = spawnError != nil || !slotState.sawNext || slotState.initError != nil
            let healthy = !isInitFailure && (slotState.servedByProcess > 0 || uptime >= healthyUptime)
            if isInitFailure && !s.stopping {
                let failure: InitFailure
                if let spawnError {
                    failure = InitFailure(invocationErrorType: "Runtime.InvalidEntrypoint", message: spawnError.message)
                } else if let posted = slotState.initError {
                    failure = posted
                } else {
                    failure = InitFailure(
                        invocationErrorType: "Runtime.ExitError", message: "Runtime exited with error: \(exitText)")
                }
                initMessage = failure.message
                s.lastInitError = failure.message
                s.consecutiveInitFailures += 1
                if s.consecutiveInitFailures >= maxInitFailures && s.failure == nil {
                    s.failure = failure
                    newlyFailing = failure
                    while let pending = s.queue.popFirst() {
                        toFail.append(
                            (pending.completion, .success(failedByInit(failure, requestID: pending.requestID))))
                    }
                } else if s.failure != nil {
                    s.failure = failure
                }
            }
            slotState.process = nil
            slotState.lastExit = exitText
            slotState.phase = s.stopping ? .stopped : .backoff
            s.slots[slot] = slotState
            return ExitOutcome(healthy: healthy, initFailure: isInitFailure, stopping: s.stopping)
        }
        waiter?.resume(nil)
        for (completion, result) in toFail { completion.complete(result) }
        if let newlyFailing {
            logger.error(
                "function is failing: \(maxInitFailures) consecutive init failures; invocations fail fast until a worker initialises",
                metadata: [
                    "cinescale.error.type": .string(newlyFailing.invocationErrorType),
                    "cinescale.error.message": .string(newlyFailing.message),
                ])
        } else if let initMessage, !outcome.stopping {
            logger.warning(
                "worker failed to initialise",
                metadata: [
                    "cinescale.worker": .stringConvertible(slot), "cinescale.error.message": .string(initMessage),
                ])
        } else if !outcome.stopping {
            logger.info(
                "worker exited",
                metadata: [
                    "cinescale.worker": .stringConvertible(slot), "cinescale.exit": .string(exitText),
                ])
        }
        return outcome
    }

    /// Stops taking work: queued invocations fail with shuttingDown. In-flight ones end with their workers.
    func beginStop() {
        let (drained, watchdog) = state.withLock { s -> ([Pending], UnsafeContinuation<Void, Never>?) in
            s.stopping = true
            var drained: [Pending] = []
            while let p = s.queue.popFirst() { drained.append(p) }
            return (drained, s.takeWatchdog())
        }
        watchdog?.resume()
        for pending in drained { pending.completion.complete(.failure(.stopping(function: name))) }
    }

    func markStopped() {
        state.withLock { s in
            s.stopped = true
            for i in s.slots.indices { s.slots[i].phase = .stopped }
        }
    }

    func status() -> FunctionStatus {
        state.withLock { s in
            FunctionStatus(
                name: name,
                state: s.stopped || s.stopping ? .stopped : (s.failure != nil ? .failing : .active),
                queueDepth: s.queue.count,
                inFlight: s.slots.reduce(0) { $0 + ($1.current == nil ? 0 : 1) },
                restarts: s.slots.reduce(0) { $0 + max(0, $1.starts - 1) },
                lastInitError: s.lastInitError,
                workers: s.slots.enumerated().map { i, slot in
                    WorkerStatus(
                        index: i, pid: slot.process?.pid, runtimeAPIPort: slot.port, state: slot.phase,
                        restarts: max(0, slot.starts - 1), invocations: slot.invocations, lastExit: slot.lastExit)
                })
        }
    }
}
