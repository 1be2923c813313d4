import Crypto
import Foundation
import WireFormat

/// Signs and checks the API's own stream URLs (`/stream/{id}/{rung}/index.m3u8?expires=…&signature=…`):
/// HMAC-SHA256 over the path and the expiry, so a URL works until it expires and for that path only.
public struct StreamSigner: Sendable {
    private let key: [UInt8]

    public init(secret: [UInt8]) {
        // A key of its own, derived from the secret, so these signatures never double as anything else.
        key = Array(
            HMAC<SHA256>.authenticationCode(for: Array("cinescale-stream-v1".utf8), using: SymmetricKey(data: secret)))
    }

    /// The query string (`expires=…&signature=…`) for `path`, valid until `expires` (Unix seconds).
    public func query(path: String, expires: Int) -> String {
        "expires=\(expires)&signature=\(signature(path: path, expires: expires))"
    }

    public enum Verdict: Sendable, Equatable {
        case valid
        case expired
        case invalid
    }

    public func verify(path: String, expires: String?, signature: String?, now: Date) -> Verdict {
        guard let expires, let seconds = Int(expires), let signature else { return .invalid }
        let expected = self.signature(path: path, expires: seconds)
        guard ConstantTime.equal(signature, expected) else { return .invalid }
        return Double(seconds) >= now.timeIntervalSince1970 ? .valid : .expired
    }

    private func signature(path: String, expires: Int) -> String {
        let mac = HMAC<SHA256>.authenticationCode(
            for: Array("GET\n\(path)\n\(expires)".utf8), using: SymmetricKey(data: key))
        return Hex.encode(mac)
    }
}
