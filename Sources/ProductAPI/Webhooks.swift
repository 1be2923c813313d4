import APIKeys
import AsyncHTTPClient
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import VideoContract
import WireFormat

/// A video event as an app's endpoint receives it.
struct WebhookEvent: Encodable, Sendable {
    var id: String
    var type: String
    var createdAt: String
    var data: [String: JSONValue]

    /// The same id for the same happening however often it is reported (a redelivered store event, a retried
    /// call): the deliveries are unique per endpoint and event id.
    static func id(type: String, video: String, detail: String = "") -> String {
        "evt_" + Hex.encode(SHA256.hash(data: Array("\(type)\n\(video)\n\(detail)".utf8)).prefix(12))
    }
}

extension ProductAPI {
    /// Enqueues `type` for the tenant's endpoints that want it; durable before this returns.
    func emit(_ type: String, video: String, tenant: String, data: [String: JSONValue], detail: String = "")
        async throws
    {
        let now = Date()
        let event = WebhookEvent(
            id: WebhookEvent.id(type: type, video: video, detail: detail), type: type, createdAt: ISO8601.string(now),
            data: data.merging(["videoId": .string(video)]) { first, _ in first })
        let added = try await webhooks.enqueue(
            tenant: tenant, eventID: event.id, type: type, body: try Self.encoded(event), at: now)
        if added > 0 { webhookWakeup.signal() }
    }

    // MARK: Routes

    func createWebhook(_ request: Request, by admin: APIKey) async throws -> Response {
        struct Asked: Decodable {
            var url: String
            var events: [String]
        }
        struct Created: Encodable {
            var webhook: WebhookView
            /// The signing secret, shown here once.
            var secret: String
        }
        let body = try await request.body.collect(upTo: 16 * 1024)
        guard let asked = try? JSONDecoder().decode(Asked.self, from: Data(body.readableBytesView)) else {
            throw APIError(
                400, "InvalidRequest",
                "The body must be JSON: {\"url\": \"https://…\", \"events\": [\"video.ready\", …]}.")
        }
        let unknown = asked.events.filter { !WebhookEndpoint.eventTypes.contains($0) }
        guard !asked.events.isEmpty, unknown.isEmpty else {
            throw APIError(
                400, "InvalidRequest",
                "events are some of \(WebhookEndpoint.eventTypes.joined(separator: ", ")); unknown: \(unknown.prefix(5))."
            )
        }
        try await WebhookTarget.check(asked.url, allowPrivate: configuration.webhooksMayReachPrivateAddresses)
        let (id, secret) = WebhookEndpoint.generate()
        let endpoint = WebhookEndpoint(
            id: id, tenant: admin.tenant, url: asked.url, events: Array(Set(asked.events)).sorted(), secret: secret,
            createdAt: APIKeyRules.now())
        try await webhooks.addEndpoint(endpoint)
        logger.info("webhook added", metadata: ["cinescale.webhook": .string(id), "cinescale.by": .string(admin.id)])
        return try Self.json(Created(webhook: WebhookView(endpoint), secret: secret), status: .created)
    }

    func listWebhooks(by admin: APIKey) async throws -> Response {
        struct List: Encodable { var webhooks: [WebhookView] }
        return try Self.json(List(webhooks: try await webhooks.endpoints(tenant: admin.tenant).map(WebhookView.init)))
    }

    func removeWebhook(_ id: String, by admin: APIKey) async throws -> Response {
        guard try await webhooks.removeEndpoint(id: id, tenant: admin.tenant) else {
            throw APIError(404, "NoSuchWebhook", "There is no webhook '\(id.prefix(64))'.")
        }
        return Response(status: .noContent)
    }

    func listDeliveries(_ id: String, request: Request, by admin: APIKey) async throws -> Response {
        struct List: Encodable { var deliveries: [DeliveryView] }
        let limit = request.uri.queryParameters.get("limit").flatMap { Int($0) } ?? 50
        guard (1...200).contains(limit) else { throw APIError(400, "InvalidRequest", "limit must be 1–200.") }
        guard try await webhooks.endpoints(tenant: admin.tenant).contains(where: { $0.id == id }) else {
            throw APIError(404, "NoSuchWebhook", "There is no webhook '\(id.prefix(64))'.")
        }
        let deliveries = try await webhooks.deliveries(endpoint: id, tenant: admin.tenant, limit: limit)
        return try Self.json(List(deliveries: deliveries.map(DeliveryView.init)))
    }

