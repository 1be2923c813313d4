import APIKeys
import Foundation
import NIOCore
import PostgresNIO

extension PostgresAPIKeyStore {
    public func addEndpoint(_ endpoint: WebhookEndpoint) async throws {
        try APIKeyRules.validate(tenant: endpoint.tenant)
        try await APIKeyStorage.run("adding a webhook") {
            try await migrate()
            let events = endpoint.events.joined(separator: ",")
            let created = endpoint.createdAt.timeIntervalSince1970
            try await client.query(
                """
                INSERT INTO cinescale_webhook_endpoint (id, tenant, url, events, secret, created_at)
                VALUES (\(endpoint.id), \(endpoint.tenant), \(endpoint.url), \(events), \(endpoint.secret), \(created))
                """, logger: logger)
        }
    }

    public func endpoints(tenant: String) async throws -> [WebhookEndpoint] {
        try await APIKeyStorage.run("listing webhooks") {
            try await migrate()
            return try await client.query(
                """
                SELECT id, tenant, url, events, secret, created_at FROM cinescale_webhook_endpoint
                WHERE tenant = \(tenant) ORDER BY created_at, id
                """, logger: logger
            ).collect().map(Self.endpoint)
        }
    }

    public func removeEndpoint(id: String, tenant: String) async throws -> Bool {
        try await APIKeyStorage.run("removing a webhook") {
            try await migrate()
            return try await client.withTransaction(logger: logger) { connection in
                let removed = try await connection.query(
                    "DELETE FROM cinescale_webhook_endpoint WHERE id = \(id) AND tenant = \(tenant) RETURNING id",
                    logger: logger
                ).collect()
                guard !removed.isEmpty else { return false }
                try await connection.query(
                    "DELETE FROM cinescale_webhook_delivery WHERE endpoint_id = \(id) AND state = 'pending'",
                    logger: logger)
                return true
            }
        }
    }

    public func enqueue(tenant: String, eventID: String, type: String, body: [UInt8], at: Date) async throws -> Int {
        try await APIKeyStorage.run("enqueueing a webhook event") {
            try await migrate()
            let endpoints = try await endpoints(tenant: tenant).filter { $0.events.contains(type) }
            var added = 0
            for endpoint in endpoints {
                let time = at.timeIntervalSince1970
                let bytes = ByteBuffer(bytes: body)
                let rows = try await client.query(
                    """
                    INSERT INTO cinescale_webhook_delivery
                        (id, endpoint_id, tenant, event_id, type, body, state, attempts, created_at, next_attempt_at)
                    VALUES (\(WebhookDelivery.generateID()), \(endpoint.id), \(tenant), \(eventID), \(type), \(bytes), 'pending', 0,
                        \(time), \(time))
                    ON CONFLICT (endpoint_id, event_id) DO NOTHING RETURNING id
                    """, logger: logger
                ).collect()
                added += rows.count
            }
            return added
        }
    }

    public func claimDue(now: Date, lease: TimeInterval, limit: Int) async throws -> [(
        WebhookDelivery, WebhookEndpoint
    )] {
        try await APIKeyStorage.run("claiming webhook deliveries") {
            try await migrate()
            let time = now.timeIntervalSince1970
            let until = time + lease
            // Each endpoint's oldest pending delivery only (one at a time, in order); SKIP LOCKED so two gateways
            // never claim the same one, and the lease so a claim outlives neither a crash nor a slow receiver.
            let rows = try await client.query(
                """
                UPDATE cinescale_webhook_delivery SET lease_until = \(until) WHERE seq IN (
                    SELECT d.seq FROM cinescale_webhook_delivery d
                    WHERE d.state = 'pending' AND d.next_attempt_at <= \(time) AND d.lease_until <= \(time)
                        AND NOT EXISTS (SELECT 1 FROM cinescale_webhook_delivery p
                                        WHERE p.endpoint_id = d.endpoint_id AND p.state = 'pending' AND p.seq < d.seq)
                    ORDER BY d.seq LIMIT \(limit) FOR UPDATE SKIP LOCKED)
                RETURNING id, endpoint_id, tenant, event_id, type, body, state, attempts, created_at, next_attempt_at,
                    delivered_at, last_status, last_error
                """, logger: logger
            ).collect()
            let deliveries = try rows.map(Self.delivery)
            guard !deliveries.isEmpty else { return [] }
            // Their endpoints in one read (not one per delivery).
            let endpointIDs = Array(Set(deliveries.map(\.endpointID)))
            let endpoints = try await client.query(
                "SELECT id, tenant, url, events, secret, created_at FROM cinescale_webhook_endpoint WHERE id = ANY(\(endpointIDs))",
                logger: logger
            ).collect().map(Self.endpoint)
            let byID = Dictionary(uniqueKeysWithValues: endpoints.map { ($0.id, $0) })
            return deliveries.compactMap { delivery in byID[delivery.endpointID].map { (delivery, $0) } }
        }
    }

