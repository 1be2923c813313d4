import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// A ``RuntimeAPIClient`` on one persistent HTTP/1.1 connection (reopened only if the server closes it).
///
/// Requests are sequential, as the Runtime API expects — except that when the server announces it
/// (`CineScale-Runtime-Pipelining: 1`, sent by CineScale's gateway) an outcome post and the next `/next` are
/// pipelined in one write, answered in order. `/next` waits without a timeout.
/// Status handling follows the Runtime API: `/next` must answer 200; a post answered 2xx is accepted,
/// 4xx (the invocation is unknown or already timed out, or the payload is too large) is logged and the
/// loop carries on, anything else is thrown (5xx means the runtime must exit).
public final class RuntimeAPIHTTPClient: RuntimeAPIClient {
    private let host: String
    private let port: Int
    private let eventLoop: any EventLoop
    private let logger: Logger
    private let hostHeader: String
    private var channel: (any Channel)?
    /// The server said (in its last event) that it answers pipelined requests in order: the outcome post and
    /// the next `/next` then go out in one write. AWS does not say so; there requests go one at a time.
    private var serverPipelines = false

    private static let basePath = "/2018-06-01/runtime"
    private static let nextPath = basePath + "/invocation/next"
    /// The header with which CineScale's gateway announces that it answers pipelined requests.
    public static let pipeliningHeader = "CineScale-Runtime-Pipelining"

    /// Creates a client; the connection is opened by the first request (or by ``connect()``).
    public init(host: String, port: Int, eventLoop: any EventLoop, logger: Logger) {
        self.host = host
        self.port = port
        self.eventLoop = eventLoop
        self.logger = logger
        self.hostHeader = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    deinit {
        channel?.close(promise: nil)
    }

    /// Opens the connection now, so that start-up fails early when the API is unreachable.
    public func connect() async throws {
        _ = try await activeChannel()
    }

    /// Closes the connection.
    public func close() async {
        guard let channel else { return }
        self.channel = nil
        try? await channel.close()
    }

    public func nextInvocation() async throws -> Invocation {
        try invocation(from: try await send(.GET, Self.nextPath, headers: [], body: nil))
    }

    private func invocation(from response: RuntimeAPIResponse) throws -> Invocation {
        guard response.head.status == .ok else {
            throw RuntimeError.unexpectedStatus(
                "GET /invocation/next answered \(response.head.status.code): \(response.bodyText)")
        }
        let headers = response.head.headers
        guard let requestID = headers.first(name: "Lambda-Runtime-Aws-Request-Id"), !requestID.isEmpty else {
            throw RuntimeError.protocolViolation("/invocation/next response has no Lambda-Runtime-Aws-Request-Id")
        }
        serverPipelines = headers.first(name: Self.pipeliningHeader) == "1"
        return Invocation(
            requestID: requestID,
            deadlineMilliseconds: headers.first(name: "Lambda-Runtime-Deadline-Ms").flatMap { Int64($0) },
            invokedFunctionARN: headers.first(name: "Lambda-Runtime-Invoked-Function-Arn") ?? "",
            traceID: headers.first(name: "Lambda-Runtime-Trace-Id"),
            clientContext: headers.first(name: "Lambda-Runtime-Client-Context"),
            cognitoIdentity: headers.first(name: "Lambda-Runtime-Cognito-Identity"),
            event: response.body ?? ByteBuffer())
    }

    public func post(_ outcome: InvocationOutcome, requestID: String, thenNext: Bool, posted: () -> Bool)
        async throws -> Invocation?
    {
        let (path, headers, body) = Self.request(posting: outcome, requestID: requestID)
        guard thenNext && serverPipelines else {
            try check(try await send(.POST, path, headers: headers, body: body), path: path)
            guard posted(), thenNext else { return nil }
            return try await nextInvocation()
        }
        // Pipelined: both requests in one write; the server answers them in order.
        let channel = try await activeChannel()
        let postAnswer = channel.eventLoop.makePromise(of: RuntimeAPIResponse.self)
        let nextAnswer = channel.eventLoop.makePromise(of: RuntimeAPIResponse.self)
        channel.write(RuntimeAPIRequest(head: head(.POST, path, headers, body), body: body, promise: postAnswer))
            .cascadeFailure(to: postAnswer)
        channel.writeAndFlush(
            RuntimeAPIRequest(head: head(.GET, Self.nextPath, [], nil), body: nil, promise: nextAnswer)
        )
        .cascadeFailure(to: nextAnswer)
        let postResponse = try await answer(postAnswer, on: channel, for: "POST \(path)")
        do {
            try check(postResponse, path: path)
        } catch {
            drop(channel)
            throw error
        }
        // Stopping: the `/next` already sent is left unanswered; the connection goes with the process.
        guard posted() else { return nil }
        guard postResponse.head.isKeepAlive else {
            // The server closes after the post, so the pipelined `/next` is lost; ask again.
            drop(channel)
            return try await nextInvocation()
        }
        return try invocation(from: try await answer(nextAnswer, on: channel, for: "GET \(Self.nextPath)"))
    }

    /// Path, headers and body of the post that reports `outcome`.
    private static func request(posting outcome: InvocationOutcome, requestID: String)
        -> (path: String, headers: [(String, String)], body: ByteBuffer)
    {
        switch outcome {
        case .response(let output):
            return (basePath + "/invocation/" + requestID + "/response", [], output)
        case .error(let report):
            return (
                basePath + "/invocation/" + requestID + "/error",
                [("Content-Type", "application/json"), ("Lambda-Runtime-Function-Error-Type", "Unhandled")],
                ByteBuffer(string: report.json)
            )
        }
    }

    public func reportResponse(requestID: String, body: ByteBuffer) async throws {
        let (path, headers, body) = Self.request(posting: .response(body), requestID: requestID)
        try check(try await send(.POST, path, headers: headers, body: body), path: path)
    }

    public func reportError(requestID: String, error: ErrorReport) async throws {
        let (path, headers, body) = Self.request(posting: .error(error), requestID: requestID)
        try check(try await send(.POST, path, headers: headers, body: body), path: path)
    }

    public func reportInitError(_ error: ErrorReport) async throws {
        let path = Self.basePath + "/init/error"
        let response = try await send(
            .POST, path,
            headers: [
                ("Content-Type", "application/json"), ("Lambda-Runtime-Function-Error-Type", "Runtime.InitError"),
            ],
            body: ByteBuffer(string: error.json))
        try check(response, path: path)
    }

    private func check(_ response: RuntimeAPIResponse, path: String) throws {
        let status = response.head.status
        switch status.code {
        case 200..<300:
            return
        case 400..<500:
            logger.warning(
                "Runtime API refused a post; carrying on",
                metadata: [
                    "cinescale.runtime.path": .string(path), "cinescale.runtime.status": "\(status.code)",
                    "cinescale.runtime.body": .string(response.bodyText),
                ])
        default:
            throw RuntimeError.unexpectedStatus("POST \(path) answered \(status.code): \(response.bodyText)")
        }
    }

    private func head(_ method: HTTPMethod, _ path: String, _ extra: [(String, String)], _ body: ByteBuffer?)
        -> HTTPRequestHead
    {
        var headers = HTTPHeaders()
        headers.reserveCapacity(4 + extra.count)
        headers.add(name: "Host", value: hostHeader)
        headers.add(name: "User-Agent", value: "CineScale-FunctionRuntime/1")
        if method == .POST { headers.add(name: "Content-Length", value: String(body?.readableBytes ?? 0)) }
        for (name, value) in extra { headers.add(name: name, value: value) }
        return HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
    }

    private func send(
        _ method: HTTPMethod, _ path: String, headers extra: [(String, String)], body: ByteBuffer?
    ) async throws -> RuntimeAPIResponse {
        let channel = try await activeChannel()
        let promise = channel.eventLoop.makePromise(of: RuntimeAPIResponse.self)
        channel.writeAndFlush(RuntimeAPIRequest(head: head(method, path, extra, body), body: body, promise: promise))
            .cascadeFailure(to: promise)
        let response = try await answer(promise, on: channel, for: "\(method) \(path)")
        if !response.head.isKeepAlive {
            // The server will close; open a fresh connection for the next request.
            drop(channel)
        }
        return response
    }

    /// The response `promise` stands for; on failure the connection is dropped (the next request opens a
    /// new one).
    private func answer(_ promise: EventLoopPromise<RuntimeAPIResponse>, on channel: any Channel, for request: String)
        async throws -> RuntimeAPIResponse
    {
        do {
            return try await promise.futureResult.get()
        } catch {
            drop(channel)
            if let error = error as? RuntimeError { throw error }
            throw RuntimeError.connectionClosed("\(request) failed", underlying: error)
        }
    }

    private func drop(_ channel: any Channel) {
        if self.channel === channel { self.channel = nil }
        channel.close(promise: nil)
    }

    private func activeChannel() async throws -> any Channel {
        if let channel, channel.isActive { return channel }
        do {
            let channel = try await ClientBootstrap(group: eventLoop)
                .channelOption(.tcpOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        try channel.pipeline.syncOperations.addHandler(RuntimeAPIChannelHandler())
                    }
                }
                .connect(host: host, port: port)
                .get()
            self.channel = channel
            return channel
        } catch {
            throw RuntimeError.connectionFailed("\(hostHeader)", underlying: error)
        }
    }
}

