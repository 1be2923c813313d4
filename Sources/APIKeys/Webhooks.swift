import Crypto
import Foundation
import WireFormat

/// An app's URL that gets the tenant's video events, signed with the endpoint's secret.
public struct WebhookEndpoint: Sendable, Hashable {
    /// `w` + 16 hex digits.
    public var id: String
    public var tenant: String
    public var url: String
    /// The event types it wants (`video.ready`, …).
    public var events: [String]
    /// `whsec_` + 32 random bytes in base64url: the HMAC key of the signatures, shown once.
    public var secret: String
    public var createdAt: Date

    public init(id: String, tenant: String, url: String, events: [String], secret: String, createdAt: Date) {
        self.id = id
        self.tenant = tenant
        self.url = url
        self.events = events
        self.secret = secret
        self.createdAt = createdAt
    }

    public static let eventTypes = [
        "video.created", "video.uploaded", "video.playable", "video.ready", "video.failed", "video.deleted",
    ]

    /// A new endpoint's id and secret.
    public static func generate() -> (id: String, secret: String) {
        ("w" + RandomBytes.hex(8), "whsec_" + Base64URL.encode(RandomBytes.make(32)))
    }
}

/// One event on its way to one endpoint. Deliveries of an endpoint go one at a time, in the order they were
/// enqueued: the oldest pending one is the only one tried until it is delivered or given up.
public struct WebhookDelivery: Sendable, Hashable {
    public enum State: String, Sendable, Codable {
        case pending, delivered, failed
    }

    /// `d` + 16 hex digits.
    public var id: String
    public var endpointID: String
    public var tenant: String
    public var eventID: String
    public var type: String
    public var body: [UInt8]
    public var state: State
    public var attempts: Int
    public var createdAt: Date
    public var nextAttemptAt: Date
    public var deliveredAt: Date?
    public var lastStatus: Int?
    public var lastError: String?

    public init(
        id: String, endpointID: String, tenant: String, eventID: String, type: String, body: [UInt8], state: State,
        attempts: Int, createdAt: Date, nextAttemptAt: Date, deliveredAt: Date? = nil, lastStatus: Int? = nil,
        lastError: String? = nil
    ) {
        self.id = id
        self.endpointID = endpointID
        self.tenant = tenant
        self.eventID = eventID
        self.type = type
        self.body = body
        self.state = state
        self.attempts = attempts
        self.createdAt = createdAt
        self.nextAttemptAt = nextAttemptAt
        self.deliveredAt = deliveredAt
        self.lastStatus = lastStatus
        self.lastError = lastError
    }

    public static func generateID() -> String { "d" + RandomBytes.hex(8) }
}

/// The outcome of one attempt.
public struct WebhookAttempt: Sendable {
    public var state: WebhookDelivery.State
    public var status: Int?
    public var error: String?
    /// When to try again (pending only).
    public var nextAttemptAt: Date

    public init(state: WebhookDelivery.State, status: Int?, error: String?, nextAttemptAt: Date) {
        self.state = state
        self.status = status
        self.error = error
        self.nextAttemptAt = nextAttemptAt
    }
}

/// Endpoints and their deliveries, durable in the gateway's database (so a `kill -9` loses no event, and
/// gateways sharing a PostgreSQL database share the work: a claimed delivery is leased to one of them).
public protocol WebhookStore: Sendable {
    func addEndpoint(_ endpoint: WebhookEndpoint) async throws
    func endpoints(tenant: String) async throws -> [WebhookEndpoint]
    /// Removes an endpoint and its undelivered events.
    func removeEndpoint(id: String, tenant: String) async throws -> Bool
    /// A delivery of the event to each of the tenant's endpoints that wants `type`, once per endpoint and event
    /// id however often it is enqueued; returns how many were new.
    @discardableResult
    func enqueue(tenant: String, eventID: String, type: String, body: [UInt8], at: Date) async throws -> Int
    /// Up to `limit` deliveries due at `now`, each the oldest pending one of its endpoint, leased until
    /// `now + lease` (no other claim takes them meanwhile), with their endpoints.
    func claimDue(now: Date, lease: TimeInterval, limit: Int) async throws -> [(WebhookDelivery, WebhookEndpoint)]
    func record(_ attempt: WebhookAttempt, delivery id: String, at: Date) async throws
    /// An endpoint's deliveries, newest first.
    func deliveries(endpoint: String, tenant: String, limit: Int) async throws -> [WebhookDelivery]
    /// Makes a delivery pending again, due now; false when the tenant has no such delivery.
    func resend(delivery id: String, endpoint: String, tenant: String, at: Date) async throws -> Bool
    /// Deletes deliveries that ended (delivered or given up) before `cutoff`; returns how many.
    @discardableResult
    func pruneDeliveries(endedBefore cutoff: Date) async throws -> Int
}

/// Signatures as Stripe and Mux make them: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
public enum WebhookSignature {
    public static let header = "CineScale-Signature"

    public static func sign(body: [UInt8], secret: String, timestamp: Int) -> String {
        let message = Array("\(timestamp).".utf8) + body
        let mac = HMAC<SHA256>.authenticationCode(for: message, using: SymmetricKey(data: Array(secret.utf8)))
        return "t=\(timestamp),v1=" + Hex.encode(mac)
    }
}

/// Base64url without padding (RFC 4648 §5): tokens and secrets that travel in URLs and headers.
public enum Base64URL {
    public static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(
            of: "/", with: "_"
        )
        .replacingOccurrences(of: "=", with: "")
    }
}
