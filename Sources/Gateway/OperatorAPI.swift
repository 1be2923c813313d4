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
struct OperatorAPI: Sendable {
    let core: GatewayCore
    let scheduler: AsyncScheduler
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
        router.post("/events") { request, _ in await self.receiveEvents(request) }
        router.get("/invocations") { request, _ in await self.listInvocations(request) }
        router.get("/invocations/:id") { request, context in
            await self.getInvocation(request, id: context.parameters.get("id") ?? "")
        }
        router.post("/invocations/:id/redrive") { request, context in
            await self.redrive(request, id: context.parameters.get("id") ?? "")
        }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: self.metrics.emit())))
        }
        router.get("/healthz") { _, _ in self.health() }
    }

    // MARK: Events

    func receiveEvents(_ request: Request) async -> Response {
        if let token {
            // The header (MinIO, our store), or a `token` query parameter for stores whose webhook cannot send
            // headers (Ceph RGW's push-endpoint is a bare URL).
            let sent =
                request.headers[.authorization] ?? request.uri.queryParameters.get("token").map { "Bearer \($0)" } ?? ""
            guard ConstantTime.equal(sent, "Bearer \(token)") else {
                return Self.error(
                    401, "Unauthorized", "A valid 'Authorization: Bearer <token>' header (or ?token=) is required.")
            }
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.maxEventBytes)
        } catch {
            return Self.error(
                413, "RequestEntityTooLarge", "An event notification may be at most \(Self.maxEventBytes) bytes.")
        }
        let batch: EventIntake.Batch
        do throws(GatewayError) {
            batch = try intake.invocations(from: body, now: Date())
            metrics.eventNotifications.increment()
            metrics.eventRecords.increment(by: Int64(batch.records))
            if !batch.invocations.isEmpty { try scheduler.admit(batch.invocations.count) }
        } catch {
            if error.code == .tooManyRequests {
                var response = Self.error(503, "SlowDown", error.message)
                response.headers[.retryAfter] = "1"
                return response
            }
            logger.notice("event notification refused", metadata: ["cinescale.error": .string(error.message)])
            return Self.error(400, "InvalidEvent", error.message)
        }
        do {
            let results = try await scheduler.enqueue(batch.invocations)
            let queued = results.filter { if case .inserted = $0 { true } else { false } }.count
            if let eventObserver {
                do {
                    try await eventObserver(body)
                } catch {
                    logger.error("an event observer failed", metadata: ["cinescale.error": "\(error)"])
                    return Self.error(503, "ObserverUnavailable", "The events could not be recorded; retry.")
                }
            }
            let text = #"{"records":\#(batch.records),"queued":\#(queued),"duplicates":\#(results.count - queued)}"#
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
        } catch {
            logger.error("could not commit events to the queue", metadata: ["cinescale.error": "\(error)"])
            return Self.error(503, "QueueUnavailable", "The invocation queue could not commit the events; retry.")
        }
    }

    // MARK: Invocations

    func listInvocations(_ request: Request) async -> Response {
        if let refused = authenticate(request) { return refused }
        let query = request.uri.queryParameters
        var filter = InvocationFilter()
        if let states = query.get("state") {
            for name in states.split(separator: ",") {
                let normalized = name == "dead-lettered" ? "dead" : String(name)
                guard let state = QueuedInvocation.State(rawValue: normalized) else {
                    return Self.error(
                        400, "InvalidParameterValue",
                        "Unknown state '\(name)' (expected queued, running, failed, succeeded or dead).")
                }
                filter.states.insert(state)
            }
        }
        filter.function = query.get("function")
        if let limit = query.get("limit") {
            guard let n = Int(limit), (1...1000).contains(n) else {
                return Self.error(400, "InvalidParameterValue", "limit must be between 1 and 1000.")
            }
            filter.limit = n
        }
        if let before = query.get("before") {
            guard let seconds = Double(before) else {
                return Self.error(
                    400, "InvalidParameterValue", "before must be a Unix time in seconds (createdAt of the last item).")
            }
            filter.createdBefore = Date(timeIntervalSince1970: seconds)
        }
        do {
            let items = try await scheduler.queue.list(filter)
            var page: [String: Any] = ["invocations": items.map(Self.describe)]
            if items.count == filter.limit, let last = items.last {
                page["nextBefore"] = last.createdAt.timeIntervalSince1970
            }
            return Self.json(200, page)
        } catch {
            return Self.error(500, "QueueUnavailable", "The invocation queue could not be read: \(error)")
        }
    }

    func getInvocation(_ request: Request, id: String) async -> Response {
        if let refused = authenticate(request) { return refused }
        do {
            guard let invocation = try await scheduler.queue.get(id: id) else {
                return Self.error(404, "ResourceNotFoundException", "No invocation with id '\(id)'.")
            }
            return Self.json(200, Self.describe(invocation))
        } catch {
            return Self.error(500, "QueueUnavailable", "The invocation queue could not be read: \(error)")
        }
    }

    func redrive(_ request: Request, id: String) async -> Response {
        if let refused = authenticate(request) { return refused }
        do {
            guard let existing = try await scheduler.queue.get(id: id) else {
                return Self.error(404, "ResourceNotFoundException", "No invocation with id '\(id)'.")
            }
            guard existing.state == .dead, let dispatcher = core.dispatchers[existing.function] else {
                if existing.state != .dead {
                    return Self.error(
                        409, "InvalidState", "Invocation '\(id)' is \(existing.state.rawValue), not dead-lettered.")
                }
                return Self.error(
                    409, "ResourceNotFoundException",
                    "Function '\(existing.function)' is not configured on this gateway.")
            }
            try scheduler.admit(1)
            let policy = dispatcher.configuration.retry
            guard
                let invocation = try await scheduler.queue.redrive(
                    id: id, now: Date(), maxAttempts: policy.maxAttempts, maxEventAge: policy.maxEventAge.seconds)
            else {
                return Self.error(409, "InvalidState", "Invocation '\(id)' is no longer dead-lettered.")
            }
            scheduler.schedule([invocation])
            logger.info(
                "dead letter re-driven",
                metadata: [
                    "cinescale.request.id": .string(id), "cinescale.function": .string(invocation.function),
                ])
            return Self.json(200, Self.describe(invocation))
        } catch let error as GatewayError {
            return Self.error(error.code.httpStatus, error.code.lambdaErrorType, error.message)
        } catch {
            return Self.error(500, "QueueUnavailable", "The invocation queue could not be updated: \(error)")
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
        return Self.json(healthy ? 200 : 503, ["status": healthy ? "ok" : "degraded", "functions": functions])
    }

    // MARK: Helpers

    private func authenticate(_ request: Request) -> Response? {
        do throws(GatewayError) {
            _ = try invokeAPI.authenticate(request, body: ByteBuffer())
            return nil
        } catch {
            return Self.error(error.code.httpStatus, error.code.lambdaErrorType, error.message)
        }
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

    static func json(_ status: Int, _ object: [String: Any]) -> Response {
        let data =
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
        return Response(
            status: HTTPResponse.Status(code: status), headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ status: Int, _ code: String, _ message: String) -> Response {
        json(status, ["error": ["code": code, "message": message]])
    }

}
