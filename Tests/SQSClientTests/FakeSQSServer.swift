import Foundation
import NIOCore
import NIOPosix
import SigV4
import Synchronization

/// A request as the fake server received it.
struct FakeRequest: Sendable {
    var method: String
    var target: String
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name.lowercased() }?.value }

    var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] }
}

struct FakeResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)] = []
    var body: [UInt8] = []
    /// Close the connection without answering.
    var drop = false

    static func json(_ status: Int, _ text: String, headers: [(name: String, value: String)] = []) -> FakeResponse {
        FakeResponse(status: status, headers: [("Content-Type", "application/x-amz-json-1.0")] + headers, body: Array(text.utf8))
    }

    static let dropped = FakeResponse(status: 0, drop: true)
}

let fakeAccessKey = "AKIDSQSFAKE"
let fakeSecretKey = "sqs/fake+secret"

/// Every request the fake received, and whose SigV4 signature (service `sqs`) did not verify.
final class Recorder: Sendable {
    private let state = Mutex<([FakeRequest], [String])>(([], []))
    func append(_ request: FakeRequest) { state.withLock { $0.0.append(request) } }
    func fail(_ message: String) { state.withLock { $0.1.append(message) } }
    var requests: [FakeRequest] { state.withLock { $0.0 } }
    var failures: [String] { state.withLock { $0.1 } }
}

/// Runs a scripted HTTP/1.1 server on 127.0.0.1 (a free port) for the duration of `body`.
func withFakeSQS(
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
    let verifier = SigV4Verifier(region: "eu-west-1", service: "sqs") { $0 == fakeAccessKey ? fakeSecretKey : nil }
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            try await server.executeThenClose { inbound in
                try await withThrowingTaskGroup(of: Void.self) { connections in
                    for try await connection in inbound {
                        connections.addTask { try? await serve(connection, handler, recorder, verifier) }
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
    _ recorder: Recorder, _ verifier: SigV4Verifier
) async throws {
    try await connection.executeThenClose { inbound, outbound in
        var buffer = ByteBuffer()
        var iterator = inbound.makeAsyncIterator()
        while let request = try await readRequest(&buffer, &iterator) {
            recorder.append(request)
            do {
                let verified = try verifier.verify(
                    IncomingRequest(method: request.method, target: request.target, headers: request.headers), now: Date())
                if case .sha256(let hex) = verified.payload, PayloadSignature.sha256(request.body).headerValue != hex.lowercased() {
                    recorder.fail("payload hash mismatch")
                }
            } catch {
                recorder.fail("\(error)")
            }
            let response = await handler(request)
            if response.drop { return }
            var out = ByteBuffer()
            out.writeString("HTTP/1.1 \(response.status) Status\r\n")
            for (name, value) in response.headers { out.writeString("\(name): \(value)\r\n") }
            out.writeString("Content-Length: \(response.body.count)\r\n\r\n")
            out.writeBytes(response.body)
            try await outbound.write(out)
        }
    }
}

private func readRequest(
    _ buffer: inout ByteBuffer, _ iterator: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
) async throws -> FakeRequest? {
    var headEnd: Int?
    while headEnd == nil {
        let view = Array(buffer.readableBytesView)
        if view.count >= 4 {
            for i in 0...(view.count - 4) where view[i] == 13 && view[i + 1] == 10 && view[i + 2] == 13 && view[i + 3] == 10 {
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
        headers.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
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
