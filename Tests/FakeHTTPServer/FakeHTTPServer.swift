import Foundation
import NIOCore
import NIOPosix
import SigV4
import Synchronization

/// A request as the fake server received it.
public struct FakeRequest: Sendable {
    public var method: String
    /// Request target as sent on the wire (percent-encoded path + query).
    public var target: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    public var rawPath: String {
        target.firstIndex(of: "?").map { String(target[..<$0]) } ?? target
    }

    public var rawQuery: String? {
        target.firstIndex(of: "?").map { String(target[target.index(after: $0)...]) }
    }
}

/// What the fake answers.
public struct FakeResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Close the connection instead of answering.
    public var dropConnection = false
    /// Announce this Content-Length, send `body`, then close (simulates a truncated body).
    public var declaredLength: Int?

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static let dropped: FakeResponse = {
        var response = FakeResponse(status: 0)
        response.dropConnection = true
        return response
    }()
}

/// Every request the fake received, and every one whose SigV4 signature or payload hash did not verify.
public final class Recorder: Sendable {
    private let state = Mutex<(requests: [FakeRequest], failures: [String])>(([], []))

    public init() {}

    public func append(_ request: FakeRequest) { state.withLock { $0.requests.append(request) } }
    public func fail(_ message: String) { state.withLock { $0.failures.append(message) } }
    public var requests: [FakeRequest] { state.withLock { $0.requests } }
    public var failures: [String] { state.withLock { $0.failures } }
}

/// Runs a scripted HTTP/1.1 server on 127.0.0.1 (a free port) for the duration of `body`. Every request's
/// SigV4 signature and payload hash are checked with `verifier`; a failure is recorded in
/// `recorder.failures` and answered with `rejection(failure)` when given, else the handler still answers.
public func withFakeHTTPServer(
    verifier: SigV4Verifier,
    rejection: (@Sendable (String) -> FakeResponse)? = nil,
    _ handler: @escaping @Sendable (FakeRequest) async -> FakeResponse,
    _ body: (_ endpoint: URL, _ recorder: Recorder) async throws -> Void
) async throws {
    let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .bind(host: "127.0.0.1", port: 0) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    let port = server.channel.localAddress!.port!
    let recorder = Recorder()
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            try await server.executeThenClose { inbound in
                try await withThrowingTaskGroup(of: Void.self) { connections in
                    for try await connection in inbound {
                        connections.addTask {
                            try? await serve(connection, handler, recorder, verifier, rejection)
                        }
                    }
                }
            }
        }
        defer { group.cancelAll() }
        try await body(URL(string: "http://127.0.0.1:\(port)")!, recorder)
    }
}

private func serve(
    _ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, _ handler: @Sendable (FakeRequest) async -> FakeResponse,
    _ recorder: Recorder, _ verifier: SigV4Verifier, _ rejection: (@Sendable (String) -> FakeResponse)?
) async throws {
    try await connection.executeThenClose { inbound, outbound in
        var buffer = ByteBuffer()
        var iterator = inbound.makeAsyncIterator()
        while let request = try await readRequest(&buffer, &iterator) {
            recorder.append(request)
            var response: FakeResponse?
            if let failure = check(request, verifier) {
                recorder.fail("\(request.method) \(request.target): \(failure)")
                response = rejection?(failure)
            }
            let answer: FakeResponse
            if let response { answer = response } else { answer = await handler(request) }
            if answer.dropConnection { return }
            var out = ByteBuffer()
            out.writeString("HTTP/1.1 \(answer.status) Status\r\n")
            for (name, value) in answer.headers { out.writeString("\(name): \(value)\r\n") }
            out.writeString("Content-Length: \(answer.declaredLength ?? answer.body.count)\r\n\r\n")
            if request.method != "HEAD" { out.writeBytes(answer.body) }
            try await outbound.write(out)
            if answer.declaredLength != nil { return }
        }
    }
}

/// nil when the signature and the payload hash are valid.
private func check(_ request: FakeRequest, _ verifier: SigV4Verifier) -> String? {
    let incoming = IncomingRequest(method: request.method, target: request.target, headers: request.headers)
    do {
        let verified = try verifier.verify(incoming, now: Date())
        if case .sha256(let hex) = verified.payload,
            PayloadSignature.sha256(request.body).headerValue != hex.lowercased()
        {
            return "payload hash mismatch"
        }
        return nil
    } catch {
        return "\(error)"
    }
}

private func readRequest(
    _ buffer: inout ByteBuffer, _ iterator: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
) async throws -> FakeRequest? {
    let separator = Array("\r\n\r\n".utf8)
    var headEnd: Int?
    while headEnd == nil {
        let view = Array(buffer.readableBytesView)
        if view.count >= 4 {
            for i in 0...(view.count - 4) where view[i..<(i + 4)].elementsEqual(separator) {
                headEnd = i
                break
            }
        }
        if headEnd == nil {
            guard var more = try await iterator.next() else { return nil }
            buffer.writeBuffer(&more)
        }
    }
    let head = buffer.readString(length: headEnd!)!
    buffer.moveReaderIndex(forwardBy: 4)
    var lines = head.components(separatedBy: "\r\n")
    let requestLine = lines.removeFirst().split(separator: " ")
    var headers: [(name: String, value: String)] = []
    for line in lines {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers.append(
            (String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
    }
    let length = headers.first { $0.name.lowercased() == "content-length" }.flatMap { Int($0.value) } ?? 0
    while buffer.readableBytes < length {
        guard var more = try await iterator.next() else { return nil }
        buffer.writeBuffer(&more)
    }
    let body = buffer.readBytes(length: length) ?? []
    buffer.discardReadBytes()
    return FakeRequest(method: String(requestLine[0]), target: String(requestLine[1]), headers: headers, body: body)
}
