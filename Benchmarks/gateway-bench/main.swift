// gateway-bench: no-op invocations per second and latency through the gateway (Invoke API → Runtime API →
// a real `hello echo` worker → back), next to a bare HTTP echo served by the same HTTP stack (Hummingbird)
// on the same machine — the ceiling. Both are driven the same way: N keep-alive connections from
// AsyncHTTPClient for a fixed time. Prints the figures and the ratios.
//
// usage: gateway-bench HELLO_BINARY [seconds=10] [connections=16] [workers=2]
//        gateway-bench HELLO_BINARY --serve DIR [workers=2]
//   --serve starts the same two servers, writes wrk scripts and ports to DIR, and runs until SIGTERM, so that
//   an external load generator (scripts/bench-gateway uses wrk) does the driving.
import AsyncHTTPClient
import Foundation
import Gateway
import Hummingbird
import InvocationQueue
import Logging
import NIOCore
import ServiceLifecycle
import SigV4

let arguments = CommandLine.arguments
guard arguments.count >= 2 else {
    print("usage: gateway-bench HELLO_BINARY [seconds=10] [connections=16] [workers=2]")
    exit(2)
}
let hello = arguments[1]
let serveDirectory: String? = arguments.count > 3 && arguments[2] == "--serve" ? arguments[3] : nil
let seconds = serveDirectory == nil && arguments.count > 2 ? Int(arguments[2]) ?? 10 : 10
let connections = serveDirectory == nil && arguments.count > 3 ? Int(arguments[3]) ?? 16 : 16
let workers = arguments.count > 4 ? Int(arguments[4]) ?? 2 : 2

var logger = Logger(label: "gateway-bench")
logger.logLevel = .warning
let credentials = Credentials(accessKeyId: "AKIDBENCH", secretAccessKey: "bench-secret")
let payload = #"{"bench":true}"#

struct Measurement {
    var requests: Int
    var seconds: Double
    var p50: Double
    var p99: Double
    var errors: Int
    var rate: Double { Double(requests) / seconds }
}

/// Drives `url` with `connections` concurrent request loops for `duration`, after a one-second warm-up.
func drive(_ client: HTTPClient, url: String, headers: [(String, String)], duration: Int) async throws -> Measurement {
    func run(for window: Duration, record: Bool) async throws -> (Int, [Double], Int) {
        try await withThrowingTaskGroup(of: (Int, [Double], Int).self) { group in
            let end = ContinuousClock.now + window
            for _ in 0..<connections {
                group.addTask {
                    var count = 0
                    var errors = 0
                    var latencies: [Double] = []
                    if record { latencies.reserveCapacity(200_000) }
                    while ContinuousClock.now < end {
                        var request = HTTPClientRequest(url: url)
                        request.method = .POST
                        for (name, value) in headers { request.headers.add(name: name, value: value) }
                        request.body = .bytes(ByteBuffer(string: payload))
                        let start = ContinuousClock.now
                        let response = try await client.execute(request, timeout: .seconds(30))
                        _ = try await response.body.collect(upTo: 1 << 20)
                        let elapsed = ContinuousClock.now - start
                        if response.status != .ok { errors += 1 }
                        count += 1
                        if record {
                            latencies.append(
                                Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds)
                                    * 1000)
                        }
                    }
                    return (count, latencies, errors)
                }
            }
            var total = 0
            var errors = 0
            var all: [Double] = []
            for try await (count, latencies, failed) in group {
                total += count
                errors += failed
                all += latencies
            }
            return (total, all, errors)
        }
    }
    _ = try await run(for: .seconds(1), record: false)
    let started = ContinuousClock.now
    let (count, latencies, errors) = try await run(for: .seconds(duration), record: true)
    let elapsed = ContinuousClock.now - started
    let sorted = latencies.sorted()
    func percentile(_ p: Double) -> Double {
        sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
    return Measurement(
        requests: count, seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
        p50: percentile(0.50), p99: percentile(0.99), errors: errors)
}

// The ceiling: a bare echo route on the same HTTP stack.
let router = Router()
router.post("/echo") { request, _ -> Response in
    let body = try await request.body.collect(upTo: 1 << 20)
    return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: body))
}
let (echoPorts, echoPortContinuation) = AsyncStream.makeStream(of: Int.self)
let echoApp = Application(
    router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
    onServerRunning: { echoPortContinuation.yield($0.localAddress?.port ?? 0) }, logger: logger)

let queueDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-bench-\(UUID().uuidString)")
let queuePath = queueDirectory.appendingPathComponent("queue.sqlite").path
let gateway = try GatewayService(
    configuration: GatewayConfiguration(
        functions: [
            FunctionConfiguration(name: "noop", command: [hello, "echo"], concurrency: workers, maxQueued: 100_000)
        ],
        port: 0, credentials: [credentials], inheritedEnvironment: ProcessInfo.processInfo.environment,
        queue: QueueConfiguration(path: queuePath)),
    invocationQueue: .local(try SQLiteInvocationQueue(path: queuePath)), logger: logger)
defer { try? FileManager.default.removeItem(at: queueDirectory) }
let group = ServiceGroup(
    configuration: .init(
        services: [echoApp] + gateway.services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))

var clientConfiguration = HTTPClient.Configuration()
clientConfiguration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = connections
let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)

try await withThrowingTaskGroup(of: Void.self) { tasks in
    tasks.addTask { try await group.run() }
    var portIterator = echoPorts.makeAsyncIterator()
    let echoPort = await portIterator.next() ?? 0
    let gatewayPort = try await gateway.listeningPort()
    // Wait until every worker has asked for work.
    while gateway.status()[0].workers.contains(where: { $0.state != .idle }) {
        try await Task.sleep(for: .milliseconds(20))
    }
    let path = "/2015-03-31/functions/noop/invocations"
    let signed = SigV4Signer(credentials: credentials, region: "us-east-1", service: "lambda").signedHeaders(
        for: SigningRequest(method: "POST", path: path, headers: [(name: "host", value: "127.0.0.1:\(gatewayPort)")]),
        payload: .sha256(Array(payload.utf8)), date: Date())

    if let serveDirectory {
        func lua(_ headers: [(name: String, value: String)]) -> String {
            var script = "wrk.method = \"POST\"\nwrk.body = '\(payload)'\n"
            for header in headers where header.name.lowercased() != "host" {
                script += "wrk.headers[\"\(header.name)\"] = \"\(header.value)\"\n"
            }
            return script
        }
        try lua([]).write(toFile: serveDirectory + "/echo.lua", atomically: true, encoding: .utf8)
        try lua(signed).write(toFile: serveDirectory + "/invoke.lua", atomically: true, encoding: .utf8)
        let urls = "http://127.0.0.1:\(echoPort)/echo\nhttp://127.0.0.1:\(gatewayPort)\(path)\n"
        try urls.write(toFile: serveDirectory + "/urls", atomically: true, encoding: .utf8)
        try await tasks.waitForAll()
        return
    }
    print("gateway-bench: \(seconds) s each, \(connections) connections, \(workers) `hello echo` workers")
    let echo = try await drive(client, url: "http://127.0.0.1:\(echoPort)/echo", headers: [], duration: seconds)
    let invoke = try await drive(
        client, url: "http://127.0.0.1:\(gatewayPort)\(path)", headers: signed.map { ($0.name, $0.value) },
        duration: seconds)
    func line(_ name: String, _ m: Measurement) -> String {
        name.padding(toLength: 36, withPad: " ", startingAt: 0)
            + String(format: "%10.0f %10.2f %10.2f %8d", m.rate, m.p50, m.p99, m.errors)
    }
    let columns = ["req/s", "p50 ms", "p99 ms", "errors"].map {
        String(repeating: " ", count: max(0, 10 - $0.count)) + $0
    }
    print(String(repeating: " ", count: 36) + columns.joined(separator: " "))
    print(line("bare HTTP echo (Hummingbird)", echo))
    print(line("gateway invoke (no-op function)", invoke))
    print(
        String(
            format: "throughput ratio gateway/echo: %.2fx   (target: >= 5000 invocations/s)", invoke.rate / echo.rate))
    print(
        String(
            format: "p99 dispatch overhead (gateway p99 - echo p99): %.2f ms   (target: < 5 ms)", invoke.p99 - echo.p99)
    )
    try await client.shutdown()
    await group.triggerGracefulShutdown()
    try await tasks.waitForAll()
}
