import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ObjectStore
import S3Server
import ServiceLifecycle
import SigV4

/// A real store on 127.0.0.1 and a free port, in a fresh data directory, for the length of `body`.
struct LiveStore: Sendable {
    static let credentials = Credentials(accessKeyId: "AKIDLIVETEST", secretAccessKey: "live/test+secret")
    let port: Int
    let root: String
    let store: ObjectStore

    var endpoint: String { "http://127.0.0.1:\(port)" }

    static func run<T: Sendable>(
        configure: (inout S3ServerConfiguration) -> Void = { _ in },
        _ body: @Sendable (LiveStore) async throws -> T
    ) async throws -> T {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cinescale-s3-\(UUID().uuidString)")
            .path
        defer { try? FileManager.default.removeItem(atPath: root) }
        var logger = Logger(label: "test.store")
        logger.logLevel = .warning
        let store = try await ObjectStore(
            configuration: ObjectStoreConfiguration(root: root, fsync: false), logger: logger)
        var configuration = S3ServerConfiguration(credentials: [credentials])
        configure(&configuration)
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = S3Server.makeApplication(
            store: store, configuration: configuration, port: 0, logger: logger,
            onRunning: { port in portContinuation.yield(port) })
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { throw CancellationError() }
            do {
                let result = try await body(LiveStore(port: port, root: root, store: store))
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return result
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }

    struct Reply: Sendable {
        var status: Int
        var headers: [String: String]
        var body: [UInt8]
        var text: String { String(decoding: body, as: UTF8.self) }
        /// The `<Code>` of an S3 XML error body.
        var errorCode: String? {
            guard let start = text.range(of: "<Code>"), let end = text.range(of: "</Code>") else { return nil }
            return String(text[start.upperBound..<end.lowerBound])
        }
    }

    /// Sends a request signed with SigV4 headers (or unsigned when `sign` is false).
    func send(
        _ method: String, _ path: String, query: [(name: String, value: String)] = [],
        headers: [(name: String, value: String)] = [], body: [UInt8] = [],
        payload: PayloadSignature? = nil, sign: Bool = true, rawBody: [UInt8]? = nil,
        credentials: Credentials = LiveStore.credentials, date: Date = Date()
    ) async throws -> Reply {
        var headers = headers
        let encodedPath = S3URIEncoding.encodePath(path)
        if sign {
            let signer = SigV4Signer(credentials: credentials, region: "us-east-1")
            let request = SigningRequest(
                method: method, path: encodedPath, query: query,
                headers: headers + [(name: "host", value: "127.0.0.1:\(port)")])
            headers += signer.signedHeaders(for: request, payload: payload ?? PayloadSignature.sha256(body), date: date)
        }
        let queryString = query.isEmpty ? "" : "?" + SigV4Signer.encodeQuery(query)
        var request = HTTPClientRequest(url: endpoint + encodedPath + queryString)
        request.method = .init(rawValue: method)
        for header in headers { request.headers.add(name: header.name, value: header.value) }
        let bytes = rawBody ?? body
        if !bytes.isEmpty || method == "PUT" || method == "POST" {
            request.body = .bytes(ByteBuffer(bytes: bytes))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        var collected = try await response.body.collect(upTo: 256 * 1024 * 1024)
        var replyHeaders: [String: String] = [:]
        for header in response.headers { replyHeaders[header.name.lowercased()] = header.value }
        return Reply(
            status: Int(response.status.code), headers: replyHeaders,
            body: collected.readBytes(length: collected.readableBytes) ?? [])
    }
}
