import AsyncHTTPClient
import Foundation
import Gateway
import Hummingbird
import InvocationQueue
import Logging
import NIOCore
import PostgresInvocationQueue
import ServiceLifecycle
import SigV4
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The project venv's Python with awslambdaric (created by the test script before `swift test`).
enum Python {
    static let path: String? = {
        var candidates: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["CINESCALE_VENV_PYTHON"] { candidates.append(explicit) }
        // <repo>/Tests/GatewayTests/LiveGateway.swift -> <repo>/.venv/bin/python (through symlinks too).
        for file in [URL(fileURLWithPath: #filePath), URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()] {
            let repo = file.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            candidates.append(repo.appendingPathComponent(".venv/bin/python").path)
        }
        return candidates.first { path in
            FileManager.default.isExecutableFile(atPath: path)
                && FileManager.default.fileExists(
                    atPath: URL(fileURLWithPath: path).deletingLastPathComponent().deletingLastPathComponent()
                        .appendingPathComponent("lib").path)
        }.flatMap { path in hasAwslambdaric(path) ? path : nil }
    }()

    static var available: Bool { path != nil }

    private static func hasAwslambdaric(_ python: String) -> Bool {
        let lib = URL(fileURLWithPath: python).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("lib")
        guard let versions = try? FileManager.default.contentsOfDirectory(atPath: lib.path) else { return false }
        return versions.contains { v in
            FileManager.default.fileExists(atPath: lib.appendingPathComponent("\(v)/site-packages/awslambdaric").path)
        }
    }

    static let skipMessage: Comment = "needs .venv/bin/python with awslambdaric (created by ./scripts/test)"
}

/// Python handler modules written into a fresh directory.
final class HandlerDirectory: Sendable {
    let path: String

    init() throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("cinescale-gw-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try Self.handlers.write(toFile: path + "/handlers.py", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: Self.recorder.path, toPath: path + "/recorder.py")
        try "import module_that_does_not_exist_cinescale\n\ndef handler(event, context):\n    return event\n"
            .write(toFile: path + "/broken.py", atomically: true, encoding: .utf8)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    static let handlers = """
        import json, os, signal, threading, time

        if os.environ.get("IGNORE_SIGTERM") == "1":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

        def handler(event, context):
            action = event.get("action", "echo") if isinstance(event, dict) else "echo"
            if action == "echo":
                return event
            if action == "fail":
                raise ValueError("boom " + str(event.get("detail", "")))
            if action == "sleep":
                time.sleep(event["seconds"])
                return {"slept": event["seconds"]}
            if action == "exit":
                os._exit(event.get("code", 3))
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if action == "pid":
                return {"pid": os.getpid(), "remaining": context.get_remaining_time_in_millis(),
                        "requestId": context.aws_request_id, "arn": context.invoked_function_arn}
            if action == "env":
                return {k: os.environ.get(k) for k in event["names"]}
            if action == "write":
                with open(event["path"] + ".tmp", "w") as f:
                    json.dump(event, f)
                os.rename(event["path"] + ".tmp", event["path"])
                return {"written": True}
            if action == "big":
                return "x" * event["size"]
            if action == "nice":
                seen = []
                worker = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, 0)))
                worker.start()
                worker.join()
                policies = []
                worker = threading.Thread(target=lambda: policies.append(os.sched_getscheduler(0)))
                worker.start()
                worker.join()
                return {"handler": os.getpriority(os.PRIO_PROCESS, 0), "newThread": seen[0],
                        "runtimeMain": os.getpriority(os.PRIO_PROCESS, os.getpid()),
                        "policy": os.sched_getscheduler(0), "newThreadPolicy": policies[0]}
            return {"unknown": action}
        """

    /// The recorder function shared with the Python trigger tests (IntegrationTests/recorder.py): every run in
    /// `runs.log`, and unless `FAIL=1` its effect as `effects/<request id>.json`.
    static let recorder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("IntegrationTests/recorder.py")

    /// Lines of `runs.log` as JSON objects.
    func runs() -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: path + "/runs.log", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    /// The recorder behind a gate: `gated.handler` waits until `release()` is called, then records as
    /// `recorder.handler` does (so `runs()` lists only the runs let through).
    struct Gate: Sendable {
        let path: String
        func release() { _ = FileManager.default.createFile(atPath: path, contents: Data()) }
    }

    func gatedRecorder() throws -> Gate {
        try """
        import os, time
        import recorder

        def handler(event, context):
            while not os.path.exists(os.path.join(os.environ["RECORD_DIR"], "release")):
                time.sleep(0.02)
            return recorder.handler(event, context)
        """.write(toFile: path + "/gated.py", atomically: true, encoding: .utf8)
        return Gate(path: path + "/release")
    }

    /// Request ids with a recorded effect.
    func effects() -> Set<String> {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path + "/effects")) ?? []
        return Set(names.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) })
    }

    /// A function running `module.handler` under awslambdaric.
    func function(
        _ name: String, module: String = "handlers", timeout: Duration = .seconds(3), concurrency: Int = 1,
        maxQueued: Int = 1000, maxPayloadBytes: Int = FunctionConfiguration.defaultMaxPayloadBytes,
        environment: [String: String] = [:]
    ) -> FunctionConfiguration {
        FunctionConfiguration(
            name: name, command: [Python.path ?? "python3", "-m", "awslambdaric", "\(module).handler"],
            environment: ["PYTHONDONTWRITEBYTECODE": "1"].merging(environment) { $1 },
            timeout: timeout, concurrency: concurrency, maxPayloadBytes: maxPayloadBytes, maxQueued: maxQueued,
            handler: "\(module).handler", workingDirectory: path)
    }
}

