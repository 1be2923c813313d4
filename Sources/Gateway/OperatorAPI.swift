import Foundation
import HTTPTypes
import Hummingbird
import InvocationQueue
import Logging
import NIOCore
import WireFormat

/// The gateway's non-Lambda routes:
/// - `POST /events`: the object-store event webhook (MinIO / AWS S3 2.1 / Ceph RGW bodies), bearer-token
///   authenticated; answers 200 only once the invocations are committed to the durable queue.
/// - `GET /invocations[?state=&function=&limit=&before=]`, `GET /invocations/{id}`,
///   `POST /invocations/{id}/redrive`: the operator view of the queue and the dead-letter queue
///   (SigV4-signed like the Invoke API).
/// - `GET /metrics` (Prometheus text) and `GET /healthz`.
///
/// Their routes throw; ``OperatorAPIError`` writes every error answer.
struct OperatorAPI: Sendable {
    let core: GatewayCore
    let scheduler: any InvocationScheduling
    let intake: EventIntake
    let invokeAPI: InvokeAPI
    let metrics: GatewayMetrics
    let token: String?
    /// Called with every accepted notification body once its invocations are committed, before the store is
    /// answered (so what it records is as durable as the invocations: a failure answers 503 and the store
    /// sends the body again; the queue dedupes the invocations).
    var eventObserver: (@Sendable (ByteBuffer) async throws -> Void)?
    let logger: Logger

    static let maxEventBytes = 6 << 20

