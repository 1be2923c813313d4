import APIKeys
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import S3Client
import VideoContract

/// `POST /keys`, `GET /keys`, `DELETE /keys/{id}` (an `admin` key), and the Bearer authentication of every route.
extension ProductAPI {
    /// The key of a request's `Authorization: Bearer` token, if it allows `scope`. The header is parsed here:
    /// the router's context is the gateway's (shared with the S3 and operator routes), so an authenticator
    /// middleware bound to a context type of its own (hummingbird-auth's) would not fit without changing theirs.
    func authenticate(_ request: Request, _ scope: Scope) async throws -> APIKey {
        guard let header = request.headers[.authorization] else {
            throw APIError(401, "Unauthorized", "This route needs an API key: Authorization: Bearer <key>.")
        }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw APIError(401, "Unauthorized", "The Authorization header must be 'Bearer <key>'.")
        }
        guard let key = try await keys.authenticate(token: parts[1].trimmingCharacters(in: .whitespaces)) else {
            throw APIError(401, "Unauthorized", "The API key is not valid (unknown, revoked or mistyped).")
        }
        if let limiter, let wait = limiter.take(key.id) {
            var error = APIError(
                429, "TooManyRequests", "This key is over its rate of \(limiter.rate) requests a second; slow down.")
            error.retryAfter = max(1, Int(wait.rounded(.up)))
            throw error
        }
        guard key.allows(scope) else {
            throw APIError(
                403, "Forbidden",
                "This key's scopes (\(key.scopes.map(\.rawValue).joined(separator: ", "))) do not include '\(scope.rawValue)'."
            )
        }
        return key
    }

    func createKey(_ request: Request, by admin: APIKey) async throws -> Response {
        let body = try await request.body.collect(upTo: 16 * 1024)
        let asked: KeyRequest
        let scopes: [Scope]
        do {
            asked = try JSONDecoder().decode(KeyRequest.self, from: Data(body.readableBytesView))
            scopes = try APIKeyRules.scopes(asked.scopes.joined(separator: ","))
        } catch let error as APIKeyError {
            throw APIError(400, "InvalidRequest", error.message)
        } catch {
            throw APIError(
                400, "InvalidRequest",
                "The body must be JSON: {\"name\": \"…\", \"scopes\": [\"upload\", \"read\", \"delete\", \"admin\"]}.")
        }
        let created: (key: APIKey, token: String)
        do {
            created = try await keys.create(tenant: admin.tenant, name: asked.name ?? "", scopes: scopes)
        } catch let error as APIKeyError where error.code == .invalidArgument {
            throw APIError(400, "InvalidRequest", error.message)
        }
        logger.info(
            "api key created",
            metadata: [
                "cinescale.key": .string(created.key.id), "cinescale.tenant": .string(admin.tenant),
                "cinescale.by": .string(admin.id),
            ])
        return try Self.json(CreatedKey(key: KeyView(created.key), token: created.token), status: .created)
    }

    func listKeys(by admin: APIKey) async throws -> Response {
        try Self.json(KeyList(keys: try await keys.list(tenant: admin.tenant).map(KeyView.init)))
    }

    func revokeKey(_ id: String, by admin: APIKey) async throws -> Response {
        guard try await keys.revoke(id: id, tenant: admin.tenant) else {
            throw APIError(404, "NoSuchKey", "There is no key '\(id.prefix(64))'.")
        }
        logger.info("api key revoked", metadata: ["cinescale.key": .string(id), "cinescale.by": .string(admin.id)])
        return Response(status: .noContent)
    }
}
