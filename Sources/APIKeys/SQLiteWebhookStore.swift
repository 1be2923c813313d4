import Foundation
import GRDB

extension SQLiteAPIKeyStore {
    public func addEndpoint(_ endpoint: WebhookEndpoint) async throws {
        try APIKeyRules.validate(tenant: endpoint.tenant)
        try await APIKeyStorage.run("adding a webhook") {
            try await database.write { db in
                try db.execute(
                    sql:
                        "INSERT INTO webhook_endpoint (id, tenant, url, events, secret, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [
                        endpoint.id, endpoint.tenant, endpoint.url, endpoint.events.joined(separator: ","),
                        endpoint.secret,
                        endpoint.createdAt.timeIntervalSince1970,
                    ])
            }
        }
    }

    public func endpoints(tenant: String) async throws -> [WebhookEndpoint] {
        try await APIKeyStorage.run("listing webhooks") {
            try await database.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT * FROM webhook_endpoint WHERE tenant = ? ORDER BY created_at, id",
                    arguments: [tenant]
                ).map(Self.endpoint)
            }
        }
    }

    public func removeEndpoint(id: String, tenant: String) async throws -> Bool {
        try await APIKeyStorage.run("removing a webhook") {
            try await database.write { db in
                try db.execute(
                    sql: "DELETE FROM webhook_endpoint WHERE id = ? AND tenant = ?", arguments: [id, tenant])
                guard db.changesCount > 0 else { return false }
                try db.execute(
                    sql: "DELETE FROM webhook_delivery WHERE endpoint_id = ? AND state = 'pending'", arguments: [id])
                return true
            }
        }
    }

    public func enqueue(tenant: String, eventID: String, type: String, body: [UInt8], at: Date) async throws -> Int {
        try await APIKeyStorage.run("enqueueing a webhook event") {
            // Most events have no endpoint that wants them: a read tells, and spares the store's event intake an
            // fsync per notification.
            let wanted = try await database.read { db in
                try Row.fetchAll(db, sql: "SELECT * FROM webhook_endpoint WHERE tenant = ?", arguments: [tenant])
                    .map(Self.endpoint).contains { $0.events.contains(type) }
            }
            guard wanted else { return 0 }
            return try await database.write { db in
                var added = 0
                let endpoints = try Row.fetchAll(
                    db, sql: "SELECT * FROM webhook_endpoint WHERE tenant = ?", arguments: [tenant]
                )
                .map(Self.endpoint)
                for endpoint in endpoints where endpoint.events.contains(type) {
                    try db.execute(
                        sql: """
                            INSERT OR IGNORE INTO webhook_delivery
                                (id, endpoint_id, tenant, event_id, type, body, state, attempts, created_at, next_attempt_at)
                            VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)
                            """,
                        arguments: [
                            WebhookDelivery.generateID(), endpoint.id, tenant, eventID, type, Data(body),
                            at.timeIntervalSince1970,
                            at.timeIntervalSince1970,
                        ])
                    added += db.changesCount
                }
                return added
            }
        }
    }

    public func claimDue(now: Date, lease: TimeInterval, limit: Int) async throws -> [(
        WebhookDelivery, WebhookEndpoint
    )] {
        let time = now.timeIntervalSince1970
        return try await APIKeyStorage.run("claiming webhook deliveries") {
            // Not durable: a claim lost to a power cut is only a lease that never was (the delivery stays pending).
            try await database.write(durable: false) { db in
                let rows = try Row.fetchAll(
                    db,
                    sql: """
                        SELECT d.*, e.url AS e_url, e.events AS e_events, e.secret AS e_secret, e.created_at AS e_created_at
                        FROM webhook_delivery d JOIN webhook_endpoint e ON e.id = d.endpoint_id
                        WHERE d.state = 'pending' AND d.next_attempt_at <= ? AND d.lease_until <= ?
                            AND d.seq = (SELECT MIN(seq) FROM webhook_delivery p WHERE p.endpoint_id = d.endpoint_id AND p.state = 'pending')
                        ORDER BY d.seq LIMIT ?
                        """, arguments: [time, time, limit])
                var claimed: [(WebhookDelivery, WebhookEndpoint)] = []
                for row in rows {
                    try db.execute(
                        sql: "UPDATE webhook_delivery SET lease_until = ? WHERE seq = ?",
                        arguments: [time + lease, row["seq"]])
                    let delivery = Self.delivery(row)
                    claimed.append(
                        (
                            delivery,
                            WebhookEndpoint(
                                id: delivery.endpointID, tenant: delivery.tenant, url: row["e_url"],
                                events: (row["e_events"] as String).split(separator: ",").map(String.init),
                                secret: row["e_secret"],
                                createdAt: Date(timeIntervalSince1970: row["e_created_at"]))
                        ))
                }
                return claimed
            }
        }
    }

    public func record(_ attempt: WebhookAttempt, delivery id: String, at: Date) async throws {
        try await APIKeyStorage.run("recording a webhook attempt") {
            try await database.write { db in
                try db.execute(
                    sql: """
                        UPDATE webhook_delivery SET state = ?, attempts = attempts + 1, next_attempt_at = ?, lease_until = 0,
                            last_status = ?, last_error = ?, delivered_at = ?
                        WHERE id = ?
                        """,
                    arguments: [
                        attempt.state.rawValue, attempt.nextAttemptAt.timeIntervalSince1970, attempt.status,
                        attempt.error,
                        attempt.state == .delivered ? at.timeIntervalSince1970 : nil, id,
                    ])
            }
        }
    }

    public func deliveries(endpoint: String, tenant: String, limit: Int) async throws -> [WebhookDelivery] {
        try await APIKeyStorage.run("listing webhook deliveries") {
            try await database.read { db in
                try Row.fetchAll(
                    db,
                    sql:
                        "SELECT * FROM webhook_delivery WHERE endpoint_id = ? AND tenant = ? ORDER BY seq DESC LIMIT ?",
                    arguments: [endpoint, tenant, limit]
                ).map(Self.delivery)
            }
        }
    }

    public func resend(delivery id: String, endpoint: String, tenant: String, at: Date) async throws -> Bool {
        try await APIKeyStorage.run("re-sending a webhook delivery") {
            try await database.write { db in
                try db.execute(
                    sql: """
                        UPDATE webhook_delivery SET state = 'pending', next_attempt_at = ?, lease_until = 0
                        WHERE id = ? AND endpoint_id = ? AND tenant = ?
                        """, arguments: [at.timeIntervalSince1970, id, endpoint, tenant])
                return db.changesCount > 0
            }
        }
    }

    public func pruneDeliveries(endedBefore cutoff: Date) async throws -> Int {
        try await APIKeyStorage.run("pruning webhook deliveries") {
            try await database.write(durable: false) { db in
                // Ended: delivered (delivered_at) or given up (its last attempt's next_attempt_at is past 24 h).
                try db.execute(
                    sql: """
                        DELETE FROM webhook_delivery WHERE state != 'pending'
                            AND COALESCE(delivered_at, next_attempt_at) < ?
                        """, arguments: [cutoff.timeIntervalSince1970])
                return db.changesCount
            }
        }
    }

    static func endpoint(_ row: Row) -> WebhookEndpoint {
        WebhookEndpoint(
            id: row["id"], tenant: row["tenant"], url: row["url"],
            events: (row["events"] as String).split(separator: ",").map(String.init),
            secret: row["secret"], createdAt: Date(timeIntervalSince1970: row["created_at"]))
    }

    static func delivery(_ row: Row) -> WebhookDelivery {
        let body: Data = row["body"]
        let delivered: Double? = row["delivered_at"]
        return WebhookDelivery(
            id: row["id"], endpointID: row["endpoint_id"], tenant: row["tenant"], eventID: row["event_id"],
            type: row["type"],
            body: Array(body), state: WebhookDelivery.State(rawValue: row["state"]) ?? .pending,
            attempts: row["attempts"],
            createdAt: Date(timeIntervalSince1970: row["created_at"]),
            nextAttemptAt: Date(timeIntervalSince1970: row["next_attempt_at"]),
            deliveredAt: delivered.map(Date.init(timeIntervalSince1970:)), lastStatus: row["last_status"],
            lastError: row["last_error"])
    }
}
