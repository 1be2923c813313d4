// trigger-bench: what upload notifications cost and how fast they start the function, with real processes:
// a `cinescale store` (bucket notifications to a webhook target), a `cinescale gateway` (trigger rule →
// `hello record` worker that stamps the wall clock at handler start), and N concurrent uploaders of small
// objects driven from here through S3Client (AsyncHTTPClient, keep-alive).
//
// Phases alternate between uploads to a bucket without notification rules and to one with a rule to the
// gateway. Prints uploads/s of both and the cost (median of the pairs), notifications/s committed into the
// gateway's durable queue, and the latency from each upload's 200 to its handler starting (p50/p99), against
// the targets and the figures measured for Ceph RGW here.
//
// usage: trigger-bench CINESCALE_BINARY HELLO_BINARY [objects=3000] [uploaders=8] [size=1024] [pairs=5]
import AsyncHTTPClient
import Foundation
import NIOCore
import S3Client
import SigV4
import Synchronization

let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    print("usage: trigger-bench CINESCALE_BINARY HELLO_BINARY [objects=3000] [uploaders=8] [size=1024] [pairs=5]")
    exit(2)
}
let cinescale = URL(fileURLWithPath: arguments[1]).standardizedFileURL.path
let hello = URL(fileURLWithPath: arguments[2]).standardizedFileURL.path
let objects = arguments.count > 3 ? Int(arguments[3]) ?? 3000 : 3000
let uploaders = arguments.count > 4 ? Int(arguments[4]) ?? 8 : 8
let size = arguments.count > 5 ? Int(arguments[5]) ?? 1024 : 1024
let pairs = max(1, arguments.count > 6 ? Int(arguments[6]) ?? 5 : 5)
let credentials = Credentials(accessKeyId: "AKIDTRIGGERBENCH", secretAccessKey: "trigger-bench-secret")
let token = "trigger-bench-token"

let root = FileManager.default.temporaryDirectory.appendingPathComponent("trigger-bench-\(UUID().uuidString)").path
try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
defer {
    if ProcessInfo.processInfo.environment["TRIGGER_BENCH_KEEP"] == nil {
        try? FileManager.default.removeItem(atPath: root)
    } else {
        print("kept \(root)")
    }
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

/// A progress line on stderr, unbuffered (stdout is buffered when it is a file).
func progress(_ line: String) {
    FileHandle.standardError.write(Data("trigger-bench: \(line)\n".utf8))
}

/// Starts a cinescale server with `--port 0 --port-file`; returns the process and its port.
func start(_ name: String, _ args: [String], port: Int = 0) throws -> (Process, Int) {
    let portFile = "\(root)/\(name).port"
    try? FileManager.default.removeItem(atPath: portFile)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: cinescale)
    process.arguments =
        args + [
            "--port", String(port), "--port-file", portFile, "--access-key", credentials.accessKeyId, "--secret-key",
            credentials.secretAccessKey, "--log-level", "warning",
        ]
    _ = FileManager.default.createFile(atPath: "\(root)/\(name).log", contents: nil)
    let log = FileHandle(forWritingAtPath: "\(root)/\(name).log")
    process.standardOutput = log
    process.standardError = log
    try process.run()
    let deadline = Date().addingTimeInterval(30)
    while Date() < deadline {
        if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(text) {
            return (process, port)
        }
        guard process.isRunning else { break }
        usleep(20_000)
    }
    process.terminate()
    throw NSError(
        domain: "trigger-bench", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(name) did not start; see its log"])
}

let records = "\(root)/records.log"
/// The handler's workers run at this nice value, as `cinescale dev` runs its functions (probe 5, transcode
/// 10): functions yield the CPU to the uploads and the event intake. TRIGGER_BENCH_NICE=0 runs them at the
/// same priority.
let handlerNice = Int(ProcessInfo.processInfo.environment["TRIGGER_BENCH_NICE"] ?? "") ?? 10
let gatewayConfig = """
    functions:
      rec:
        command: ["\(hello)", "record"]
        environment: {HELLO_RECORD_FILE: "\(records)", HELLO_RECORD_STAMP: "1", HELLO_RECORD_FSYNC: "0"}
        concurrency: 2
        nice: \(handlerNice)
    triggers:
      - {function: rec, bucket: ingest}
    """
try gatewayConfig.write(toFile: "\(root)/gateway.yaml", atomically: true, encoding: .utf8)
var (gateway, gatewayPort) = try start(
    "gateway", ["gateway", "--config", "\(root)/gateway.yaml", "--data-dir", "\(root)/gateway", "--event-token", token])
let storeArguments = [
    "store", "--data-dir", "\(root)/store", "--notify-webhook", "gw=http://127.0.0.1:\(gatewayPort)/events",
    "--notify-token", token,
]
var (store, storePort) = try start("store", storeArguments)
defer {
    for process in [store, gateway] where process.isRunning {
        process.terminate()
        process.waitUntilExit()
    }
}

var clientConfiguration = HTTPClient.Configuration()
clientConfiguration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = uploaders
let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: clientConfiguration)
let s3 = S3Client(
    configuration: S3ClientConfiguration(
        endpoint: URL(string: "http://127.0.0.1:\(storePort)")!, region: "us-east-1", credentials: credentials),
    httpClient: http)
