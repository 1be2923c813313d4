import Foundation
import FunctionRuntime
import NIOCore
import NIOPosix
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A one-connection Runtime API on a plain blocking socket that sees the bytes exactly as they arrive: after
/// each outcome post it waits briefly, without answering, to learn whether the runtime already sent its next
/// `GET …/next` (pipelined) or waits for the 202 (one request at a time).
/// `@unchecked Sendable`: built by the test, then used only by the one thread that serves it.
private final class WireRuntimeAPI: @unchecked Sendable {
    let listener: Int32
    let port: Int
    private var connection: Int32 = -1
    private var buffer: [UInt8] = []

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        guard fd >= 0, bound == 0, listen(fd, 1) == 0 else { throw CocoaError(.fileWriteUnknown) }
    }

    deinit {
        if connection >= 0 { close(connection) }
        close(listener)
    }

    /// Serves `invocations` events; for each post after which the loop will ask for more, records whether the
    /// next `/next` arrived before the post was answered. Returns the request lines seen and those records.
    func serve(invocations: Int, announce: Bool) -> (requests: [String], pipelined: [Bool]) {
        var requests: [String] = []
        var pipelined: [Bool] = []
        repeat { connection = accept(listener, nil, nil) } while connection < 0 && errno == EINTR
        // However this ends, the runtime must see the connection close rather than wait for an answer.
        defer { shutdown(connection, Int32(SHUT_RDWR)) }
        guard connection >= 0 else { return ([], []) }
        var served = 0
        var pendingNext: String?
        while true {
            // Generous: a loaded test machine may keep the runtime's task from running for seconds.
            guard let request = pendingNext ?? readRequest(timeoutMilliseconds: 60_000) else { break }
            pendingNext = nil
            requests.append(request)
            if request.hasPrefix("GET ") {
                guard served < invocations else { break }
                served += 1
                var head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                head += "Lambda-Runtime-Aws-Request-Id: r\(served)\r\n"
                head += "Lambda-Runtime-Deadline-Ms: \(Int64(Date().timeIntervalSince1970 * 1000) + 10_000)\r\n"
                if announce { head += "\(RuntimeAPIHTTPClient.pipeliningHeader): 1\r\n" }
                let body = "{\"n\":\(served)}"
                send(head + "Content-Length: \(body.utf8.count)\r\n\r\n" + body)
            } else {
                if served < invocations {
                    // Hold the 202 back a moment: a pipelining runtime has already sent its `/next`.
                    pendingNext = readRequest(timeoutMilliseconds: 400)
                    pipelined.append(pendingNext != nil)
                }
                send("HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            }
        }
        return (requests, pipelined)
    }

    private func send(_ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(connection, $0.baseAddress, $0.count, 0) }
            guard sent > 0 else { return }
            offset += sent
        }
    }

    /// The next whole request's request line (its body read and dropped), or nil on timeout or close.
    private func readRequest(timeoutMilliseconds: Int) -> String? {
        var timeout = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        while true {
            if let end = headerEnd() {
                let head = String(decoding: buffer[..<end], as: UTF8.self)
                let lines = head.components(separatedBy: "\r\n")
                let length =
                    lines.dropFirst().compactMap { line -> Int? in
                        let parts = line.split(separator: ":", maxSplits: 1)
                        guard parts.count == 2, parts[0].lowercased() == "content-length" else { return nil }
                        return Int(parts[1].trimmingCharacters(in: .whitespaces))
                    }.first ?? 0
                if buffer.count >= end + 4 + length {
                    buffer.removeFirst(end + 4 + length)
                    return lines[0]
                }
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            var count: Int
            repeat {
                count = chunk.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            } while count < 0 && errno == EINTR
            guard count > 0 else { return nil }
            buffer += chunk[..<count]
        }
    }

    private func headerEnd() -> Int? {
        guard buffer.count >= 4 else { return nil }
        for i in 0...(buffer.count - 4)
        where buffer[i] == 13 && buffer[i + 1] == 10 && buffer[i + 2] == 13 && buffer[i + 3] == 10 {
            return i
        }
        return nil
    }
}

@Suite("Pipelined outcome posts")
struct PipeliningTests {
    /// Runs the real loop (echo handler, three invocations) against a `WireRuntimeAPI`.
    private func run(announce: Bool) async throws -> (requests: [String], pipelined: [Bool]) {
        let api = try WireRuntimeAPI()
        // A thread of its own: the server blocks, and the cooperative pool has only as many threads as cores.
        let (results, done) = AsyncStream.makeStream(of: (requests: [String], pipelined: [Bool]).self)
        let thread = Thread {
            done.yield(api.serve(invocations: 3, announce: announce))
            done.finish()
        }
        thread.start()
        let client = RuntimeAPIHTTPClient(
            host: "127.0.0.1", port: api.port, eventLoop: MultiThreadedEventLoopGroup.singleton.next(),
            logger: quietLogger())
        let outcome = try await FunctionRuntime.runLoop(
            client: client,
            configuration: RuntimeConfiguration(host: "127.0.0.1", port: api.port, functionName: "f"),
            logger: quietLogger(), maxInvocations: 3, makeHandler: { ClosureByteHandler { event, _ in event } })
        await client.close()
        #expect(outcome == .finished(invocations: 3))
        var iterator = results.makeAsyncIterator()
        return try #require(await iterator.next())
    }

    @Test("when the server announces it, the post and the next /next go out together; none after the last")
    func pipelinedWhenAnnounced() async throws {
        let (requests, pipelined) = try await run(announce: true)
        #expect(pipelined == [true, true])
        #expect(
            requests.map { $0.split(separator: " ").prefix(2).joined(separator: " ") } == [
                "GET /2018-06-01/runtime/invocation/next", "POST /2018-06-01/runtime/invocation/r1/response",
                "GET /2018-06-01/runtime/invocation/next", "POST /2018-06-01/runtime/invocation/r2/response",
                "GET /2018-06-01/runtime/invocation/next", "POST /2018-06-01/runtime/invocation/r3/response",
            ])
    }

    @Test("without the announcement (AWS Lambda) each request waits for the previous answer")
    func sequentialOtherwise() async throws {
        let (requests, pipelined) = try await run(announce: false)
        #expect(pipelined == [false, false])
        #expect(requests.count == 6)
    }
}
