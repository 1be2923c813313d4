import Logging
import ServiceLifecycle

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Starts, restarts and stops the worker processes of every function: one supervision loop per worker slot,
/// in one task group, until graceful shutdown (or cancellation).
struct WorkerSupervisor: Sendable {
    let configuration: GatewayConfiguration
    let dispatchers: [FunctionDispatcher]
    let logger: Logger
    private let stopRequested = AsyncEvent()

    /// Stops the workers (as graceful shutdown does) without waiting for them: the gateway's `shutdown` part
    /// calls it first, so that the parts shut down after it find their workers already stopping.
    func requestStop() {
        stopRequested.fire()
    }

    /// Runs until `requestStop()`, graceful shutdown or cancellation; returns once every worker process has
    /// been reaped.
    /// `ports[f][i]` is the Runtime API port of slot `i` of `dispatchers[f]`.
    func run(ports: [[Int]]) async {
        let stopped = AsyncEvent()
        let loopsDone = Countdown(ports.reduce(0) { $0 + $1.count })
        await withTaskGroup(of: Void.self) { group in
            for (f, dispatcher) in dispatchers.enumerated() {
                for (slot, port) in ports[f].enumerated() {
                    dispatcher.setPort(slot: slot, port: port)
                    group.addTask {
                        await self.supervise(dispatcher, slot: slot, port: port, stopped: stopped)
                        loopsDone.decrement()
                    }
                }
            }
            for dispatcher in dispatchers {
                group.addTask { await self.watchTimeouts(dispatcher, stopped: stopped) }
            }
            group.addTask {
                // A stop request, graceful shutdown, or cancellation of the gateway: stop either way.
                await withTaskGroup(of: Void.self) { first in
                    first.addTask { try? await gracefulShutdown() }
                    first.addTask { await self.stopRequested.wait() }
                    await first.next()
                    first.cancelAll()
                }
                self.stop(stopped: stopped)
                let exitedInTime = await loopsDone.reachedZero.sleep(for: self.configuration.shutdownGracePeriod)
                if !exitedInTime {
                    let stragglers = self.dispatchers.flatMap { $0.liveProcesses() }
                    if !stragglers.isEmpty {
                        self.logger.warning(
                            "workers did not exit after SIGTERM; sending SIGKILL",
                            metadata: [
                                "cinescale.pids": .string(stragglers.map { String($0.pid) }.joined(separator: ","))
                            ])
                    }
                    for process in stragglers { process.signalGroup(SIGKILL) }
                }
            }
        }
        for dispatcher in dispatchers { dispatcher.markStopped() }
        logger.info("all workers stopped")
    }

    /// Enforces the function's timeout. All invocations of a function share one timeout, so a new invocation
    /// never has an earlier deadline than those already running: sleeping until the earliest deadline is
    /// enough, and under steady load this wakes about once per timeout period (no per-invocation timer).
    private func watchTimeouts(_ dispatcher: FunctionDispatcher, stopped: AsyncEvent) async {
        while !stopped.isFired {
            if let deadline = dispatcher.nextDeadline() {
                let now = ContinuousClock.now
                if deadline > now, await stopped.sleep(for: deadline - now) { return }
                dispatcher.expireOverdue()
            } else {
                await dispatcher.waitForInvocation()
            }
        }
    }

    /// Stops handing out work and sends SIGTERM to every worker's process group.
    private func stop(stopped: AsyncEvent) {
        for dispatcher in dispatchers { dispatcher.beginStop() }
        stopped.fire()
        let live = dispatchers.flatMap { $0.liveProcesses() }
        logger.info("stopping workers", metadata: ["cinescale.workers": .stringConvertible(live.count)])
        for process in live { process.signalGroup(SIGTERM) }
    }

    /// One worker slot: start the process, wait for it to exit, restart it with backoff; until stopped.
    private func supervise(_ dispatcher: FunctionDispatcher, slot: Int, port: Int, stopped: AsyncEvent) async {
        let function = dispatcher.configuration
        let environment = workerEnvironment(function, port: port)
        var failures = 0
        var logger = dispatcher.logger
        logger[metadataKey: "cinescale.worker"] = .stringConvertible(slot)
        while !stopped.isFired {
            if failures > 0 {
                dispatcher.setPhase(slot: slot, .backoff)
                if await stopped.sleep(for: backoff(failures: failures)) { break }
            }
            let outcome = dispatcher.launch(slot: slot) {
                guard let executable = resolveExecutable(function.command[0], path: environment["PATH"]) else {
                    return .failure(
                        GatewayError(
                            .spawnFailed, "Couldn't find valid bootstrap(s): \(function.command[0])",
                            function: function.name))
                }
                do throws(GatewayError) {
                    return .success(
                        try ChildProcess.spawn(
                            executable: executable, arguments: Array(function.command.dropFirst()),
                            environment: environment, directory: function.workingDirectory, nice: function.nice,
                            idle: function.idle))
                } catch {
                    return .failure(error)
                }
            }
            switch outcome {
            case .stopping:
                return
            case .failed(let error):
                logger.error("cannot start worker", metadata: ["cinescale.error": .string(error.description)])
                _ = dispatcher.processExited(slot: slot, exit: nil, spawnError: error)
                failures += 1
            case .started(let process):
                logger.debug(
                    "worker started",
                    metadata: [
                        "cinescale.pid": .stringConvertible(process.pid),
                        "cinescale.runtime.port": .stringConvertible(port),
                    ])
                let exit = await process.waitForExit()
                let result = dispatcher.processExited(slot: slot, exit: exit)
                if result.stopping { return }
                failures = result.healthy ? 0 : failures + 1
            }
        }
    }

    /// 50 ms doubling to 10 s (by default).
    private func backoff(failures: Int) -> Duration {
        let initial = configuration.restartBackoffInitial
        let cap = configuration.restartBackoffMax
        var delay = initial
        for _ in 1..<max(1, failures) {
            delay = delay * 2
            if delay >= cap { return cap }
        }
        return min(delay, cap)
    }

    /// Inherited environment minus secrets and Lambda-reserved names, then the function's variables, then the
    /// Lambda variables.
    func workerEnvironment(_ function: FunctionConfiguration, port: Int) -> [String: String] {
        var environment: [String: String] = [:]
        let patterns = configuration.secretVariablePatterns.map { $0.uppercased() }
        for (name, value) in configuration.inheritedEnvironment {
            let upper = name.uppercased()
            if patterns.contains(where: { upper.contains($0) }) { continue }
            if upper.hasPrefix("AWS_LAMBDA_") || upper.hasPrefix("_LAMBDA_") || upper == "_HANDLER"
                || upper == "LAMBDA_TASK_ROOT" || upper == "LAMBDA_RUNTIME_DIR" || upper == "AWS_EXECUTION_ENV"
            {
                continue
            }
            environment[name] = value
        }
        for (name, value) in function.environment { environment[name] = value }
        environment["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:\(port)"
        environment["AWS_LAMBDA_FUNCTION_NAME"] = function.name
        environment["AWS_LAMBDA_FUNCTION_VERSION"] = "$LATEST"
        environment["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = String(function.memoryMB)
        environment["AWS_LAMBDA_FUNCTION_TIMEOUT"] = String(function.timeoutSeconds)
        environment["AWS_REGION"] = configuration.region
        environment["AWS_DEFAULT_REGION"] = configuration.region
        environment["LAMBDA_TASK_ROOT"] = function.workingDirectory
        if let handler = function.handler { environment["_HANDLER"] = handler }
        return environment
    }
}