try await s3.createBucket("plain")
try await s3.createBucket("ingest")
try await s3.putBucketNotificationConfiguration(
    bucket: "ingest",
    xml: """
        <NotificationConfiguration><QueueConfiguration><Id>bench</Id><Queue>arn:minio:sqs::gw:webhook</Queue>\
        <Event>s3:ObjectCreated:*</Event></QueueConfiguration></NotificationConfiguration>
        """)

func wallNanoseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
}

/// Uploads `count` objects with `uploaders` concurrent loops; returns (seconds, answer time per key).
func upload(bucket: String, count: Int, prefix: String) async throws -> (Double, [String: Int64]) {
    let body = ByteBuffer(repeating: UInt8(ascii: "x"), count: size)
    let next = ManagedCounter()
    let started = ContinuousClock.now
    let answered = try await withThrowingTaskGroup(of: [String: Int64].self) { group in
        for _ in 0..<uploaders {
            group.addTask {
                var mine: [String: Int64] = [:]
                while true {
                    let n = next.increment()
                    guard n < count else { break }
                    let key = "\(prefix)/object-\(n)"
                    _ = try await s3.putObject(bucket: bucket, key: key, body: body)
                    mine[key] = wallNanoseconds()
                }
                return mine
            }
        }
        var all: [String: Int64] = [:]
        for try await part in group { all.merge(part) { a, _ in a } }
        return all
    }
    return (seconds(ContinuousClock.now - started), answered)
}

final class ManagedCounter: Sendable {
    private let value = Mutex(0)
    func increment() -> Int {
        value.withLock { v in
            defer { v += 1 }
            return v
        }
    }
}

/// The gateway's count of invocations committed to its queue.
func enqueued() async throws -> Int {
    let response = try await http.execute(
        HTTPClientRequest(url: "http://127.0.0.1:\(gatewayPort)/metrics"), timeout: .seconds(10))
    let text = String(buffer: try await response.body.collect(upTo: 16 << 20))
    for line in text.split(separator: "\n") where line.hasPrefix("cinescale_gateway_invocations_enqueued_total ") {
        return Int(Double(line.split(separator: " ").last ?? "0") ?? 0)
    }
    return 0
}

let storePID = store.processIdentifier
let gatewayPID = gateway.processIdentifier
let gatewayArguments = [
    "gateway", "--config", "\(root)/gateway.yaml", "--data-dir", "\(root)/gateway", "--event-token", token,
]

/// CPU seconds (user + system) used so far by `pid` and, with `children`, by its child processes.
func cpuSeconds(_ pid: Int32, children: Bool = false) -> Double {
    func ticks(_ pid: Int32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = text.lastIndex(of: ")")
        else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command: state(0) ppid(1) ... utime(11) stime(12)
        return (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
    }
    var total = ticks(pid)
    if children, let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") {
        for entry in entries {
            guard let child = Int32(entry),
                let text = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                let close = text.lastIndex(of: ")"),
                Int32(text[text.index(after: close)...].split(separator: " ")[1]) == pid
            else { continue }
            total += ticks(child)
        }
    }
    return total / Double(sysconf(Int32(_SC_CLK_TCK)))
}

struct CPU {
    var store: Double
    var gateway: Double
    var workers: Double
    var bench: Double

    static func now() -> CPU {
        CPU(
            store: cpuSeconds(storePID), gateway: cpuSeconds(gatewayPID),
            workers: cpuSeconds(gatewayPID, children: true) - cpuSeconds(gatewayPID),
            bench: cpuSeconds(getpid()))
    }

