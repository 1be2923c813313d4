import Crypto
import Foundation
import NIOCore

/// MD5 for `Content-MD5` and for checking plain S3 ETags (swift-crypto's `Insecure.MD5`).
/// Not used for anything security-related.
enum MD5 {
    static func hash(_ buffer: ByteBuffer) -> [UInt8] {
        buffer.withUnsafeReadableBytes(hash)
    }

    static func hash(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes(hash)
    }

    private static func hash(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var md5 = Insecure.MD5()
        md5.update(bufferPointer: bytes)
        return Array(md5.finalize())
    }
}

extension String {
    /// `"abc"` → `abc`; also strips a weak-validator `W/` prefix.
    var unquotedETag: String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        if s.hasPrefix("W/") { s = s.dropFirst(2) }
        if s.count >= 2, s.first == "\"", s.last == "\"" { s = s.dropFirst().dropLast() }
        if s.hasPrefix("&quot;"), s.hasSuffix("&quot;"), s.count >= 12 { s = s.dropFirst(6).dropLast(6) }
        return String(s)
    }
}

extension Duration {
    var timeAmount: TimeAmount {
        let (seconds, attoseconds) = self.components
        let nanos = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if nanos.overflow { return .nanoseconds(Int64.max) }
        return .nanoseconds(nanos.partialValue &+ attoseconds / 1_000_000_000)
    }
}