/// A running gateway on 127.0.0.1 and a free port, for the length of `body`; always shut down afterwards,
/// and every worker process group checked gone.
struct LiveGateway: Sendable {
    static let credentials = Credentials(accessKeyId: "AKIDGATEWAYTEST", secretAccessKey: "gateway/test+secret")
    let service: GatewayService
    let port: Int

    static var logger: Logger {
        var logger = Logger(label: "test.gateway")
        logger.logLevel =
            ProcessInfo.processInfo.environment["GATEWAY_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .critical
        return logger
    }

    static func run<T: Sendable>(
        _ functions: [FunctionConfiguration],
        configure: (inout GatewayConfiguration) -> Void = { _ in },
        additionalRoutes: @escaping @Sendable (Router<BasicRequestContext>) -> Void = { _ in },
        _ body: @Sendable (LiveGateway) async throws -> T
    ) async throws -> T {
        var configuration = GatewayConfiguration(
            functions: functions, port: 0, credentials: [credentials],
            inheritedEnvironment: ProcessInfo.processInfo.environment)
        configure(&configuration)
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-test-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        if configuration.queue.path == nil {
            configuration.queue.path = scratch.appendingPathComponent("queue.sqlite").path
        }
        let parts = try Parts(configuration)
        let service = try GatewayService(
            configuration: configuration, invocationQueue: parts.queue, logger: logger,
            additionalRoutes: additionalRoutes)
        let group = ServiceGroup(configuration: .init(services: parts.services + service.services, logger: logger))
        let seen = PidRecorder()
        let result: Result<T, any Error> = await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try? await group.run() }
            let outcome: Result<T, any Error>
            do {
                let port = try await service.listeningPort()
                let gateway = LiveGateway(service: service, port: port)
                outcome = .success(try await body(gateway))
            } catch {
                outcome = .failure(error)
            }
            seen.record(service)
            await group.triggerGracefulShutdown()
            await tasks.waitForAll()
            return outcome
        }
        for status in service.status() {
            #expect(status.state == .stopped)
            for worker in status.workers { #expect(worker.pid == nil, "worker \(worker.index) of \(status.name)") }
        }
        for pid in seen.pids { #expect(processGroupIsGone(pid), "process group \(pid) left behind") }
        return try result.get()
    }

    /// The gateway's queue as `cinescale`'s composition root builds it: SQLite at `queue.path`, or the shared
    /// PostgreSQL queue — a service to run before (and stop after) the gateway.
    struct Parts {
        let queue: InvocationQueueKind
        let services: [any Service]

        init(_ configuration: GatewayConfiguration) throws {
            if let postgres = try configuration.queue.postgresConfiguration() {
                let queue = try PostgresInvocationQueue(configuration: postgres, logger: LiveGateway.logger)
                self.queue = .shared(queue)
                services = [queue]
            } else {
                queue = .local(try SQLiteInvocationQueue(path: try #require(configuration.queue.path)))
                services = []
            }
        }
    }

    // MARK: Invoke API client

    struct Reply: Sendable {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        var json: [String: Any]? {
            (try? JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed])) as? [String: Any]
        }
        func header(_ name: String) -> String? { headers[name.lowercased()] }
    }

    func send(
        _ method: String, _ path: String, headers extra: [(name: String, value: String)] = [], body: [UInt8] = [],
        credentials: Credentials? = LiveGateway.credentials, date: Date = Date()
    ) async throws -> Reply {
        var headers = extra + [(name: "host", value: "127.0.0.1:\(port)")]
        if let credentials {
            let signer = SigV4Signer(credentials: credentials, region: "us-east-1", service: "lambda")
            let parts = path.split(separator: "?", maxSplits: 1).map(String.init)
            let query = (parts.count > 1 ? parts[1] : "").split(separator: "&").map {
                pair -> (name: String, value: String) in
                let kv = pair.split(separator: "=", maxSplits: 1).map {
                    String($0).removingPercentEncoding ?? String($0)
                }
                return (name: kv[0], value: kv.count > 1 ? kv[1] : "")
            }
            headers += signer.signedHeaders(
                for: SigningRequest(method: method, path: parts[0], query: query, headers: headers),
                payload: .sha256(body),
                date: date)
        }
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
        request.method = .init(rawValue: method)
        for (name, value) in headers where name != "host" { request.headers.add(name: name, value: value) }
        if !body.isEmpty || method == "POST" { request.body = .bytes(ByteBuffer(bytes: body)) }
        // Generous: a test that expects a function's own timeout sets that short; this only bounds a hang (a SCHED_IDLE
        // worker's cold start on a loaded machine took over 30 s).
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(180))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        var replyHeaders: [String: String] = [:]
        for header in response.headers { replyHeaders[header.name.lowercased()] = header.value }
        return Reply(status: Int(response.status.code), headers: replyHeaders, body: Array(bytes.readableBytesView))
    }