struct RuntimeAPIRequest: Sendable {
    var head: HTTPRequestHead
    var body: ByteBuffer?
    var promise: EventLoopPromise<RuntimeAPIResponse>
}

struct RuntimeAPIResponse: Sendable {
    var head: HTTPResponseHead
    var body: ByteBuffer?

    var bodyText: String {
        body.map { String(buffer: $0) } ?? ""
    }
}

/// Writes one request at a time and gathers its whole response into one buffer.
private final class RuntimeAPIChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = RuntimeAPIRequest
    typealias OutboundOut = HTTPClientRequestPart

    /// Requests sent and not yet answered, oldest first (two when a post and `/next` are pipelined).
    private var pending = CircularBuffer<EventLoopPromise<RuntimeAPIResponse>>(initialCapacity: 2)
    private var head: HTTPResponseHead?
    private var body: ByteBuffer?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        pending.append(request.promise)
        context.write(wrapOutboundOut(.head(request.head)), promise: nil)
        if let body = request.body, body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        context.write(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body(var part):
            if body == nil {
                body = part
            } else {
                body!.writeBuffer(&part)
            }
        case .end:
            guard let head, let promise = pending.popFirst() else {
                context.fireErrorCaught(RuntimeError.protocolViolation("a response arrived with no request"))
                return
            }
            let response = RuntimeAPIResponse(head: head, body: body)
            self.head = nil
            self.body = nil
            promise.succeed(response)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failPending(RuntimeError.connectionClosed("", underlying: error))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failPending(RuntimeError.connectionClosed("the server closed the connection"))
        context.fireChannelInactive()
    }

    private func failPending(_ error: RuntimeError) {
        let waiting = pending
        pending.removeAll()
        head = nil
        body = nil
        for promise in waiting { promise.fail(error) }
    }
}