    public func record(_ attempt: WebhookAttempt, delivery id: String, at: Date) async throws {
        try await APIKeyStorage.run("recording a webhook attempt") {
            try await migrate()
            let delivered: Double? = attempt.state == .delivered ? at.timeIntervalSince1970 : nil
            let next = attempt.nextAttemptAt.timeIntervalSince1970
            try await client.query(
                """
                UPDATE cinescale_webhook_delivery SET state = \(attempt.state.rawValue), attempts = attempts + 1,
                    next_attempt_at = \(next), lease_until = 0, last_status = \(attempt.status), last_error = \(attempt.error),
                    delivered_at = \(delivered)
                WHERE id = \(id)
                """, logger: logger)
        }
    }

    public func deliveries(endpoint: String, tenant: String, limit: Int) async throws -> [WebhookDelivery] {
        try await APIKeyStorage.run("listing webhook deliveries") {
            try await migrate()
            return try await client.query(
                """
                SELECT id, endpoint_id, tenant, event_id, type, body, state, attempts, created_at, next_attempt_at,
                    delivered_at, last_status, last_error
                FROM cinescale_webhook_delivery WHERE endpoint_id = \(endpoint) AND tenant = \(tenant) ORDER BY seq DESC LIMIT \(limit)
                """, logger: logger
            ).collect().map(Self.delivery)
        }
    }

    public func resend(delivery id: String, endpoint: String, tenant: String, at: Date) async throws -> Bool {
        try await APIKeyStorage.run("re-sending a webhook delivery") {
            try await migrate()
            let time = at.timeIntervalSince1970
            return try await !client.query(
                """
                UPDATE cinescale_webhook_delivery SET state = 'pending', next_attempt_at = \(time), lease_until = 0
                WHERE id = \(id) AND endpoint_id = \(endpoint) AND tenant = \(tenant) RETURNING id
                """, logger: logger
            ).collect().isEmpty
        }
    }

    public func pruneDeliveries(endedBefore cutoff: Date) async throws -> Int {
        try await APIKeyStorage.run("pruning webhook deliveries") {
            try await migrate()
            let time = cutoff.timeIntervalSince1970
            return try await client.query(
                """
                DELETE FROM cinescale_webhook_delivery WHERE state != 'pending'
                    AND COALESCE(delivered_at, next_attempt_at) < \(time) RETURNING id
                """, logger: logger
            ).collect().count
        }
    }

    static func endpoint(_ row: PostgresRow) throws -> WebhookEndpoint {
        let (id, tenant, url, events, secret, created) = try row.decode(
            (String, String, String, String, String, Double).self)
        return WebhookEndpoint(
            id: id, tenant: tenant, url: url, events: events.split(separator: ",").map(String.init), secret: secret,
            createdAt: Date(timeIntervalSince1970: created))
    }

    static func delivery(_ row: PostgresRow) throws -> WebhookDelivery {
        let (id, endpoint, tenant, event, type, body, state, attempts, created, next, delivered, status, error) =
            try row.decode(
                (
                    String, String, String, String, String, ByteBuffer, String, Int, Double, Double, Double?, Int?,
                    String?
                ).self)
        return WebhookDelivery(
            id: id, endpointID: endpoint, tenant: tenant, eventID: event, type: type,
            body: Array(body.readableBytesView),
            state: WebhookDelivery.State(rawValue: state) ?? .pending, attempts: attempts,
            createdAt: Date(timeIntervalSince1970: created),
            nextAttemptAt: Date(timeIntervalSince1970: next),
            deliveredAt: delivered.map(Date.init(timeIntervalSince1970:)),
            lastStatus: status, lastError: error)
    }
}