    static func + (a: CPU, b: CPU) -> CPU {
        CPU(
            store: a.store + b.store, gateway: a.gateway + b.gateway, workers: a.workers + b.workers,
            bench: a.bench + b.bench)
    }

    static func - (a: CPU, b: CPU) -> CPU {
        CPU(
            store: a.store - b.store, gateway: a.gateway - b.gateway, workers: a.workers - b.workers,
            bench: a.bench - b.bench)
    }

    func perUpload(_ n: Int) -> String {
        func ms(_ v: Double) -> String { String(format: "%.3f", v / Double(n) * 1000) }
        return
            "store \(ms(store))  gateway \(ms(gateway))  workers \(ms(workers))  uploaders \(ms(bench))  (CPU ms per upload)"
    }
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
}

// Warm-up: connections, the worker, both buckets' code paths.
_ = try await upload(bucket: "plain", count: 200, prefix: "warm")
_ = try await upload(bucket: "ingest", count: 50, prefix: "warm")
while try await enqueued() < 50 { try await Task.sleep(for: .milliseconds(20)) }
try await Task.sleep(for: .milliseconds(500))
let warmLines = (try? String(contentsOfFile: records, encoding: .utf8))?.split(separator: "\n").count ?? 0

print(
    "trigger-bench: \(uploaders) uploaders, \(objects) objects of \(size) B with and without notifications in \(pairs) alternating pairs of phases, store and gateway as processes, handler at nice \(handlerNice)"
)

/// Lines in the handler's record file (one per handler start).
/// Reads only what was appended since the last call (the file grows by megabytes, and re-reading it all
/// every 20 ms cost CPU charged to the phase being measured).
final class LineCounter {
    private var handle: FileHandle?
    private(set) var lines = 0

    func count() -> Int {
        if handle == nil { handle = FileHandle(forReadingAtPath: records) }
        if let data = try? handle?.readToEnd() { lines += data.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) } }
        return lines
    }
}
let lineCounter = LineCounter()
@MainActor func recordLines() -> Int { lineCounter.count() }

// Alternating pairs of phases (plain then ingest, ingest then plain, …): this machine's speed drifts by tens
// of percent from one minute to the next, so the cost is the median of the pairs' costs, each pair measured
// within seconds. An ingest phase ends when its handlers have all started, so the next phase starts quiet.
let perPhase = objects / pairs
var plainCPU = CPU(store: 0, gateway: 0, workers: 0, bench: 0)
var ingestCPU = plainCPU
var plainRates: [Double] = []
var ingestRates: [Double] = []
var costs: [Double] = []
var commitRates: [Double] = []
var answered: [String: Int64] = [:]
var expectedLines = warmLines
for pair in 0..<pairs {
    var plainRate = 0.0
    var ingestRate = 0.0
    for plain in pair % 2 == 0 ? [true, false] : [false, true] {
        let before = CPU.now()
        if plain {
            let (elapsed, _) = try await upload(bucket: "plain", count: perPhase, prefix: "run-\(pair)")
            plainRate = Double(perPhase) / elapsed
            plainCPU = plainCPU + (CPU.now() - before)
            continue
        }
        let enqueuedBefore = try await enqueued()
        let start = ContinuousClock.now
        let (elapsed, keys) = try await upload(bucket: "ingest", count: perPhase, prefix: "run-\(pair)")
        ingestRate = Double(perPhase) / elapsed
        var committedAt = ContinuousClock.now
        while try await enqueued() < enqueuedBefore + perPhase {
            try await Task.sleep(for: .milliseconds(5))
            committedAt = ContinuousClock.now
        }
        commitRates.append(Double(perPhase) / seconds(committedAt - start))
        answered.merge(keys) { a, _ in a }
        expectedLines += perPhase
        let deadline = ContinuousClock.now + .seconds(120)
        while recordLines() < expectedLines && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        ingestCPU = ingestCPU + (CPU.now() - before)
    }
    plainRates.append(plainRate)
    ingestRates.append(ingestRate)
    costs.append((1 - ingestRate / plainRate) * 100)
    progress(
        String(
            format: "pair %d: %.0f uploads/s without, %.0f with notifications: cost %.1f %%", pair + 1, plainRate,
            ingestRate, costs.last!))
}

