import Foundation
import Gateway
import InvocationQueue
import NIOCore
import ServiceLifecycle
import Testing

/// Real worker processes: Python handlers under awslambdaric (the AWS runtime interface client).
@Suite("Workers under awslambdaric", .serialized, .enabled(if: Python.available, Python.skipMessage))
struct AwslambdaricTests {
    @Test func echoRoundTripThroughTheInvokeAPI() async throws {
        let dir = try HandlerDirectory()
        try await LiveGateway.run([dir.function("echo")]) { gw in
            let reply = try await gw.invoke("echo", "{\"hello\":\"world\",\"n\":[1,2,3]}")
            #expect(reply.status == 200)
            #expect(reply.header("X-Amz-Executed-Version") == "$LATEST")
            #expect(reply.header("X-Amz-Function-Error") == nil)
            #expect(reply.json?["hello"] as? String == "world")
            #expect(reply.json?["n"] as? [Int] == [1, 2, 3])

            let context = try await gw.invoke("echo", "{\"action\":\"pid\"}")
            #expect(context.json?["requestId"] as? String == context.header("x-amzn-RequestId"))
            #expect(context.json?["arn"] as? String == "arn:aws:lambda:us-east-1:000000000000:function:echo")
            let remaining = context.json?["remaining"] as? Int ?? 0
            #expect(remaining > 2000 && remaining <= 3000)

            let empty = try await gw.invoke("echo", "")
            #expect(empty.status == 200)
            #expect(empty.text == "{}")

            // In process, without HTTP.
            let direct = try await gw.service.invoke(function: "echo", payload: ByteBuffer(string: "{\"x\":1}"))
            #expect(!direct.isError)
            #expect(String(buffer: direct.payload) == "{\"x\": 1}")
        }
    }

    @Test func functionErrorIsUnhandled() async throws {
        let dir = try HandlerDirectory()
        try await LiveGateway.run([dir.function("fails")]) { gw in
            let reply = try await gw.invoke("fails", "{\"action\":\"fail\",\"detail\":42}")
            #expect(reply.status == 200)
            #expect(reply.header("X-Amz-Function-Error") == "Unhandled")
            #expect(reply.json?["errorType"] as? String == "ValueError")
            #expect(reply.json?["errorMessage"] as? String == "boom 42")
            // The worker survives a handled error.
            let pid = gw.status("fails").workers[0].pid
            let next = try await gw.invoke("fails", "{\"x\":1}")
            #expect(next.json?["x"] as? Int == 1)
            #expect(gw.status("fails").workers[0].pid == pid)
        }
    }

    @Test func timeoutKillsAndReplacesTheWorker() async throws {
        let dir = try HandlerDirectory()
        try await LiveGateway.run([dir.function("slow", timeout: .seconds(1))]) { gw in
            let first = try await gw.invoke("slow", "{\"action\":\"pid\"}")
            let firstPid = try #require(first.json?["pid"] as? Int)
            let started = ContinuousClock.now
            let reply = try await gw.invoke("slow", "{\"action\":\"sleep\",\"seconds\":10}")
            let elapsed = ContinuousClock.now - started
            #expect(elapsed >= .milliseconds(950) && elapsed < .seconds(3))
            #expect(reply.header("X-Amz-Function-Error") == "Unhandled")
            #expect(reply.json?["errorType"] as? String == "Runtime.TimeoutError")
            let message = reply.json?["errorMessage"] as? String ?? ""
            #expect(message.contains("Task timed out after 1.00 seconds"))
            #expect(message.contains(reply.header("x-amzn-RequestId") ?? "?"))

            let after = try await gw.invoke("slow", "{\"action\":\"pid\"}")
            #expect(after.status == 200)
            let secondPid = try #require(after.json?["pid"] as? Int)
            #expect(secondPid != firstPid)
            #expect(gw.status("slow").workers[0].restarts == 1)
            #expect(gw.status("slow").workers[0].lastExit == "signal: killed")
            #expect(processGroupIsGone(Int32(firstPid)))
        }
    }

