import Crypto
import Foundation
import WireFormat

/// What a key may do. `admin` implies every other scope and manages the tenant's keys.
public enum Scope: String, Codable, CaseIterable, Sendable, Comparable {
    case upload, read, delete, admin

    public static func < (lhs: Scope, rhs: Scope) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// An API key as stored and listed: never its secret, which exists only in the token handed out once.
public struct APIKey: Codable, Sendable, Hashable {
    /// Public identifier (`k` + 16 hex digits), also inside the token.
    public var id: String
    public var tenant: String
    public var name: String
    public var scopes: [Scope]
    public var createdAt: Date
    public var revokedAt: Date?

    public init(id: String, tenant: String, name: String, scopes: [Scope], createdAt: Date, revokedAt: Date? = nil) {
        self.id = id
        self.tenant = tenant
        self.name = name
        self.scopes = scopes
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }

    public func allows(_ scope: Scope) -> Bool { scopes.contains(.admin) || scopes.contains(scope) }
}

/// A failure of the key store, with a code a caller can act on.
public struct APIKeyError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// A tenant, name or scope list that is not allowed.
        case invalidArgument = "InvalidArgument"
        /// The database could not be read or written.
        case storage = "StorageError"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// The keys of every tenant, in the gateway's durable database (the queue's SQLite file or PostgreSQL
/// database, so every gateway sharing the queue shares the keys). Nothing is cached: a revoked key stops
/// working at once on every gateway.
public protocol APIKeyStore: Sendable {
    /// Creates a key; the token is returned here and never again (only its keyed hash is stored).
    func create(tenant: String, name: String, scopes: [Scope]) async throws -> (key: APIKey, token: String)
    /// The keys of `tenant` (every tenant's when nil), revoked ones included, oldest first.
    func list(tenant: String?) async throws -> [APIKey]
    /// Revokes a key of `tenant` (any tenant's when nil); false when there is no such key.
    func revoke(id: String, tenant: String?) async throws -> Bool
    /// The key a token belongs to, if the token is whole and the key not revoked.
    func authenticate(token: String) async throws -> APIKey?
}

/// Tokens: `cs_<key id>_<secret>`, the secret 32 random bytes (256 bits) in base64url. The database keeps
/// HMAC-SHA256 of the whole token under a fixed key: a fast hash is right for a random 256-bit secret (a slow
/// one protects guessable passwords), and swift-crypto's `isValidAuthenticationCode` compares it in constant
/// time.
public enum APIKeyToken {
    static let prefix = "cs_"
    /// A computed key (SymmetricKey is not Sendable, so it cannot be a shared constant); building it is a copy
    /// of 20 bytes.
    private static var hashKey: SymmetricKey { SymmetricKey(data: Array("cinescale api key v1".utf8)) }

    /// A new key id and token.
    public static func generate() -> (id: String, token: String) {
        let id = "k" + RandomBytes.hex(8)
        return (id, "\(prefix)\(id)_\(Base64URL.encode(RandomBytes.make(32)))")
    }

    /// The key id a token names, if it has the token's shape.
    public static func keyID(of token: String) -> String? {
        guard token.hasPrefix(prefix), token.utf8.count <= 128 else { return nil }
        let parts = token.dropFirst(prefix.count).split(separator: "_", maxSplits: 1)
        guard parts.count == 2, parts[0].count == 17, parts[0].first == "k",
            parts[0].dropFirst().allSatisfy({ $0.isHexDigit && !$0.isUppercase }), parts[1].count == 43
        else { return nil }
        return String(parts[0])
    }

    /// What the database keeps of a token.
    public static func hash(_ token: String) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(token.utf8), using: hashKey))
    }

    /// Whether `token` is the one `stored` was made from (constant time).
    public static func matches(_ token: String, stored: [UInt8]) -> Bool {
        HMAC<SHA256>.isValidAuthenticationCode(stored, authenticating: Array(token.utf8), using: hashKey)
    }

}

/// The rules every store applies before it writes.
public enum APIKeyRules {
    /// Tenants name key prefixes of the buckets (a video id starts with its tenant): lowercase letters, digits
    /// and '-', 1–32, starting with a letter or digit — never '_', which ends the tenant in a video id.
    public static func validate(tenant: String) throws(APIKeyError) {
        guard (1...32).contains(tenant.utf8.count), tenant.first != "-",
            tenant.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D })
        else {
            throw APIKeyError(
                .invalidArgument, "a tenant is 1–32 lowercase letters, digits or '-', got '\(tenant.prefix(40))'")
        }
    }

    public static func validate(name: String, scopes: [Scope]) throws(APIKeyError) {
        guard name.count <= 200, !name.contains(where: \.isNewline) else {
            throw APIKeyError(.invalidArgument, "a key's name is at most 200 characters on one line")
        }
        guard !scopes.isEmpty else { throw APIKeyError(.invalidArgument, "a key needs at least one scope") }
    }

    /// Now, to the millisecond: a time that survives the databases' seconds-as-a-double unchanged.
    public static func now() -> Date {
        Date(timeIntervalSince1970: (Date().timeIntervalSince1970 * 1000).rounded() / 1000)
    }

    /// Scopes from `upload,read` (unknown ones refused).
    public static func scopes(_ text: String) throws(APIKeyError) -> [Scope] {
        var scopes: [Scope] = []
        for word in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !word.isEmpty {
            guard let scope = Scope(rawValue: word) else {
                throw APIKeyError(
                    .invalidArgument,
                    "unknown scope '\(word)'; scopes are \(Scope.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            if !scopes.contains(scope) { scopes.append(scope) }
        }
        return scopes.sorted()
    }
}

/// Runs a database operation, reporting its failure as `APIKeyError.storage` (the cause's text for the log):
/// every store's operations, SQLite's and PostgreSQL's.
public enum APIKeyStorage {
    public static func run<T>(_ what: String, _ work: () async throws -> T) async throws(APIKeyError) -> T {
        do {
            return try await work()
        } catch let error as APIKeyError {
            throw error
        } catch {
            throw APIKeyError(.storage, "\(what): \(error)")
        }
    }
}

/// Random bytes from the system's generator: key ids, tokens, secrets, video and request ids.
public enum RandomBytes {
    public static func make(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// `count` random bytes as lowercase hex (2 × count digits).
    public static func hex(_ count: Int) -> String { Hex.encode(make(count)) }
}
