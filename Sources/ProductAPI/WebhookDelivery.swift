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

/// Where a webhook may point: http(s) URLs whose host resolves to public addresses only, unless the operator
/// allows private ones — so a tenant cannot make the gateway call its own network (loopback, link-local such
/// as cloud metadata at 169.254.169.254, RFC 1918, CGNAT, unique-local IPv6). Checked at registration and
/// again before every attempt (a name may change where it points).
enum WebhookTarget {
    static func check(_ url: String, allowPrivate: Bool) async throws {
        guard let components = URLComponents(string: url), let scheme = components.scheme?.lowercased(),
            scheme == "https" || scheme == "http", let host = components.host, !host.isEmpty, url.count <= 2048,
            components.user == nil, components.password == nil
        else {
            throw APIError(
                400, "InvalidWebhookURL", "A webhook URL is http(s)://host[:port]/path, without credentials.")
        }
        guard !allowPrivate else { return }
        let addresses = try await resolve(host)
        guard !addresses.isEmpty else {
            throw APIError(400, "InvalidWebhookURL", "The webhook's host does not resolve.")
        }
        if let blocked = addresses.first(where: isPrivate) {
            throw APIError(
                400, "WebhookURLNotAllowed",
                "The webhook's host resolves to \(blocked), a loopback, link-local or private address; the operator has not allowed those."
            )
        }
    }

    /// The host's addresses (getaddrinfo, on NIO's blocking-I/O pool).
    static func resolve(_ host: String) async throws -> [String] {
        let name = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        return try await NIOThreadPool.singleton.runIfActive {
            var hints = addrinfo()
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var result: UnsafeMutablePointer<addrinfo>?
            guard getaddrinfo(name, nil, &hints, &result) == 0, let first = result else { return [] }
            defer { freeaddrinfo(first) }
            var addresses: [String] = []
            var next: UnsafeMutablePointer<addrinfo>? = first
            while let info = next {
                var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
                if getnameinfo(
                    info.pointee.ai_addr, info.pointee.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0,
                    NI_NUMERICHOST) == 0
                {
                    addresses.append(
                        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
                }
                next = info.pointee.ai_next
            }
            return addresses
        }
    }

    static func isPrivate(_ address: String) -> Bool {
        let lower = address.lowercased()
        if lower.contains(":") {
            if lower.hasPrefix("::ffff:") { return isPrivate(String(lower.dropFirst(7))) }
            return lower == "::1" || lower == "::" || lower.hasPrefix("fe8") || lower.hasPrefix("fe9")
                || lower.hasPrefix("fea")
                || lower.hasPrefix("feb") || lower.hasPrefix("fc") || lower.hasPrefix("fd")
        }
        let octets = address.split(separator: ".").compactMap { Int($0) }
        guard octets.count == 4 else { return true }
        switch (octets[0], octets[1]) {
        case (0, _), (10, _), (127, _), (169, 254), (192, 168), (255, _): return true
        case (172, 16...31), (100, 64...127): return true
        case (224...239, _): return true
        default: return false
        }
    }
}

/// Delivers the enqueued webhook events: each endpoint's oldest pending delivery, signed, POSTed with a 10 s
/// timeout; a 2xx is delivered, anything else is retried with exponential backoff (1 s doubling to an hour,
/// with jitter) until 24 h after the event, then given up (`failed`, and the endpoint's next event goes).
/// A `Service`: the composition root runs it in its group; gateways sharing a database share the work.
public final class WebhookSender: Service {
    let store: any WebhookStore
    let wakeup: WebhookWakeup
    let client: HTTPClient
    let allowPrivate: Bool
    let logger: Logger
    /// How long an event is retried.
    static let giveUpAfter: TimeInterval = 24 * 3600

    init(store: any WebhookStore, wakeup: WebhookWakeup, allowPrivate: Bool, logger: Logger) {
        self.store = store
        self.wakeup = wakeup
        self.client = HTTPClient.shared
        self.allowPrivate = allowPrivate
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await self.loop() }
    }

    /// How long ended deliveries stay listed (`GET /webhooks/{id}/deliveries`) before they are pruned.
    static let retention: TimeInterval = 7 * 24 * 3600

    private func loop() async {
        var nextPrune = Date()
        while !Task.isCancelled {
            if Date() >= nextPrune {
                nextPrune = Date().addingTimeInterval(3600)
                do {
                    let pruned = try await store.pruneDeliveries(
                        endedBefore: Date().addingTimeInterval(-Self.retention))
                    if pruned > 0 {
                        logger.info(
                            "webhook deliveries pruned", metadata: ["cinescale.count": .stringConvertible(pruned)])
                    }
                } catch {
                    logger.warning(
                        "webhook deliveries cannot be pruned", metadata: ["cinescale.error": .string("\(error)")])
                }
            }
            let due: [(WebhookDelivery, WebhookEndpoint)]
            do {
                due = try await store.claimDue(now: Date(), lease: 20, limit: 32)
            } catch {
                logger.warning("webhook deliveries cannot be read", metadata: ["cinescale.error": .string("\(error)")])
                await wakeup.wait(.seconds(5))
                continue
            }
            if due.isEmpty {
                await wakeup.wait(.seconds(1))
                continue
            }
            await withTaskGroup(of: Void.self) { group in
                for (delivery, endpoint) in due {
                    group.addTask { await self.deliver(delivery, to: endpoint) }
                }
            }
        }
    }

    func deliver(_ delivery: WebhookDelivery, to endpoint: WebhookEndpoint) async {
        let now = Date()
        var status: Int?
        var failure: String?
        do {
            try await WebhookTarget.check(endpoint.url, allowPrivate: allowPrivate)
            var request = HTTPClientRequest(url: endpoint.url)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.headers.add(name: "User-Agent", value: "CineScale-Webhooks/1")
            request.headers.add(name: "CineScale-Event-Id", value: delivery.eventID)
            request.headers.add(
                name: WebhookSignature.header,
                value: WebhookSignature.sign(
                    body: delivery.body, secret: endpoint.secret, timestamp: Int(now.timeIntervalSince1970)))
            request.body = .bytes(ByteBuffer(bytes: delivery.body))
            let response = try await client.execute(request, timeout: .seconds(10))
            status = Int(response.status.code)
            _ = try? await response.body.collect(upTo: 64 * 1024)
        } catch let error as APIError {
            failure = error.message
        } catch {
            failure = "\(error)".prefix(300).description
        }
        let attempt: WebhookAttempt
        if let status, (200..<300).contains(status) {
            attempt = WebhookAttempt(state: .delivered, status: status, error: nil, nextAttemptAt: now)
        } else {
            let backoff = min(3600, pow(2, Double(min(delivery.attempts, 12)))) * Double.random(in: 0.8...1.2)
            let next = now.addingTimeInterval(backoff)
            let expired = next.timeIntervalSince(delivery.createdAt) > Self.giveUpAfter
            attempt = WebhookAttempt(
                state: expired ? .failed : .pending, status: status, error: failure ?? status.map { "HTTP \($0)" },
                nextAttemptAt: next)
        }
        do {
            try await store.record(attempt, delivery: delivery.id, at: now)
        } catch {
            logger.warning(
                "a webhook attempt could not be recorded", metadata: ["cinescale.error": .string("\(error)")])
        }
        logger.debug(
            "webhook attempt",
            metadata: [
                "cinescale.webhook": .string(endpoint.id), "cinescale.event": .string(delivery.eventID),
                "cinescale.state": .string(attempt.state.rawValue), "cinescale.status": .stringConvertible(status ?? 0),
            ])
    }
}
