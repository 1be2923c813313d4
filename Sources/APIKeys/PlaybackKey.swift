import Foundation

/// A tenant's key for playback tokens (JWTs naming a `signed` video): an HS256 secret the store keeps (it is
/// needed to verify), or the public half of an RS256 key pair whose private half only the tenant holds.
public struct PlaybackKey: Sendable, Hashable {
    public enum Algorithm: String, Codable, Sendable, CaseIterable {
        case hs256 = "HS256"
        case rs256 = "RS256"
    }

    /// Public identifier (`p` + 16 hex digits): the tokens' `kid`.
    public var id: String
    public var tenant: String
    public var algorithm: Algorithm
    /// HS256: the secret's bytes; RS256: the public key, PEM.
    public var material: [UInt8]
    public var createdAt: Date
    public var revokedAt: Date?

    public init(
        id: String, tenant: String, algorithm: Algorithm, material: [UInt8], createdAt: Date, revokedAt: Date? = nil
    ) {
        self.id = id
        self.tenant = tenant
        self.algorithm = algorithm
        self.material = material
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }

    /// A new id and, for HS256, 32 random bytes of secret.
    public static func generateID() -> String { "p" + RandomBytes.hex(8) }

    public static func generateSecret() -> [UInt8] { RandomBytes.make(32) }
}

/// The tenants' playback keys, beside their API keys (the same database).
public protocol PlaybackKeyStore: Sendable {
    func addPlaybackKey(_ key: PlaybackKey) async throws
    /// The tenant's playback keys, revoked ones included, oldest first.
    func playbackKeys(tenant: String) async throws -> [PlaybackKey]
    /// A key by id (revoked or not): a token's `kid`.
    func playbackKey(id: String) async throws -> PlaybackKey?
    func revokePlaybackKey(id: String, tenant: String) async throws -> Bool
}