    func invoke(
        _ function: String, _ payload: String, type: String? = nil, credentials: Credentials? = LiveGateway.credentials
    ) async throws -> Reply {
        var headers: [(name: String, value: String)] = [(name: "content-type", value: "application/json")]
        if let type { headers.append((name: "x-amz-invocation-type", value: type)) }
        return try await send(
            "POST", "/2015-03-31/functions/\(function)/invocations", headers: headers, body: Array(payload.utf8),
            credentials: credentials)
    }

    func status(_ function: String) -> FunctionStatus { service.status(of: function)! }

    /// Polls the status until `condition` holds (or fails after `timeout`).
    func waitFor(
        _ function: String, timeout: Duration = .seconds(60), _ what: String,
        _ condition: (FunctionStatus) -> Bool
    ) async throws -> FunctionStatus {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let s = status(function)
            if condition(s) { return s }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("timed out waiting for \(what): \(status(function))")
        throw CancellationError()
    }
}

/// Pids seen during a test, checked gone afterwards.
final class PidRecorder: Sendable {
    private let pids_ = Mutex<Set<Int32>>([])
    func record(_ service: GatewayService) {
        let found = service.status().flatMap { $0.workers.compactMap(\.pid) }
        pids_.withLock { $0.formUnion(found) }
    }
    var pids: Set<Int32> { pids_.withLock { $0 } }
}

/// True when no process is left in the group `pgid`.
func processGroupIsGone(_ pgid: Int32) -> Bool {
    kill(-pgid, 0) == -1 && errno == ESRCH
}

func processIsGone(_ pid: Int32) -> Bool {
    kill(pid, 0) == -1 && errno == ESRCH
}
