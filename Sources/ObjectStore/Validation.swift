enum Validation {
    static let maximumKeyLength = 1024

    static func validateBucketName(_ name: String) throws {
        func fail(_ why: String) -> ObjectStoreError {
            ObjectStoreError(.invalidBucketName, "The specified bucket is not valid: \(why).", bucket: name)
        }
        let bytes = Array(name.utf8)
        guard (3...63).contains(bytes.count) else { throw fail("length must be 3 to 63") }
        func isAlnum(_ c: UInt8) -> Bool { (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) }
        for c in bytes where !(isAlnum(c) || c == UInt8(ascii: ".") || c == UInt8(ascii: "-")) {
            throw fail("only lowercase letters, digits, '.' and '-' are allowed")
        }
        guard isAlnum(bytes.first!), isAlnum(bytes.last!) else {
            throw fail("must start and end with a letter or digit")
        }
        if name.contains("..") { throw fail("must not contain two adjacent periods") }
        if name.contains("-.") || name.contains(".-") {
            throw fail("each label between periods must start and end with a letter or digit")
        }
        if name.hasPrefix("xn--") || name.hasPrefix("sthree-") || name.hasSuffix("-s3alias")
            || name.hasSuffix("--ol-s3")
        {
            throw fail("reserved prefix or suffix")
        }
        let groups = name.split(separator: ".", omittingEmptySubsequences: false)
        if groups.count == 4, groups.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isASCIIDigit) }) {
            throw fail("must not be formatted as an IP address")
        }
    }

    static func validateKey(_ key: String, bucket: String) throws {
        let length = key.utf8.count
        if length == 0 {
            throw ObjectStoreError(.invalidKey, "The object key must not be empty.", bucket: bucket, key: key)
        }
        if length > maximumKeyLength {
            throw ObjectStoreError(
                .keyTooLong, "Your key is too long (\(length) bytes; the maximum is 1024).", bucket: bucket,
                key: key)
        }
        if key.utf8.contains(0) {
            throw ObjectStoreError(.invalidKey, "The object key must not contain NUL.", bucket: bucket, key: key)
        }
    }

    static func isValidUploadId(_ id: String) -> Bool {
        id.utf8.count == 32 && id.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// Strips quotes / weak prefix and lowercases, for ETag comparison.
    static func normalizeETag(_ etag: String) -> String {
        var s = Substring(etag.trimmingSpaces())
        if s.hasPrefix("W/") { s = s.dropFirst(2) }
        if s.count >= 2, s.hasPrefix("\""), s.hasSuffix("\"") { s = s.dropFirst().dropLast() }
        return s.lowercased()
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}
