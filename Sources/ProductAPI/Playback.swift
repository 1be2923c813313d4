import APIKeys
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import JWTKit
import NIOCore
import VideoContract

/// What a playback token grants, in its `aud` claim (Mux's letters): the video (`v`, also when absent), a
/// thumbnail (`t`) or the storyboard (`s`).
enum PlaybackAsset: String, Sendable {
    case video = "v"
    case thumbnail = "t"
    case storyboard = "s"
}

/// A playback token's claims: the video (`sub`), the expiry (`exp`, required) and optionally the asset kind.
struct PlaybackClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var aud: AudienceClaim?

    func verify(using algorithm: some JWTAlgorithm) throws {
        try exp.verifyNotExpired()
    }
}

/// What a stream request may do: until when (a signed video's token expiry caps every URL minted from it).
struct PlaybackGrant: Sendable {
    var expires: Date?

    /// Seconds a URL minted now may live: `wanted`, never past the token's expiry.
    func lifetime(_ wanted: Int, now: Date = Date()) -> Int {
        guard let expires else { return wanted }
        return max(1, min(wanted, Int(expires.timeIntervalSince(now).rounded(.down))))
    }
}

extension ProductAPI {
    /// Checks a stream request against the video's playback policy and allowed origins.
    /// `token: false` for the URLs the API minted itself from a checked request (media playlists, held
    /// segments, their signature checked by the caller): for a signed video their own `expires` (never past
    /// the token's) is the grant; only the origins are checked again.
    func authorizePlayback(
        _ id: String, _ asset: PlaybackAsset, request: Request, objects: VideoObjects, token needed: Bool = true
    ) async throws -> PlaybackGrant {
        let record = objects.upload
        if let origins = record?.allowedOrigins, !origins.isEmpty {
            let origin = request.headers[.origin] ?? request.headers[.referer].flatMap(Self.origin(of:))
            guard let origin, origins.contains(origin) else {
                throw APIError(403, "OriginNotAllowed", "This video may be streamed only from its allowed origins.")
            }
        }
        guard playbackPolicy(objects) == .signed else { return PlaybackGrant() }
        guard needed else {
            let expires = request.uri.queryParameters.get("expires").flatMap { Int($0) }
            return PlaybackGrant(expires: expires.map { Date(timeIntervalSince1970: Double($0)) })
        }
        let token = request.uri.queryParameters.get("token").map { String($0) } ?? ""
        guard !token.isEmpty else {
            throw APIError(403, "PlaybackTokenRequired", "This video is signed: add ?token=<playback token>.")
        }
        let claims = try await verifyPlaybackToken(token, video: id)
        let audiences = claims.aud?.value ?? [PlaybackAsset.video.rawValue]
        guard audiences.contains(asset.rawValue) else {
            throw APIError(
                403, "InvalidPlaybackToken", "The playback token does not grant this asset ('\(asset.rawValue)').")
        }
        return PlaybackGrant(expires: claims.exp.value)
    }

    /// The video's playback policy: its upload's choice, else the configured default.
    func playbackPolicy(_ objects: VideoObjects) -> PlaybackPolicy {
        objects.upload?.playbackPolicy ?? configuration.defaultPlaybackPolicy
    }

    /// The claims of a playback token for `video`, verified with the playback key its `kid` names, which must
    /// be the video's tenant's and not revoked.
    func verifyPlaybackToken(_ token: String, video: String) async throws -> PlaybackClaims {
        let invalid = APIError(403, "InvalidPlaybackToken", "The playback token is not valid for this video.")
        guard let kid = Self.keyID(ofJWT: token), let key = try await playbackKeys.playbackKey(id: kid),
            key.revokedAt == nil,
            key.tenant == Self.tenant(of: video)
        else { throw invalid }
        let keys = JWTKeyCollection()
        switch key.algorithm {
        case .hs256:
            await keys.add(
                hmac: HMACKey(key: SymmetricKey(data: key.material)), digestAlgorithm: .sha256,
                kid: JWKIdentifier(string: kid))
        case .rs256:
            guard let publicKey = try? Insecure.RSA.PublicKey(pem: String(decoding: key.material, as: UTF8.self)) else {
                throw invalid
            }
            await keys.add(rsa: publicKey, digestAlgorithm: .sha256, kid: JWKIdentifier(string: kid))
        }
        let claims: PlaybackClaims
        do {
            claims = try await keys.verify(token, as: PlaybackClaims.self)
        } catch let error as JWTError where error.errorType == .claimVerificationFailure {
            throw APIError(403, "ExpiredPlaybackToken", "The playback token has expired.")
        } catch {
            throw invalid
        }
        guard claims.sub.value == video else { throw invalid }
        return claims
    }