    func resendDelivery(_ id: String, delivery: String, by admin: APIKey) async throws -> Response {
        guard try await webhooks.resend(delivery: delivery, endpoint: id, tenant: admin.tenant, at: Date()) else {
            throw APIError(
                404, "NoSuchDelivery", "Webhook '\(id.prefix(64))' has no delivery '\(delivery.prefix(64))'.")
        }
        webhookWakeup.signal()
        return Response(status: .accepted)
    }
}

struct WebhookView: Encodable, Sendable {
    var id: String
    var url: String
    var events: [String]
    var createdAt: String

    init(_ endpoint: WebhookEndpoint) {
        id = endpoint.id
        url = endpoint.url
        events = endpoint.events
        createdAt = ISO8601.string(endpoint.createdAt)
    }
}

struct DeliveryView: Encodable, Sendable {
    var id: String
    var eventId: String
    var type: String
    var state: String
    var attempts: Int
    var createdAt: String
    var nextAttemptAt: String?
    var deliveredAt: String?
    var lastStatus: Int?
    var lastError: String?

    init(_ delivery: WebhookDelivery) {
        id = delivery.id
        eventId = delivery.eventID
        type = delivery.type
        state = delivery.state.rawValue
        attempts = delivery.attempts
        createdAt = ISO8601.string(delivery.createdAt)
        nextAttemptAt = delivery.state == .pending ? ISO8601.string(delivery.nextAttemptAt) : nil
        deliveredAt = delivery.deliveredAt.map(ISO8601.string)
        lastStatus = delivery.lastStatus
        lastError = delivery.lastError
    }
}

/// Wakes the sender when an event was enqueued (it also looks every second on its own). A signal given while
/// nobody waits is kept for the next wait. (Not an AsyncStream: a wait that times out cancels its pending
/// `next()`, and cancelling an AsyncStream's `next()` finishes the stream — every later wait then returned at
/// once and the sender polled its database in a busy loop, 68 % of a core in an idle `cinescale dev`.)
final class WebhookWakeup: Sendable {
    private struct State {
        var signalled = false
        /// The current wait's signal waiter, resumed with true by a signal, false by its cancellation.
        var waiter: CheckedContinuation<Bool, Never>?
        /// The current wait's signal waiter was cancelled before it waited (it then returns at once, leaving a
        /// real signal for the next wait).
        var cancelPending = false
    }

    private let state = Mutex(State())

    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.signalled = true
            return nil
        }
        waiter?.resume(returning: true)
    }

    /// Why a wait ended.
    enum Outcome: Sendable, Equatable {
        case signalled
        case timedOut
        case cancelled
    }

    /// Returns on a signal (or one given since the last wait), after `timeout`, or when the task is cancelled;
    /// says which. No signal is lost: one that comes as the wait times out makes it `signalled`, and one given
    /// between waits is taken by the next.
    @discardableResult
    func wait(_ timeout: Duration) async -> Outcome {
        state.withLock { $0.cancelPending = false }  // one wait at a time: anything left is the last one's
        return await withTaskGroup(of: Outcome.self) { group in
            group.addTask { await self.signalled() ? .signalled : .cancelled }
            group.addTask {
                do {
                    try await Task.sleep(for: timeout)
                    return .timedOut
                } catch {
                    return .cancelled
                }
            }
            var outcome = await group.next() ?? .cancelled
            // The other ends on its cancellation: the sleep throws, the signal waiter is resumed by its handler
            // (or by a signal that came meanwhile, which then wins).
            group.cancelAll()
            for await other in group where other == .signalled { outcome = .signalled }
            return outcome
        }
    }

    /// True when a signal resumed it, false when its task's cancellation did.
    private func signalled() async -> Bool {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let now = state.withLock { state -> Bool? in
                    if state.cancelPending {
                        state.cancelPending = false
                        return false
                    }
                    if state.signalled {
                        state.signalled = false
                        return true
                    }
                    state.waiter = continuation
                    return nil
                }
                if let now { continuation.resume(returning: now) }
            }
        } onCancel: {
            // Resumes the waiter (or, not yet waiting, tells it to return at once).
            let waiter = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                if let waiter = state.waiter {
                    state.waiter = nil
                    return waiter
                }
                state.cancelPending = true
                return nil
            }
            waiter?.resume(returning: false)
        }
    }
}