// Every handler start, matched to its upload's answer.
var latencies: [Double] = []
let lines = (try? String(contentsOfFile: records, encoding: .utf8))?.split(separator: "\n").dropFirst(warmLines) ?? []
for line in lines {
    guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
        let started = (object["startedAtNs"] as? NSNumber)?.int64Value,
        let records = (object["event"] as? [String: Any])?["Records"] as? [[String: Any]],
        let rawKey = ((records.first?["s3"] as? [String: Any])?["object"] as? [String: Any])?["key"] as? String,
        let key = rawKey.replacingOccurrences(of: "+", with: " ").removingPercentEncoding,
        let answer = answered[key]
    else { continue }
    latencies.append(Double(started - answer) / 1e6)
}
if latencies.isEmpty, let line = lines.last { print("unmatched line: \(line.prefix(400))") }
latencies.sort()

// Backlog: the gateway is down while `objects` uploads queue their events in the store; once it is back,
// how fast do they flow into its durable queue (the store retries at most 2 s apart)? Measured with MinIO's
// one event per POST, then with the store restarted to send up to 64 records per POST.
@MainActor func drainBacklog(prefix: String) async throws -> Double {
    gateway.terminate()
    gateway.waitUntilExit()
    _ = try await upload(bucket: "ingest", count: objects, prefix: prefix)
    progress("draining a backlog of \(objects) events")
    (gateway, _) = try start("gateway", gatewayArguments, port: gatewayPort)
    var firstCommit: ContinuousClock.Instant?
    var lastCommit = ContinuousClock.now
    var committed = 0
    while committed < objects {
        committed = (try? await enqueued()) ?? 0
        if committed > 0, firstCommit == nil { firstCommit = ContinuousClock.now }
        lastCommit = ContinuousClock.now
        // Polled every 10 ms: often enough for a 1 % resolution, rarely enough not to steal the CPU measured.
        if committed < objects { try await Task.sleep(for: .milliseconds(10)) }
    }
    return Double(objects) / seconds(lastCommit - (firstCommit ?? lastCommit))
}
let drainRate = try await drainBacklog(prefix: "backlog")
store.terminate()
store.waitUntilExit()
(store, _) = try start("store", storeArguments + ["--notify-batch-size", "64"], port: storePort)
let batchedDrainRate = try await drainBacklog(prefix: "backlog-batched")
func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
let cost = median(costs)
let measured = perPhase * pairs
let p50 = percentile(latencies, 0.50)
let p99 = percentile(latencies, 0.99)

func f(_ v: Double, _ digits: Int = 0) -> String { String(format: "%.\(digits)f", v) }
print("")
print(
    "uploads/s without notifications  \(f(median(plainRates)))   (median of \(pairs) phases: \(plainRates.map { f($0) }.joined(separator: ", ")))"
)
print(
    "uploads/s with notifications     \(f(median(ingestRates)))   (\(ingestRates.map { f($0) }.joined(separator: ", ")))"
)
print(
    "cost of notifications            \(f(cost, 1)) %   (target < 20 %; median of the pairs: \(costs.map { f($0, 1) }.joined(separator: ", ")))"
)
print("notifications/s into the queue   \(f(median(commitRates))) while uploading (bounded by the uploads)")
print(
    "  draining a backlog             \(f(drainRate))   = \(f(drainRate / 1000, 2))× the 1 000/s target, \(f(drainRate / 550, 2))× Ceph RGW (~550/s here)   (MinIO's format, one event per POST)"
)
print(
    "  draining a backlog, batched    \(f(batchedDrainRate))   = \(f(batchedDrainRate / 1000, 2))× the 1 000/s target, \(f(batchedDrainRate / 550, 2))× Ceph RGW   (--notify-batch-size 64)"
)
print(
    "upload 200 → handler start       p50 \(f(p50, 2)) ms (target ≤ 10; RGW persistent 50 → \(f(50 / p50, 1))×)   p99 \(f(p99, 2)) ms (target ≤ 50; RGW 104 → \(f(104 / p99, 1))×)"
)
print("handler starts matched           \(latencies.count) of \(measured)")
print("CPU without notifications        \(plainCPU.perUpload(measured))")
print("CPU with notifications           \(ingestCPU.perUpload(measured))   (until the last handler started)")
try await http.shutdown().get()
struct IncompleteRun: Error, CustomStringConvertible {
    var description: String { "not every upload's handler start was found" }
}
if latencies.count < measured { throw IncompleteRun() }