    @Test func crashesFailTheInvocationAndRestart() async throws {
        let dir = try HandlerDirectory()
        try await LiveGateway.run([dir.function("crashy")]) { gw in
            let exit = try await gw.invoke("crashy", "{\"action\":\"exit\",\"code\":3}")
            #expect(exit.header("X-Amz-Function-Error") == "Unhandled")
            #expect(exit.json?["errorType"] as? String == "Runtime.ExitError")
            let requestID = exit.header("x-amzn-RequestId") ?? "?"
            #expect(
                exit.json?["errorMessage"] as? String
                    == "RequestId: \(requestID) Error: Runtime exited with error: exit status 3")

            let killed = try await gw.invoke("crashy", "{\"action\":\"kill\"}")
            #expect(killed.json?["errorType"] as? String == "Runtime.ExitError")
            #expect((killed.json?["errorMessage"] as? String)?.hasSuffix("signal: killed") == true)

            let ok = try await gw.invoke("crashy", "{\"still\":\"alive\"}")
            #expect(ok.status == 200)
            #expect(ok.json?["still"] as? String == "alive")
            let status = gw.status("crashy")
            #expect(status.restarts == 2)
            #expect(status.state == .active)
        }
    }

    @Test func initFailureIsReportedAndFailsFast() async throws {
        let dir = try HandlerDirectory()
        try await LiveGateway.run([dir.function("broken", module: "broken")]) { gw in
            // Queued before the function is known to be failing: failed when it is.
            let queued = try await gw.invoke("broken", "{}")
            #expect(queued.header("X-Amz-Function-Error") == "Unhandled")
            #expect(queued.json?["errorType"] as? String == "Runtime.InitError")

            let status = try await gw.waitFor("broken", "failing") { $0.state == .failing }
            let lastError = status.lastInitError ?? ""
            #expect(lastError.contains("Runtime.ImportModuleError"))
            #expect(lastError.contains("module_that_does_not_exist_cinescale"))

            let started = ContinuousClock.now
            let reply = try await gw.invoke("broken", "{}")
            #expect(ContinuousClock.now - started < .milliseconds(500))
            #expect(reply.status == 200)
            #expect(reply.json?["errorType"] as? String == "Runtime.InitError")
            #expect((reply.json?["errorMessage"] as? String)?.contains("module_that_does_not_exist_cinescale") == true)
            // Restarts go on, with backoff.
            let later = try await gw.waitFor("broken", "more restarts") { $0.restarts >= 3 }
            #expect(later.state == .failing)
        }
    }

    @Test func fullQueueIs429() async throws {
        let dir = try HandlerDirectory()
        try await LiveGateway.run([dir.function("busy", concurrency: 1, maxQueued: 2)]) { gw in
            _ = try await gw.waitFor("busy", "an idle worker") { $0.workers[0].state == .idle }
            try await withThrowingTaskGroup(of: Int.self) { group in
                group.addTask { try await gw.invoke("busy", "{\"action\":\"sleep\",\"seconds\":1}").status }
                _ = try await gw.waitFor("busy", "a busy worker") { $0.inFlight == 1 }
                group.addTask { try await gw.invoke("busy", "{\"n\":1}").status }
                group.addTask { try await gw.invoke("busy", "{\"n\":2}").status }
                _ = try await gw.waitFor("busy", "two queued") { $0.queueDepth == 2 }

                let throttled = try await gw.invoke("busy", "{\"n\":3}")
                #expect(throttled.status == 429)
                #expect(throttled.header("x-amzn-ErrorType") == "TooManyRequestsException")
                #expect(throttled.json?["Reason"] as? String == "ReservedFunctionConcurrentInvocationLimitExceeded")
                #expect(throttled.json?["message"] as? String == "Rate Exceeded.")
                #expect(throttled.json?["Type"] as? String == "User")

                var statuses: [Int] = []
                for try await status in group { statuses.append(status) }
                #expect(statuses == [200, 200, 200])
            }
        }
    }

    @Test func eventInvocationIsAcceptedThenRuns() async throws {
        let dir = try HandlerDirectory()
        let marker = dir.path + "/event-ran.json"
        try await LiveGateway.run([dir.function("events")]) { gw in
            let reply = try await gw.invoke(
                "events", "{\"action\":\"write\",\"path\":\"\(marker)\",\"tag\":\"e1\"}", type: "Event")
            #expect(reply.status == 202)
            #expect(reply.body.isEmpty)
            let deadline = ContinuousClock.now + .seconds(60)
            while !FileManager.default.fileExists(atPath: marker) && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            let written = try String(contentsOfFile: marker, encoding: .utf8)
            #expect(written.contains("\"tag\": \"e1\""))
        }
    }

    @Test func workerEnvironment() async throws {
        let dir = try HandlerDirectory()
        let function = dir.function("env", environment: ["FROM_CONFIG": "yes"])
        try await LiveGateway.run(
            [function],
            configure: {
                $0.inheritedEnvironment["MY_API_SECRET"] = "hidden"
                $0.inheritedEnvironment["PLAIN"] = "seen"
            }
        ) { gw in
            let names = [
                "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                "AWS_LAMBDA_FUNCTION_TIMEOUT", "AWS_REGION", "AWS_DEFAULT_REGION", "_HANDLER", "LAMBDA_TASK_ROOT",
                "AWS_LAMBDA_RUNTIME_API", "FROM_CONFIG", "MY_API_SECRET", "PLAIN",
            ]
            let quoted = names.map { "\"\($0)\"" }.joined(separator: ",")
            let reply = try await gw.invoke("env", "{\"action\":\"env\",\"names\":[\(quoted)]}")
            let env = try #require(reply.json)
            #expect(env["AWS_LAMBDA_FUNCTION_NAME"] as? String == "env")
            #expect(env["AWS_LAMBDA_FUNCTION_VERSION"] as? String == "$LATEST")
            #expect(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] as? String == "128")
            #expect(env["AWS_LAMBDA_FUNCTION_TIMEOUT"] as? String == "3")
            #expect(env["AWS_REGION"] as? String == "us-east-1")
            #expect(env["AWS_DEFAULT_REGION"] as? String == "us-east-1")
            #expect(env["_HANDLER"] as? String == "handlers.handler")
            #expect(env["LAMBDA_TASK_ROOT"] as? String == dir.path)
            let port = gw.status("env").workers[0].runtimeAPIPort.map { "127.0.0.1:\($0)" }
            #expect(env["AWS_LAMBDA_RUNTIME_API"] as? String == port)
            #expect(env["FROM_CONFIG"] as? String == "yes")
            #expect(env["MY_API_SECRET"] is NSNull)
            #expect(env["PLAIN"] as? String == "seen")
        }
    }

    @Test func workersRunAtTheirFunctionsNiceValue() async throws {
        let dir = try HandlerDirectory()
        var background = dir.function("background")
        background.nice = 7
        let normal = dir.function("normal")
        let before = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        try await LiveGateway.run([background, normal]) { gw in
            let niced = try #require(try await gw.invoke("background", #"{"action":"nice"}"#).json)
            #expect(niced["handler"] as? Int == 7)
            #expect(niced["newThread"] as? Int == 7)
            #expect(niced["runtimeMain"] as? Int == 7)
            let plain = try #require(try await gw.invoke("normal", #"{"action":"nice"}"#).json)
            #expect(plain["handler"] as? Int == Int(before) && plain["newThread"] as? Int == Int(before))
            #expect(niced["policy"] as? Int == 0 && plain["policy"] as? Int == 0)  // SCHED_OTHER
        }
    }

    @Test func idleWorkersRunUnderSchedIdle() async throws {
        let dir = try HandlerDirectory()
        var bulk = dir.function("bulk")
        bulk.idle = true
        bulk.nice = 19
        // SCHED_IDLE runs only when nothing else wants the CPU: on a loaded machine its cold start and handler take
        // long, and that is the policy working, not a hang.
        bulk.timeout = .seconds(120)
        let normal = dir.function("normal")
        try await LiveGateway.run([bulk, normal]) { gw in
            let idle = try #require(try await gw.invoke("bulk", #"{"action":"nice"}"#).json)
            // SCHED_IDLE is 5; the handler's threads inherit it, with the nice value.
            #expect(idle["policy"] as? Int == 5 && idle["newThreadPolicy"] as? Int == 5)
            #expect(idle["handler"] as? Int == 19)
            let plain = try #require(try await gw.invoke("normal", #"{"action":"nice"}"#).json)
            #expect(plain["policy"] as? Int == 0 && plain["newThreadPolicy"] as? Int == 0)
        }
        // The gateway's own threads keep the normal policy.
        #expect(sched_getscheduler(0) == 0)
    }

    @Test func gracefulShutdownStopsEveryWorker() async throws {
        let dir = try HandlerDirectory()
        let stubborn = dir.function("stubborn", concurrency: 2, environment: ["IGNORE_SIGTERM": "1"])
        let polite = dir.function("polite", concurrency: 2)
        let configuration = GatewayConfiguration(
            functions: [stubborn, polite], port: 0, credentials: [LiveGateway.credentials],
            inheritedEnvironment: ProcessInfo.processInfo.environment, shutdownGracePeriod: .seconds(1),
            queue: QueueConfiguration(path: dir.path + "/queue.sqlite"))
        let service = try GatewayService(
            configuration: configuration,
            invocationQueue: .local(try SQLiteInvocationQueue(path: dir.path + "/queue.sqlite")),
            logger: LiveGateway.logger)
        let group = ServiceGroup(configuration: .init(services: service.services, logger: LiveGateway.logger))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            let gw = LiveGateway(service: service, port: try await service.listeningPort())
            let pids = PidRecorder()
            do {
                for name in ["stubborn", "polite"] {
                    _ = try await gw.waitFor(name, "idle workers") { $0.workers.allSatisfy { $0.state == .idle } }
                }
                pids.record(service)
                #expect(pids.pids.count == 4)
                // An invocation still running at shutdown ends with its worker, and its caller gets the answer.
                tasks.addTask {
                    let reply = try await gw.invoke("polite", "{\"action\":\"sleep\",\"seconds\":30}")
                    #expect(reply.json?["errorType"] as? String == "Runtime.ExitError")
                    #expect((reply.json?["errorMessage"] as? String)?.hasSuffix("signal: terminated") == true)
                }
                _ = try await gw.waitFor("polite", "a busy worker") { $0.inFlight == 1 }
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
            let stopping = ContinuousClock.now
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
            let elapsed = ContinuousClock.now - stopping
            // The stubborn workers ignore SIGTERM: SIGKILLed after the 1 s grace period.
            #expect(elapsed >= .milliseconds(900) && elapsed < .seconds(5))
            for pid in pids.pids {
                #expect(processIsGone(pid), "pid \(pid) still exists")
                #expect(processGroupIsGone(pid))
            }
            for status in service.status() {
                #expect(status.state == .stopped)
                #expect(status.workers.allSatisfy { $0.pid == nil && $0.state == .stopped })
            }
        }
    }
}
