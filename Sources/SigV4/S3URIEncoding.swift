import WireFormat

/// S3 URI encoding (RFC 3986 unreserved A-Z a-z 0-9 - . _ ~ kept, everything else %XX uppercase, UTF-8).
public enum S3URIEncoding {
    private static let upperHex: [UInt8] = Array("0123456789ABCDEF".utf8)

    @inline(__always)
    static func isUnreserved(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// Percent-encodes raw bytes.
    static func encodeBytes(_ bytes: some Collection<UInt8>, encodeSlash: Bool) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count + bytes.count / 2)
        for b in bytes {
            if isUnreserved(b) || (!encodeSlash && b == UInt8(ascii: "/")) {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(upperHex[Int(b >> 4)])
                out.append(upperHex[Int(b & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func encode(_ s: String, encodeSlash: Bool) -> String {
        if s.utf8.allSatisfy({ isUnreserved($0) || (!encodeSlash && $0 == UInt8(ascii: "/")) }) { return s }
        return encodeBytes(s.utf8, encodeSlash: encodeSlash)
    }

    /// Encode an object key into a path: each '/'-separated segment encoded once, no normalisation
    /// ("a b/c+d~e" -> "a%20b/c%2Bd~e"; "..", "//" kept as is).
    public static func encodePath(_ decodedPath: String) -> String {
        encode(decodedPath, encodeSlash: false)
    }

    /// Percent-decodes to bytes; nil on a malformed escape. `plusIsSpace` gives form decoding.
    static func decodeBytes(_ s: Substring.UTF8View, plusIsSpace: Bool) -> [UInt8]? {
        var out = [UInt8]()
        out.reserveCapacity(s.count)
        var i = s.startIndex
        while i != s.endIndex {
            let b = s[i]
            if b == UInt8(ascii: "%") {
                let h = s.index(after: i)
                guard h != s.endIndex else { return nil }
                let l = s.index(after: h)
                guard l != s.endIndex, let hi = Hex.nibble(s[h]), let lo = Hex.nibble(s[l]) else { return nil }
                out.append(hi << 4 | lo)
                i = s.index(after: l)
            } else {
                out.append(plusIsSpace && b == UInt8(ascii: "+") ? 0x20 : b)
                i = s.index(after: i)
            }
        }
        return out
    }

    /// Percent-decoding ('+' stays '+'); nil on an invalid escape or when the result is not UTF-8.
    public static func decode(_ s: String) -> String? {
        if !s.utf8.contains(UInt8(ascii: "%")) { return s }
        guard let bytes = decodeBytes(Substring(s).utf8, plusIsSpace: false) else { return nil }
        let decoded = String(decoding: bytes, as: UTF8.self)
        return decoded.utf8.elementsEqual(bytes) ? decoded : nil
    }

    /// Form decoding of a raw query string: '+' is space, order kept, "a" without "=" gives value "".
    /// A component with a malformed escape is kept verbatim.
    public static func decodeQuery(_ raw: String) -> [(name: String, value: String)] {
        var items: [(name: String, value: String)] = []
        for part in raw.split(separator: "&", omittingEmptySubsequences: true) {
            let name: Substring
            let value: Substring
            if let eq = part.firstIndex(of: "=") {
                name = part[..<eq]
                value = part[part.index(after: eq)...]
            } else {
                name = part
                value = ""
            }
            items.append((formDecode(name), formDecode(value)))
        }
        return items
    }

    static func formDecode(_ s: Substring) -> String {
        if !s.utf8.contains(where: { $0 == UInt8(ascii: "%") || $0 == UInt8(ascii: "+") }) { return String(s) }
        guard let bytes = decodeBytes(s.utf8, plusIsSpace: true) else { return String(s) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The SigV4 canonical URI of a path as received: decoded once, each segment re-encoded once.
    /// nil when the path holds a malformed escape.
    static func canonicalURI(rawPath: String) -> String? {
        if rawPath.isEmpty { return "/" }
        guard let bytes = decodeBytes(Substring(rawPath).utf8, plusIsSpace: false) else { return nil }
        let encoded = encodeBytes(bytes, encodeSlash: false)
        return encoded.hasPrefix("/") ? encoded : "/" + encoded
    }

    /// The SigV4 canonical query string of decoded items: names and values encoded, sorted by name then value.
    static func canonicalQuery(_ items: [(name: String, value: String)]) -> String {
        var encoded = items.map {
            (Array(encode($0.name, encodeSlash: true).utf8), Array(encode($0.value, encodeSlash: true).utf8))
        }
        encoded.sort { a, b in
            if a.0 != b.0 { return a.0.lexicographicallyPrecedes(b.0) }
            return a.1.lexicographicallyPrecedes(b.1)
        }
        var out = [UInt8]()
        for (i, (n, v)) in encoded.enumerated() {
            if i > 0 { out.append(UInt8(ascii: "&")) }
            out += n
            out.append(UInt8(ascii: "="))
            out += v
        }
        return String(decoding: out, as: UTF8.self)
    }
}