    func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: self.metrics.emit())))
        }
        router.get("/healthz") { _, _ in self.health() }
        // The routes that can fail, in a group whose middleware writes every error (OperatorAPIError).
        let router = router.group().add(middleware: ErrorAnswerMiddleware<Context, OperatorAPIError>(logger: logger))
        router.post("/events") { request, _ in try await self.receiveEvents(request) }
        router.get("/invocations") { request, _ in try await self.listInvocations(request) }
        router.get("/invocations/:id") { request, context in
            try await self.getInvocation(request, id: context.parameters.get("id") ?? "")
        }
        router.post("/invocations/:id/redrive") { request, context in
            try await self.redrive(request, id: context.parameters.get("id") ?? "")
        }
    }

    // MARK: Events

    func receiveEvents(_ request: Request) async throws -> Response {
        if let token {
            // The header (MinIO, our store), or a `token` query parameter for stores whose webhook cannot send
            // headers (Ceph RGW's push-endpoint is a bare URL).
            let sent =
                request.headers[.authorization] ?? request.uri.queryParameters.get("token").map { "Bearer \($0)" } ?? ""
            guard ConstantTime.equal(sent, "Bearer \(token)") else {
                throw OperatorAPIError(
                    .unauthorized, "Unauthorized",
                    "A valid 'Authorization: Bearer <token>' header (or ?token=) is required."
                )
            }
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.maxEventBytes)
        } catch is NIOTooManyBytesError {
            throw OperatorAPIError(
                .contentTooLarge, "RequestEntityTooLarge",
                "An event notification may be at most \(Self.maxEventBytes) bytes.")
        }
        let batch: EventIntake.Batch
        do throws(GatewayError) {
            batch = try intake.invocations(from: body, now: Date())
            metrics.eventNotifications.increment()
            metrics.eventRecords.increment(by: Int64(batch.records))
            if !batch.invocations.isEmpty { try scheduler.admit(batch.invocations.count) }
        } catch {
            // A store retries a 503 and takes SlowDown as its own back-pressure answer.
            if error.code == .tooManyRequests {
                throw OperatorAPIError(.serviceUnavailable, "SlowDown", error.message, retryAfter: 1)
            }
            logger.notice("event notification refused", metadata: ["cinescale.error": .string(error.message)])
            throw OperatorAPIError(.badRequest, "InvalidEvent", error.message)
        }
        let results: [EnqueueResult]
        do {
            results = try await scheduler.enqueue(batch.invocations)
        } catch {
            throw DependencyFailure(
                status: .serviceUnavailable, code: "QueueUnavailable",
                message: "The invocation queue could not commit the events; retry.", underlying: error)
        }
        let queued = results.filter { if case .inserted = $0 { true } else { false } }.count
        if let eventObserver {
            do {
                try await eventObserver(body)
            } catch {
                throw DependencyFailure(
                    status: .serviceUnavailable, code: "ObserverUnavailable",
                    message: "The events could not be recorded; retry.", underlying: error)
            }
        }
        let text = #"{"records":\#(batch.records),"queued":\#(queued),"duplicates":\#(results.count - queued)}"#
        return Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    // MARK: Invocations

    func listInvocations(_ request: Request) async throws -> Response {
        try authenticate(request)
        let query = request.uri.queryParameters
        var filter = InvocationFilter()
        if let states = query.get("state") {
            for name in states.split(separator: ",") {
                let normalized = name == "dead-lettered" ? "dead" : String(name)
                guard let state = QueuedInvocation.State(rawValue: normalized) else {
                    throw OperatorAPIError(
                        .badRequest, "InvalidParameterValue",
                        "Unknown state '\(name)' (expected queued, running, failed, succeeded or dead).")
                }
                filter.states.insert(state)
            }
        }
        filter.function = query.get("function")
        if let limit = query.get("limit") {
            guard let n = Int(limit), (1...1000).contains(n) else {
                throw OperatorAPIError(.badRequest, "InvalidParameterValue", "limit must be between 1 and 1000.")
            }
            filter.limit = n
        }
        if let before = query.get("before") {
            guard let seconds = Double(before) else {
                throw OperatorAPIError(
                    .badRequest, "InvalidParameterValue",
                    "before must be a Unix time in seconds (createdAt of the last item).")
            }
            filter.createdBefore = Date(timeIntervalSince1970: seconds)
        }
        let items = try await reading { try await scheduler.queue.list(filter) }
        var page: [String: Any] = ["invocations": items.map(Self.describe)]
        if items.count == filter.limit, let last = items.last {
            page["nextBefore"] = last.createdAt.timeIntervalSince1970
        }
        return Self.json(page)
    }

    func getInvocation(_ request: Request, id: String) async throws -> Response {
        try authenticate(request)
        guard let invocation = try await reading({ try await scheduler.queue.get(id: id) }) else {
            throw Self.noInvocation(id)
        }
        return Self.json(Self.describe(invocation))
    }

    func redrive(_ request: Request, id: String) async throws -> Response {
        try authenticate(request)
        guard let existing = try await reading({ try await scheduler.queue.get(id: id) }) else {
            throw Self.noInvocation(id)
        }
        guard existing.state == .dead else {
            throw OperatorAPIError(
                .conflict, "InvalidState", "Invocation '\(id)' is \(existing.state.rawValue), not dead-lettered.")
        }
        guard let dispatcher = core.dispatchers[existing.function] else {
            throw OperatorAPIError(
                .conflict, "ResourceNotFoundException",
                "Function '\(existing.function)' is not configured on this gateway.")
        }
        try scheduler.admit(1)
        let policy = dispatcher.configuration.retry
        let redriven: QueuedInvocation?
        do {
            redriven = try await scheduler.queue.redrive(
                id: id, now: Date(), maxAttempts: policy.maxAttempts, maxEventAge: policy.maxEventAge.seconds)
        } catch {
            throw DependencyFailure(
                status: .internalServerError, code: "QueueUnavailable",
                message: "The invocation queue could not be updated.", underlying: error)
        }
        guard let invocation = redriven else {
            throw OperatorAPIError(.conflict, "InvalidState", "Invocation '\(id)' is no longer dead-lettered.")
        }
        scheduler.schedule([invocation])
        logger.info(
            "dead letter re-driven",
            metadata: [
                "cinescale.request.id": .string(id), "cinescale.function": .string(invocation.function),
            ])
        return Self.json(Self.describe(invocation))
    }

    static func noInvocation(_ id: String) -> OperatorAPIError {
        OperatorAPIError(.notFound, "ResourceNotFoundException", "No invocation with id '\(id)'.")
    }

    /// A read of the durable queue; its failure is the queue's (500 QueueUnavailable), not the request's.
    private func reading<T>(_ read: () async throws -> T) async throws -> T {
        do {
            return try await read()
        } catch {
            throw DependencyFailure(
                status: .internalServerError, code: "QueueUnavailable",
                message: "The invocation queue could not be read.", underlying: error)
        }
    }

    // MARK: Health

    func health() -> Response {
        let functions = core.ordered.map { dispatcher -> [String: Any] in
            let status = dispatcher.status()
            let (waiting, running) = scheduler.pending(of: status.name)
            return [
                "name": status.name, "state": status.state.rawValue,
                "workers": status.workers.filter { $0.pid != nil }.count,
                "queued": waiting, "running": running,
            ]
        }
        let healthy = core.ordered.allSatisfy { $0.status().state == .active }
        return Self.json(
            ["status": healthy ? "ok" : "degraded", "functions": functions],
            status: healthy ? .ok : .serviceUnavailable)
    }

    // MARK: Helpers

    /// The operator routes are SigV4-signed like the Invoke API (an empty body).
    private func authenticate(_ request: Request) throws(GatewayError) {
        _ = try invokeAPI.authenticate(request, body: ByteBuffer())
    }

    static func describe(_ i: QueuedInvocation) -> [String: Any] {
        var object: [String: Any] = [
            "id": i.id, "function": i.function, "source": i.source, "state": i.state.rawValue,
            "attempts": i.attempts, "maxAttempts": i.maxAttempts, "createdAt": i.createdAt.timeIntervalSince1970,
            "expiresAt": i.expiresAt.timeIntervalSince1970,
        ]
        if i.state == .queued || i.state == .failed { object["nextAttemptAt"] = i.nextAttemptAt.timeIntervalSince1970 }
        if let v = i.startedAt { object["startedAt"] = v.timeIntervalSince1970 }
        if let v = i.finishedAt { object["finishedAt"] = v.timeIntervalSince1970 }
        if let v = i.durationMs { object["durationMs"] = (v * 1000).rounded() / 1000 }
        if let v = i.errorType { object["errorType"] = v }
        if let v = i.errorMessage { object["errorMessage"] = v }
        object["event"] =
            (try? JSONSerialization.jsonObject(with: i.payload)) ?? String(decoding: i.payload, as: UTF8.self)
        return object
    }

    static func json(_ object: [String: Any], status: HTTPResponse.Status = .ok) -> Response {
        let data =
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}
