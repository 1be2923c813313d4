import Foundation
import NIOCore
import NIOPosix
import SigV4

/// A request as the fake server received it.
struct FakeRequest: Sendable {
    var method: String
    /// Request target as sent on the wire (percent-encoded path + query).
    var target: String
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var rawPath: String {
        target.firstIndex(of: "?").map { String(target[..<$0]) } ?? target
    }

    var rawQuery: String? {
        target.firstIndex(of: "?").map { String(target[target.index(after: $0)...]) }
    }

    var query: [(name: String, value: String)] {
        S3URIEncoding.decodeQuery(rawQuery ?? "")
    }

    func queryValue(_ name: String) -> String? {
        query.first { $0.name == name }?.value
    }

    /// The decoded path ("/bucket/key").
    var decodedPath: String? {
        S3URIEncoding.decode(rawPath)
    }
}

struct FakeResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)] = []
    var body: [UInt8] = []
    /// Close the connection instead of answering.
    var dropConnection = false
    /// Announce this Content-Length, send `body`, then close (simulates a truncated body).
    var declaredLength: Int?

    init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    static func xml(_ status: Int, _ xml: String, headers: [(name: String, value: String)] = []) -> FakeResponse {
        FakeResponse(status: status, headers: [("Content-Type", "application/xml")] + headers, body: Array(xml.utf8))
    }

    static func error(_ status: Int, code: String, message: String = "error", requestId: String = "REQ123")
        -> FakeResponse
    {
        .xml(
            status,
            """
            <?xml version="1.0" encoding="UTF-8"?>
            <Error><Code>\(code)</Code><Message>\(message)</Message><Resource>/r</Resource><RequestId>\(requestId)</RequestId></Error>
            """
        )
    }

    static let dropped: FakeResponse = {
        var r = FakeResponse(status: 0)
        r.dropConnection = true
        return r
    }()
}

/// Records requests; thread-safe.
final class Recorder: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [FakeRequest] = []
    private var signatureFailures: [String] = []

    func append(_ request: FakeRequest) {
        lock.withLock { storage.append(request) }
    }

    func fail(_ message: String) {
        lock.withLock { signatureFailures.append(message) }
    }

    var requests: [FakeRequest] { lock.withLock { storage } }
    var failures: [String] { lock.withLock { signatureFailures } }
}

let fakeAccessKey = "AKIDFAKE"
let fakeSecretKey = "fake/secret+key"

/// Runs a scripted HTTP/1.1 server on 127.0.0.1 for the duration of `body`. Every request's
/// SigV4 signature and payload hash are checked with `SigV4Verifier`; failures are recorded in
/// `recorder.failures` (and answered with 403).
func withFakeServer(
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
    let verifier = SigV4Verifier(region: "us-east-1") { $0 == fakeAccessKey ? fakeSecretKey : nil }
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            try await server.executeThenClose { inbound in
                try await withThrowingTaskGroup(of: Void.self) { connections in
                    for try await connection in inbound {
                        connections.addTask {
                            try? await serve(connection, handler: handler, recorder: recorder, verifier: verifier)
                        }
                    }
                }
            }
        }
        do {
            try await body(URL(string: "http://127.0.0.1:\(port)")!, recorder)
        } catch {
            group.cancelAll()
            throw error
        }
        group.cancelAll()
    }
}

private func serve(
    _ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>,
    handler: @Sendable (FakeRequest) async -> FakeResponse,
    recorder: Recorder,
    verifier: SigV4Verifier
) async throws {
    try await connection.executeThenClose { inbound, outbound in
        var buffer = ByteBuffer()
        var iterator = inbound.makeAsyncIterator()
        while true {
            guard let request = try await readRequest(&buffer, &iterator) else { return }
            recorder.append(request)
            var response: FakeResponse
            if let failure = check(request, verifier) {
                recorder.fail("\(request.method) \(request.target): \(failure)")
                response = .error(403, code: "SignatureDoesNotMatch", message: failure)
            } else {
                response = await handler(request)
            }
            if response.dropConnection { return }
            var out = ByteBuffer()
            out.writeString("HTTP/1.1 \(response.status) Status\r\n")
            for (name, value) in response.headers { out.writeString("\(name): \(value)\r\n") }
            out.writeString("Content-Length: \(response.declaredLength ?? response.body.count)\r\n\r\n")
            if request.method != "HEAD" { out.writeBytes(response.body) }
            try await outbound.write(out)
            if response.declaredLength != nil { return }
        }
    }
}

/// nil when the signature and the payload hash are valid.
private func check(_ request: FakeRequest, _ verifier: SigV4Verifier) -> String? {
    let incoming = IncomingRequest(method: request.method, target: request.target, headers: request.headers)
    do {
        let verified = try verifier.verify(incoming, now: Date())
        if case .sha256(let hex) = verified.payload {
            let actual = PayloadSignature.sha256(request.body).headerValue
            if actual != hex.lowercased() { return "payload hash mismatch" }
        }
        return nil
    } catch {
        return "\(error)"
    }
}

private func readRequest(
    _ buffer: inout ByteBuffer,
    _ iterator: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
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
            (String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces))
        )
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
