import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The AWS Lambda Runtime API for one worker slot, on its own 127.0.0.1 listener so the gateway knows which
/// process is calling (`AWS_LAMBDA_RUNTIME_API=127.0.0.1:PORT`, no path prefix).
///
/// Served by a small NIO HTTP/1.1 handler rather than a Hummingbird application: two of the three HTTP
/// exchanges of every invocation happen here, and answering them on the event loop without creating a
/// task per request roughly doubles the throughput of the whole gateway on a 2-core machine.
final class RuntimeAPIServer: Sendable {
    private let serverChannel: any Channel
    private let connections: Connections
    let port: Int

    private init(serverChannel: any Channel, connections: Connections, port: Int) {
        self.serverChannel = serverChannel
        self.connections = connections
        self.port = port
    }

    static func start(dispatcher: FunctionDispatcher, slot: Int, on loop: any EventLoop) async throws(GatewayError)
        -> RuntimeAPIServer
    {
        let connections = Connections()
        do {
            let channel = try await ServerBootstrap(group: loop)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                        try channel.pipeline.syncOperations.addHandler(
                            RuntimeAPIHandler(dispatcher: dispatcher, slot: slot))
                        connections.insert(channel)
                        channel.closeFuture.whenComplete { _ in connections.remove(channel) }
                    }
                }
                .bind(host: "127.0.0.1", port: 0).get()
            guard let port = channel.localAddress?.port else {
                try? await channel.close()
                throw GatewayError(.serverFailed, "the Runtime API listener has no port")
            }
            return RuntimeAPIServer(serverChannel: channel, connections: connections, port: port)
        } catch let error as GatewayError {
            throw error
        } catch {
            throw GatewayError(
                .serverFailed, "cannot start a Runtime API listener for \(dispatcher.name): \(error)",
                function: dispatcher.name, underlying: error)
        }
    }

    /// Stops listening and closes every connection.
    func close() async {
        try? await serverChannel.close()
        for channel in connections.all() { try? await channel.close() }
    }

    /// Open connections, closed with the server.
    private final class Connections: Sendable {
        private let channels = Mutex<[ObjectIdentifier: any Channel]>([:])
        func insert(_ channel: any Channel) { channels.withLock { $0[ObjectIdentifier(channel)] = channel } }
        func remove(_ channel: any Channel) {
            _ = channels.withLock { $0.removeValue(forKey: ObjectIdentifier(channel)) }
        }
        func all() -> [any Channel] { channels.withLock { Array($0.values) } }
    }
}

