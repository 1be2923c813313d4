import Crypto
import Foundation

/// The S3 flexible-checksum algorithms (`x-amz-checksum-<alg>`).
public enum ChecksumAlgorithm: String, Sendable, Hashable, CaseIterable {
    case crc32 = "CRC32"
    case crc32c = "CRC32C"
    case crc64nvme = "CRC64NVME"
    case sha1 = "SHA1"
    case sha256 = "SHA256"

    /// "x-amz-checksum-crc32", ...
    public var headerName: String { "x-amz-checksum-" + rawValue.lowercased() }

    /// Parses a header or trailer name ("x-amz-checksum-crc32c", any case). Other
    /// `x-amz-checksum-*` headers (-algorithm, -type, -mode) are not checksums and give nil.
    public init?(headerName: String) {
        let n = headerName.httpTrimmed.asciiLowercased
        guard n.hasPrefix("x-amz-checksum-") else { return nil }
        let alg = n.dropFirst("x-amz-checksum-".count).uppercased()
        self.init(rawValue: alg)
    }

    /// Accepts the algorithm name in any case ("crc32", "CRC32C", as in x-amz-sdk-checksum-algorithm).
    public init?(name: String) { self.init(rawValue: name.httpTrimmed.uppercased()) }

    /// Length of the raw digest in bytes.
    public var digestLength: Int {
        switch self {
        case .crc32, .crc32c: return 4
        case .crc64nvme: return 8
        case .sha1: return 20
        case .sha256: return 32
        }
    }
}

/// Incremental checksum over contiguous buffers.
///
/// `@unchecked Sendable`: swift-crypto's digest states are copy-on-write values that are not annotated
/// Sendable on Linux; a copy never shares mutable state with the original.
public struct ChecksumHasher: @unchecked Sendable {
    public let algorithm: ChecksumAlgorithm
    private var state: State

    private enum State {
        case crc32(UInt32)
        case crc32c(UInt32)
        case crc64(UInt64)
        case sha1(Insecure.SHA1)
        case sha256(SHA256)
    }

    public init(_ algorithm: ChecksumAlgorithm) {
        self.algorithm = algorithm
        switch algorithm {
        case .crc32: state = .crc32(0)
        case .crc32c: state = .crc32c(0)
        case .crc64nvme: state = .crc64(0)
        case .sha1: state = .sha1(Insecure.SHA1())
        case .sha256: state = .sha256(SHA256())
        }
    }

    public mutating func update(_ buffer: UnsafeRawBufferPointer) {
        guard buffer.count > 0 else { return }
        switch state {
        case .crc32(let c): state = .crc32(CRC.crc32(c, buffer))
        case .crc32c(let c): state = .crc32c(CRC.crc32c(c, buffer))
        case .crc64(let c): state = .crc64(CRC.crc64nvme(c, buffer))
        case .sha1(var h):
            h.update(bufferPointer: buffer)
            state = .sha1(h)
        case .sha256(var h):
            h.update(bufferPointer: buffer)
            state = .sha256(h)
        }
    }

    public mutating func update(_ bytes: some Sequence<UInt8>) {
        if bytes.withContiguousStorageIfAvailable({ update(UnsafeRawBufferPointer($0)) }) != nil { return }
        let array = Array(bytes)
        array.withUnsafeBytes { update($0) }
    }

    /// The raw digest (CRCs big-endian, as S3 encodes them).
    public func finalize() -> [UInt8] {
        switch state {
        case .crc32(let c), .crc32c(let c):
            return withUnsafeBytes(of: c.bigEndian, Array.init)
        case .crc64(let c):
            return withUnsafeBytes(of: c.bigEndian, Array.init)
        case .sha1(let h):
            return Array(h.finalize())
        case .sha256(let h):
            return Array(h.finalize())
        }
    }

    /// The base64 value S3 uses in `x-amz-checksum-<alg>`.
    public func finalizeBase64() -> String { Data(finalize()).base64EncodedString() }
}

/// One-shot checksum helpers producing the values S3 uses.
public enum Checksums {
    /// CRC-32 (IEEE 802.3, as zlib's crc32). Pass a previous result as `crc` to continue.
    public static func crc32(_ bytes: some Sequence<UInt8>, crc: UInt32 = 0) -> UInt32 {
        withBytes(bytes) { CRC.crc32(crc, $0) }
    }
    /// CRC-32C (Castagnoli).
    public static func crc32c(_ bytes: some Sequence<UInt8>, crc: UInt32 = 0) -> UInt32 {
        withBytes(bytes) { CRC.crc32c(crc, $0) }
    }
    /// CRC-64/NVME (the S3 CRC64NVME algorithm).
    public static func crc64nvme(_ bytes: some Sequence<UInt8>, crc: UInt64 = 0) -> UInt64 {
        withBytes(bytes) { CRC.crc64nvme(crc, $0) }
    }
    public static func sha1(_ bytes: some Sequence<UInt8>) -> [UInt8] { digest(.sha1, bytes) }
    public static func sha256(_ bytes: some Sequence<UInt8>) -> [UInt8] { digest(.sha256, bytes) }