    /// The `kid` of a JWT's header, read before verifying (it names the key to verify with).
    static func keyID(ofJWT token: String) -> String? {
        guard let header = token.split(separator: ".", omittingEmptySubsequences: false).first, header.count <= 2048
        else {
            return nil
        }
        var base64 = header.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.count % 4) % 4)
        guard let data = Data(base64Encoded: base64),
            let fields = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let kid = fields["kid"] as? String,
            kid.count <= 64
        else { return nil }
        return kid
    }

    /// `https://app.example` from a Referer URL.
    static func origin(of url: String) -> String? {
        guard let components = URLComponents(string: url), let scheme = components.scheme, let host = components.host
        else {
            return nil
        }
        return components.port.map { "\(scheme)://\(host):\($0)" } ?? "\(scheme)://\(host)"
    }

    // MARK: Playback keys

    func createPlaybackKey(_ request: Request, by admin: APIKey) async throws -> Response {
        struct Asked: Decodable {
            var algorithm: String
            var publicKey: String?
        }
        struct Created: Encodable {
            var key: PlaybackKeyView
            /// HS256: the secret (base64url), shown here once.
            var secret: String?
        }
        let body = try await request.body.collect(upTo: 16 * 1024)
        guard let asked = try? JSONDecoder().decode(Asked.self, from: Data(body.readableBytesView)),
            let algorithm = PlaybackKey.Algorithm(rawValue: asked.algorithm)
        else {
            throw APIError(
                400, "InvalidRequest",
                "The body must be JSON: {\"algorithm\": \"HS256\"} or {\"algorithm\": \"RS256\", \"publicKey\": \"<PEM>\"}."
            )
        }
        var material: [UInt8]
        var secret: String?
        switch algorithm {
        case .hs256:
            guard asked.publicKey == nil else {
                throw APIError(400, "InvalidRequest", "An HS256 key takes no publicKey.")
            }
            material = PlaybackKey.generateSecret()
            secret = Base64URL.encode(material)
        case .rs256:
            guard let pem = asked.publicKey, (try? Insecure.RSA.PublicKey(pem: pem)) != nil else {
                throw APIError(
                    400, "InvalidRequest", "An RS256 key needs publicKey: an RSA public key in PEM (2048 bits or more)."
                )
            }
            material = Array(pem.utf8)
        }
        let key = PlaybackKey(
            id: PlaybackKey.generateID(), tenant: admin.tenant, algorithm: algorithm, material: material,
            createdAt: APIKeyRules.now())
        try await playbackKeys.addPlaybackKey(key)
        material = []
        logger.info(
            "playback key created", metadata: ["cinescale.key": .string(key.id), "cinescale.by": .string(admin.id)])
        return try Self.json(Created(key: PlaybackKeyView(key), secret: secret), status: .created)
    }

    func listPlaybackKeys(by admin: APIKey) async throws -> Response {
        struct List: Encodable { var keys: [PlaybackKeyView] }
        return try Self.json(
            List(keys: try await playbackKeys.playbackKeys(tenant: admin.tenant).map(PlaybackKeyView.init)))
    }

    func revokePlaybackKey(_ id: String, by admin: APIKey) async throws -> Response {
        guard try await playbackKeys.revokePlaybackKey(id: id, tenant: admin.tenant) else {
            throw APIError(404, "NoSuchKey", "There is no playback key '\(id.prefix(64))'.")
        }
        return Response(status: .noContent)
    }
}

/// A playback key as listed: never an HS256 secret.
struct PlaybackKeyView: Encodable, Sendable {
    var id: String
    var algorithm: String
    var createdAt: String
    var revokedAt: String?

    init(_ key: PlaybackKey) {
        id = key.id
        algorithm = key.algorithm.rawValue
        createdAt = ISO8601.string(key.createdAt)
        revokedAt = key.revokedAt.map(ISO8601.string)
    }
}