/// The parts of a store notification (MinIO webhook body, S3 event JSON) the webhooks read.
struct StoreNotification: Decodable {
    struct Record: Decodable {
        struct S3: Decodable {
            struct Bucket: Decodable { var name: String }
            struct Object: Decodable {
                var key: String
                var size: Int64?
            }
            var bucket: Bucket
            var object: Object
        }
        var eventName: String?
        var s3: S3
    }
    var Records: [Record]?
}

extension ProductAPI {
    /// Turns the store's notifications into the tenants' video events: an upload's object in the ingest bucket
    /// → `video.uploaded`; a chunked video's first chunk record → `video.playable`; its `status.json` turning
    /// `ready` → `video.playable` (for a whole-video transcode; the same event id as a chunk's, so once) and
    /// `video.ready`, or `failed` → `video.failed` with the reason. Durable before it returns (the gateway answers
    /// the store only then); the deterministic event ids make the store's redeliveries harmless.
    public func observeStoreEvents(_ body: ByteBuffer) async throws {
        guard let notification = try? JSONDecoder().decode(StoreNotification.self, from: Data(body.readableBytesView))
        else { return }
        for record in notification.Records ?? [] where (record.eventName ?? "").contains("ObjectCreated") {
            let key =
                (record.s3.object.key.replacingOccurrences(of: "+", with: " ").removingPercentEncoding
                    ?? record.s3.object.key)
            if record.s3.bucket.name == configuration.ingestBucket, key.hasPrefix(configuration.uploadPrefix) {
                let id = VideoKeys.videoID(forUpload: key)
                guard let tenant = Self.tenant(of: id), (try? Self.validate(id)) != nil else { continue }
                var data: [String: JSONValue] = ["state": .string(VideoState.probing.rawValue)]
                if let size = record.s3.object.size { data["size"] = .number(Double(size)) }
                try await emit("video.uploaded", video: id, tenant: tenant, data: data)
                continue
            }
            guard record.s3.bucket.name == configuration.mediaBucket, let slash = key.firstIndex(of: "/") else {
                continue
            }
            let id = String(key[..<slash])
            guard let tenant = Self.tenant(of: id), (try? Self.validate(id)) != nil else { continue }
            if key == ChunkKeys.record(id, index: 0) {
                try await emit(
                    "video.playable", video: id, tenant: tenant, data: ["hls": .string("/stream/\(id)/master.m3u8")])
            } else if key == VideoKeys.status(id) {
                guard let status = try await optionalJSON(VideoStatus.self, key) else { continue }
                switch status.state {
                case "ready":
                    let hls = JSONValue.string("/stream/\(id)/master.m3u8")
                    try await emit("video.playable", video: id, tenant: tenant, data: ["hls": hls])
                    let renditions: [JSONValue] = (status.renditions ?? []).map { JSONValue.string($0.name) }
                    let data: [String: JSONValue] = [
                        "state": .string("ready"), "hls": hls, "renditions": .array(renditions),
                    ]
                    try await emit("video.ready", video: id, tenant: tenant, data: data)
                case "failed":
                    var data: [String: JSONValue] = ["state": .string("failed")]
                    if let error = status.error {
                        data["code"] = .string(error.code)
                        data["message"] = .string(error.message)
                    }
                    if let stage = status.stage { data["stage"] = .string(stage) }
                    try await emit("video.failed", video: id, tenant: tenant, data: data)
                default:
                    continue
                }
            }
        }
    }
}