    /// Raw digest of `bytes` with `algorithm`.
    public static func digest(_ algorithm: ChecksumAlgorithm, _ bytes: some Sequence<UInt8>) -> [UInt8] {
        var h = ChecksumHasher(algorithm)
        h.update(bytes)
        return h.finalize()
    }

    /// The base64 `x-amz-checksum-<alg>` value of `bytes`.
    public static func base64(_ algorithm: ChecksumAlgorithm, _ bytes: some Sequence<UInt8>) -> String {
        Data(digest(algorithm, bytes)).base64EncodedString()
    }

    /// Base64 of a digest (e.g. Content-MD5 from a 16-byte MD5).
    public static func base64(_ digest: [UInt8]) -> String { Data(digest).base64EncodedString() }

    private static func withBytes<R>(_ bytes: some Sequence<UInt8>, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        if let r = bytes.withContiguousStorageIfAvailable({ body(UnsafeRawBufferPointer($0)) }) { return r }
        return Array(bytes).withUnsafeBytes(body)
    }
}

/// Table-driven, slicing-by-8 CRCs over reflected polynomials.
enum CRC {
    static let ieeeTable: [UInt32] = makeTable32(0xEDB8_8320)
    static let castagnoliTable: [UInt32] = makeTable32(0x82F6_3B78)
    static let nvmeTable: [UInt64] = makeTable64(0x9A6C_9329_AC4B_C9B5)

    private static func makeTable32(_ poly: UInt32) -> [UInt32] {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ poly : c >> 1 }
            t[i] = c
        }
        for k in 1..<8 {
            for i in 0..<256 {
                let prev = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (prev >> 8) ^ t[Int(prev & 0xFF)]
            }
        }
        return t
    }

    private static func makeTable64(_ poly: UInt64) -> [UInt64] {
        var t = [UInt64](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt64(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ poly : c >> 1 }
            t[i] = c
        }
        for k in 1..<8 {
            for i in 0..<256 {
                let prev = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (prev >> 8) ^ t[Int(prev & 0xFF)]
            }
        }
        return t
    }

    @inline(__always)
    static func crc32(_ crc: UInt32, _ buf: UnsafeRawBufferPointer) -> UInt32 { update32(crc, buf, ieeeTable) }
    @inline(__always)
    static func crc32c(_ crc: UInt32, _ buf: UnsafeRawBufferPointer) -> UInt32 { update32(crc, buf, castagnoliTable) }

    static func update32(_ crc: UInt32, _ buf: UnsafeRawBufferPointer, _ table: [UInt32]) -> UInt32 {
        guard let base = buf.baseAddress, buf.count > 0 else { return crc }
        var c = ~crc
        table.withUnsafeBufferPointer { tp in
            let t = tp.baseAddress!
            var p = base
            var n = buf.count
            while n >= 8 {
                let v = UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
                let one = UInt32(truncatingIfNeeded: v) ^ c
                let two = UInt32(truncatingIfNeeded: v >> 32)
                c =
                    t[1792 + Int(one & 0xFF)] ^ t[1536 + Int((one >> 8) & 0xFF)]
                    ^ t[1280 + Int((one >> 16) & 0xFF)] ^ t[1024 + Int(one >> 24)]
                    ^ t[768 + Int(two & 0xFF)] ^ t[512 + Int((two >> 8) & 0xFF)]
                    ^ t[256 + Int((two >> 16) & 0xFF)] ^ t[Int(two >> 24)]
                p += 8
                n -= 8
            }
            while n > 0 {
                c = t[Int((c ^ UInt32(p.load(as: UInt8.self))) & 0xFF)] ^ (c >> 8)
                p += 1
                n -= 1
            }
        }
        return ~c
    }

    static func crc64nvme(_ crc: UInt64, _ buf: UnsafeRawBufferPointer) -> UInt64 {
        guard let base = buf.baseAddress, buf.count > 0 else { return crc }
        var c = ~crc
        nvmeTable.withUnsafeBufferPointer { tp in
            let t = tp.baseAddress!
            var p = base
            var n = buf.count
            while n >= 8 {
                c ^= UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
                c =
                    t[1792 + Int(c & 0xFF)] ^ t[1536 + Int((c >> 8) & 0xFF)]
                    ^ t[1280 + Int((c >> 16) & 0xFF)] ^ t[1024 + Int((c >> 24) & 0xFF)]
                    ^ t[768 + Int((c >> 32) & 0xFF)] ^ t[512 + Int((c >> 40) & 0xFF)]
                    ^ t[256 + Int((c >> 48) & 0xFF)] ^ t[Int(c >> 56)]
                p += 8
                n -= 8
            }
            while n > 0 {
                c = t[Int((c ^ UInt64(p.load(as: UInt8.self))) & 0xFF)] ^ (c >> 8)
                p += 1
                n -= 1
            }
        }
        return ~c
    }
}
