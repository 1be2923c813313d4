import S3Wire
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Identifiers need to be unique and unpredictable enough to not collide, not to be secret (the Runtime API
/// also checks which worker answers): a SplitMix64 stream over an atomic counter, seeded once from the
/// system generator, instead of a getrandom syscall per 64 bits.
struct FastRandom {
    private static let seed: UInt64 = {
        var system = SystemRandomNumberGenerator()
        return system.next()
    }()
    private static let counter = Atomic<UInt64>(0)

    mutating func next() -> UInt64 {
        let n = Self.counter.wrappingAdd(1, ordering: .relaxed).newValue
        var z = Self.seed &+ n &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Identifiers, timestamps and JSON snippets in the shapes Lambda uses.
enum LambdaFormat {
    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// Appends `count` lowercase hex digits of `value` (most significant first).
    @inline(__always)
    private static func appendHex(_ value: UInt64, digits count: Int, to out: inout [UInt8]) {
        var shift = (count - 1) * 4
        while shift >= 0 {
            out.append(hexDigits[Int((value >> UInt64(shift)) & 0xf)])
            shift -= 4
        }
    }

    /// A random (version 4) UUID, lowercase, like Lambda request ids.
    static func requestID() -> String {
        var rng = FastRandom()
        var hi = rng.next()
        var lo = rng.next()
        hi = (hi & ~0xF000) | 0x4000  // version 4
        lo = (lo & ~(0xC << 60)) | (0x8 << 60)  // variant 10
        var out: [UInt8] = []
        out.reserveCapacity(36)
        appendHex(hi >> 32, digits: 8, to: &out)
        out.append(UInt8(ascii: "-"))
        appendHex((hi >> 16) & 0xffff, digits: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        appendHex(hi & 0xffff, digits: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        appendHex(lo >> 48, digits: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        appendHex(lo & 0xffff_ffff_ffff, digits: 12, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// `Root=1-<8 hex epoch seconds>-<24 hex>;Parent=<16 hex>;Sampled=0` (X-Ray trace header).
    static func traceID(epochSeconds: Int64) -> String {
        var rng = FastRandom()
        var out: [UInt8] = Array("Root=1-".utf8)
        out.reserveCapacity(80)
        appendHex(UInt64(truncatingIfNeeded: epochSeconds), digits: 8, to: &out)
        out.append(UInt8(ascii: "-"))
        appendHex(rng.next(), digits: 16, to: &out)
        appendHex(rng.next(), digits: 8, to: &out)
        out.append(contentsOf: ";Parent=".utf8)
        appendHex(rng.next(), digits: 16, to: &out)
        out.append(contentsOf: ";Sampled=0".utf8)
        return String(decoding: out, as: UTF8.self)
    }

    /// Wall-clock time in milliseconds since the epoch.
    static func epochMilliseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
    }

    /// `2024-05-01T12:00:00.000Z`
    static func timestamp(epochMilliseconds ms: Int64) -> String {
        var seconds = time_t(ms / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(ms % 1000), 3))Z"
    }

    /// A JSON string literal.
    static func quote(_ s: String) -> String { JSONText.quote(s) }

    /// `{"errorMessage":…,"errorType":…}` as a function error body.
    static func errorBody(type: String, message: String, requestID: String? = nil) -> String {
        var body = "{\"errorMessage\":\(quote(message)),\"errorType\":\(quote(type))"
        if let requestID { body += ",\"requestId\":\(quote(requestID))" }
        return body + ",\"stackTrace\":[]}"
    }

    /// Seconds with two decimals ("3.00").
    static func seconds(_ d: Duration) -> String {
        let hundredths = Int64((d.seconds * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