/// One Runtime API connection: `GET …/invocation/next` (long poll), `POST …/invocation/{id}/response`,
/// `POST …/invocation/{id}/error`, `POST …/init/error`.
final class RuntimeAPIHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let dispatcher: FunctionDispatcher
    private let slot: Int
    private let bodyLimit: Int
    private var head: HTTPRequestHead?
    private var body: ByteBuffer?
    private var bodyTooLarge = false
    /// Set while this connection waits in `/next`.
    private var parkedToken: Int?
    /// True between a read and its `channelReadComplete`: responses written then are flushed together at the
    /// end of the read, so a runtime that pipelines `POST …/response` and `GET …/next` gets the 202 and its
    /// next event in one write.
    private var reading = false
    private var flushPending = false

    private static let nextToken = Atomic<Int>(0)
    static let prefix = "/2018-06-01/runtime/"
    static let accepted = ByteBuffer(string: "{\"status\":\"OK\"}")
    /// Sent with every event: this server answers pipelined requests in order, so a CineScale runtime may
    /// send `GET …/next` together with its `POST …/response`. Runtimes that do not know it ignore it; AWS does
    /// not send it, so there the runtime makes one request at a time.
    static let pipeliningHeader = "CineScale-Runtime-Pipelining"

    init(dispatcher: FunctionDispatcher, slot: Int) {
        self.dispatcher = dispatcher
        self.slot = slot
        self.bodyLimit = max(dispatcher.configuration.maxResponseBytes, 1 << 20)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        reading = true
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = nil
            bodyTooLarge = false
        case .body(var chunk):
            guard !bodyTooLarge else { return }
            if (body?.readableBytes ?? 0) + chunk.readableBytes > bodyLimit {
                bodyTooLarge = true
                body = nil
            } else if body == nil {
                body = chunk
            } else {
                body!.writeBuffer(&chunk)
            }
        case .end:
            guard let head else { return }
            self.head = nil
            route(context: context, head: head)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        reading = false
        if flushPending {
            flushPending = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let token = parkedToken {
            parkedToken = nil
            dispatcher.abandonNext(slot: slot, token: token)
        }
        context.fireChannelInactive()
    }

    private func route(context: ChannelHandlerContext, head: HTTPRequestHead) {
        var path = Substring(head.uri)
        if let q = path.firstIndex(of: "?") { path = path[..<q] }
        guard path.hasPrefix(Self.prefix) else { return notFound(context, head, path) }
        let rest = path.dropFirst(Self.prefix.utf8.count)
        if rest == "invocation/next" {
            guard head.method == .GET else { return methodNotAllowed(context, head) }
            return next(context: context, head: head)
        }
        if rest == "init/error" {
            guard head.method == .POST else { return methodNotAllowed(context, head) }
            return initError(context: context, head: head)
        }
        if rest.hasPrefix("invocation/") {
            let tail = rest.dropFirst("invocation/".utf8.count)
            guard let slash = tail.lastIndex(of: "/") else { return notFound(context, head, path) }
            let action = tail[tail.index(after: slash)...]
            guard action == "response" || action == "error" else { return notFound(context, head, path) }
            guard head.method == .POST else { return methodNotAllowed(context, head) }
            return post(context: context, head: head, requestID: String(tail[..<slash]), isError: action == "error")
        }
        notFound(context, head, path)
    }

    // MARK: /next

    private func next(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let token = Self.nextToken.wrappingAdd(1, ordering: .relaxed).newValue
        let loop = context.eventLoop
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: loop)
        let keepAlive = head.isKeepAlive
        let version = head.version
        let waiter = NextWaiter(token: token) { work in
            if loop.inEventLoop {
                bound.value.handler.deliver(
                    work, context: bound.value.context, token: token, keepAlive: keepAlive, version: version)
            } else {
                loop.execute {
                    bound.value.handler.deliver(
                        work, context: bound.value.context, token: token, keepAlive: keepAlive, version: version)
                }
            }
        }
        parkedToken = token
        if case .some(let work) = dispatcher.requestNext(slot: slot, waiter: waiter) {
            deliver(work, context: context, token: token, keepAlive: keepAlive, version: version)
        }
    }

    private func deliver(
        _ work: Work?, context: ChannelHandlerContext, token: Int, keepAlive: Bool, version: HTTPVersion
    ) {
        guard parkedToken == token else { return }
        parkedToken = nil
        guard let work else {
            return respond(
                context, version: version, keepAlive: false, status: .internalServerError,
                body: Self.errorBody("ServiceException", "The worker is being stopped."))
        }
        var headers = HTTPHeaders()
        headers.reserveCapacity(8)
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: Self.pipeliningHeader, value: "1")
        headers.add(name: "Lambda-Runtime-Aws-Request-Id", value: work.requestID)
        headers.add(name: "Lambda-Runtime-Deadline-Ms", value: String(work.deadlineMs))
        headers.add(name: "Lambda-Runtime-Invoked-Function-Arn", value: dispatcher.arn)
        headers.add(
            name: "Lambda-Runtime-Trace-Id",
            value: LambdaFormat.traceID(epochSeconds: LambdaFormat.epochMilliseconds() / 1000))
        respond(context, version: version, keepAlive: keepAlive, status: .ok, headers: headers, body: work.payload)
    }

    // MARK: /response, /error, /init/error

    private func post(context: ChannelHandlerContext, head: HTTPRequestHead, requestID: String, isError: Bool) {
        let limit = dispatcher.configuration.maxResponseBytes
        let received = body ?? ByteBuffer()
        if bodyTooLarge || received.readableBytes > limit {
            guard dispatcher.isCurrent(slot: slot, requestID: requestID) else {
                return badRequestID(context, head, requestID)
            }
            let message = "Response payload size exceeded maximum allowed payload size (\(limit) bytes)."
            _ = dispatcher.complete(
                slot: slot, requestID: requestID,
                result: .failure(requestID: requestID, type: "Function.ResponseSizeTooLarge", message: message))
            return respond(
                context, version: head.version, keepAlive: head.isKeepAlive, status: .payloadTooLarge,
                body: Self.errorBody("RequestEntityTooLarge", message))
        }
        let result: InvocationResult
        if isError {
            result = RuntimeErrors.errorResult(
                requestID: requestID, body: received,
                headerType: head.headers.first(name: "Lambda-Runtime-Function-Error-Type"))
        } else {
            result = InvocationResult(requestID: requestID, payload: received)
        }
        switch dispatcher.complete(slot: slot, requestID: requestID, result: result) {
        case .completed:
            respond(context, version: head.version, keepAlive: head.isKeepAlive, status: .accepted, body: Self.accepted)
        case .unknownRequest:
            badRequestID(context, head, requestID)
        }
    }

    private func initError(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let received = body ?? ByteBuffer()
        let fields = RuntimeErrors.errorFields(in: received)
        let type = fields.type ?? head.headers.first(name: "Lambda-Runtime-Function-Error-Type") ?? "Runtime.Unknown"
        let message = fields.message ?? (received.readableBytes > 0 ? String(buffer: received) : "Unknown init error")
        dispatcher.initError(slot: slot, errorType: type, message: message)
        respond(context, version: head.version, keepAlive: head.isKeepAlive, status: .accepted, body: Self.accepted)
    }

    // MARK: Responses

    private func badRequestID(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ requestID: String) {
        respond(
            context, version: head.version, keepAlive: head.isKeepAlive, status: .badRequest,
            body: Self.errorBody("InvalidRequestID", "Unknown or finished request id \(requestID)"))
    }

    private func notFound(_ context: ChannelHandlerContext, _ head: HTTPRequestHead, _ path: Substring) {
        respond(
            context, version: head.version, keepAlive: head.isKeepAlive, status: .notFound,
            body: Self.errorBody("NotFound", "Unknown path \(path)"))
    }

    private func methodNotAllowed(_ context: ChannelHandlerContext, _ head: HTTPRequestHead) {
        respond(
            context, version: head.version, keepAlive: head.isKeepAlive, status: .methodNotAllowed,
            body: Self.errorBody("MethodNotAllowed", "Method not allowed"))
    }

    static func errorBody(_ type: String, _ message: String) -> ByteBuffer {
        ByteBuffer(
            string: "{\"errorMessage\":\(LambdaFormat.quote(message)),\"errorType\":\(LambdaFormat.quote(type))}")
    }

    private func respond(
        _ context: ChannelHandlerContext, version: HTTPVersion, keepAlive: Bool, status: HTTPResponseStatus,
        headers: HTTPHeaders = ["Content-Type": "application/json"], body: ByteBuffer
    ) {
        var headers = headers
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        if body.readableBytes > 0 { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        if keepAlive {
            context.write(wrapOutboundOut(.end(nil)), promise: nil)
            if reading {
                flushPending = true
            } else {
                context.flush()
            }
        } else {
            let closed = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            closed.whenComplete { _ in bound.value.close(promise: nil) }
        }
    }
}

/// Reading the error documents runtimes post.
enum RuntimeErrors {
    /// The error document returned to the caller: the runtime's body when it is JSON, else one built from the
    /// error-type header and the text.
    static func errorResult(requestID: String, body: ByteBuffer, headerType: String?) -> InvocationResult {
        let valid =
            body.readableBytes > 0
            && body.withUnsafeReadableBytes { raw in (try? JSONValidator.validate(raw)) != nil }
        if valid {
            let type = errorFields(in: body).type ?? headerType ?? "Unhandled"
            return InvocationResult(requestID: requestID, payload: body, functionError: "Unhandled", errorType: type)
        }
        let text = String(buffer: body)
        return .failure(
            requestID: requestID, type: headerType ?? "Unhandled", message: text.isEmpty ? "Unhandled error" : text)
    }

    /// `errorType` and `errorMessage` of a `{errorMessage, errorType, ...}` document.
    static func errorFields(in body: ByteBuffer) -> (type: String?, message: String?) {
        guard body.readableBytes > 0,
            let object = try? JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
        else { return (nil, nil) }
        return (object["errorType"] as? String, object["errorMessage"] as? String)
    }
}
