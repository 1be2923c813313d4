// `hello`: the example function used to exercise the runtime and the gateway. Its behaviour is chosen by
// the first argument or, failing that, HELLO_MODE:
//
//   echo       returns the event bytes unchanged (the no-op of the benchmark; the default)
//   sleep      {"seconds": N} → sleeps N seconds → {"slept": N}
//   crash      dies mid-invocation (fatalError)
//   fail       throws HelloFailure → error response with errorType "HelloFailure"
//   init-fail  throws while creating the handler → init error, exit 1
//   record     appends the event as one line to HELLO_RECORD_FILE (fsync'd), then returns it; with
//              HELLO_RECORD_STAMP=1 the line is {"startedAtNs": <wall clock at handler start>, "event": <event>};
//              HELLO_RECORD_FSYNC=0 skips the fsync (benchmarks: the handler's own disk flush is not under test)
import Foundation
import FunctionRuntime
import NIOCore

let environment = ProcessInfo.processInfo.environment
let mode = CommandLine.arguments.dropFirst().first ?? environment["HELLO_MODE"] ?? "echo"

struct SleepRequest: Decodable, Sendable {
    var seconds: Double
}

struct SleepResponse: Encodable, Sendable {
    var slept: Double
}

/// What `fail` throws; reported with errorType "HelloFailure" (its type name).
struct HelloFailure: Error, CustomStringConvertible {
    var description: String { "hello was asked to fail" }
}

/// What `init-fail` (or a bad configuration) throws while the handler is created.
struct HelloInitFailure: Error, CustomStringConvertible {
    var description: String
}

/// Appends events, one per line, to a file opened once at start-up.
final class RecordHandler: ByteHandler {
    private let descriptor: Int32
    private let path: String
    private let stamp: Bool
    private let sync: Bool

    init(path: String, stamp: Bool, sync: Bool) throws {
        self.stamp = stamp
        self.sync = sync
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw HelloInitFailure(description: "cannot open HELLO_RECORD_FILE '\(path)': errno \(errno)")
        }
        self.descriptor = descriptor
        self.path = path
    }

    deinit {
        close(descriptor)
    }

    func handle(_ event: ByteBuffer, context: FunctionContext) async throws -> ByteBuffer {
        var line: [UInt8] = []
        if stamp {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            line = Array("{\"startedAtNs\":\(Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)),\"event\":".utf8)
        }
        // A JSON document may only hold raw newlines as whitespace, so blanking them keeps it valid.
        line += event.readableBytesView
        if stamp { line.append(UInt8(ascii: "}")) }
        for index in line.indices where line[index] == 0x0A || line[index] == 0x0D { line[index] = 0x20 }
        line.append(0x0A)
        // One write(2) per event: appends from several workers never interleave within a line.
        let written = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == line.count else {
            throw HelloInitFailure(description: "writing to '\(path)' failed: errno \(errno)")
        }
        guard !sync || fsync(descriptor) == 0 else {
            throw HelloInitFailure(description: "fsync of '\(path)' failed: errno \(errno)")
        }
        context.logger.debug("recorded event", metadata: ["cinescale.hello.bytes": "\(event.readableBytes)"])
        return event
    }
}

switch mode {
case "echo":
    await FunctionRuntime.run { (event: ByteBuffer, _: FunctionContext) in event }
case "sleep":
    await FunctionRuntime.run { (request: SleepRequest, _: FunctionContext) -> SleepResponse in
        try await Task.sleep(for: .seconds(request.seconds))
        return SleepResponse(slept: request.seconds)
    }
case "crash":
    await FunctionRuntime.run { (_: ByteBuffer, _: FunctionContext) -> ByteBuffer in
        fatalError("hello: crash mode, dying mid-invocation")
    }
case "fail":
    await FunctionRuntime.run { (_: ByteBuffer, _: FunctionContext) -> ByteBuffer in
        throw HelloFailure()
    }
case "init-fail":
    await FunctionRuntime.run(makeHandler: { () throws -> ClosureByteHandler in
        throw HelloInitFailure(description: "hello: init-fail mode, failing during initialization")
    })
case "record":
    await FunctionRuntime.run(makeHandler: {
        guard let path = environment["HELLO_RECORD_FILE"], !path.isEmpty else {
            throw HelloInitFailure(description: "record mode needs HELLO_RECORD_FILE")
        }
        return try RecordHandler(
            path: path, stamp: environment["HELLO_RECORD_STAMP"] == "1", sync: environment["HELLO_RECORD_FSYNC"] != "0")
    })
default:
    await FunctionRuntime.run(makeHandler: { () throws -> ClosureByteHandler in
        throw HelloInitFailure(
            description: "unknown mode '\(mode)' (echo, sleep, crash, fail, init-fail, record)")
    })
}
