import WireFormat

/// Small, allocation-light JSON helpers for the event formats the store emits and the gateway receives:
/// quoting strings into hand-built documents, and finding the raw bytes of the elements of a top-level array
/// (so a record can be passed on exactly as it was sent, without a parse and re-serialisation).
public enum JSONText {
    /// `s` as a JSON string literal: `JSONString.quote` (WireFormat), under the name the gateway calls it by.
    public static func quote(_ s: String) -> String { JSONString.quote(s) }

    /// The byte ranges of the elements of the array that is the value of `key` in the top-level object of
    /// `bytes`. nil when the document is not an object, has no such key, the value is not an array, or the
    /// document is malformed (unbalanced brackets, unterminated strings). Keys are compared as written
    /// (an escaped spelling of `key` does not match).
    /// Concrete in `[UInt8]`: a generic scanner called from another module runs unspecialised, one witness call
    /// per byte (it was 5 % of the gateway's CPU per event).
    public static func arrayElements(ofTopLevelKey key: String, in bytes: [UInt8]) -> [Range<Int>]? {
        var scanner = Scanner(bytes: bytes)
        scanner.skipWhitespace()
        guard scanner.take(UInt8(ascii: "{")) else { return nil }
        let wanted = Array(key.utf8)
        var found: [Range<Int>]?
        scanner.skipWhitespace()
        if scanner.take(UInt8(ascii: "}")) { return nil }
        while true {
            scanner.skipWhitespace()
            guard let name = scanner.string() else { return nil }
            scanner.skipWhitespace()
            guard scanner.take(UInt8(ascii: ":")) else { return nil }
            scanner.skipWhitespace()
            if found == nil, bytes[name].elementsEqual(wanted), scanner.peek == UInt8(ascii: "[") {
                guard let elements = scanner.arrayElements() else { return nil }
                found = elements
            } else {
                guard scanner.skipValue() else { return nil }
            }
            scanner.skipWhitespace()
            if scanner.take(UInt8(ascii: ",")) { continue }
            guard scanner.take(UInt8(ascii: "}")) else { return nil }
            return found
        }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index: Int

        init(bytes: [UInt8]) {
            self.bytes = bytes
            index = bytes.startIndex
        }

        var peek: UInt8? { index < bytes.endIndex ? bytes[index] : nil }

        mutating func take(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            index += 1
            return true
        }

        mutating func skipWhitespace() {
            while let b = peek, b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 { index += 1 }
        }

        /// A string at the cursor; returns the range of its contents (between the quotes).
        mutating func string() -> Range<Int>? {
            guard take(UInt8(ascii: "\"")) else { return nil }
            let start = index
            while index < bytes.endIndex {
                switch bytes[index] {
                case UInt8(ascii: "\\"): index += 2
                case UInt8(ascii: "\""):
                    let end = index
                    index += 1
                    return start..<end
                default: index += 1
                }
            }
            return nil
        }

        /// Skips one value (string, number, literal, object, array).
        mutating func skipValue() -> Bool {
            guard let first = peek else { return false }
            switch first {
            case UInt8(ascii: "\""):
                return string() != nil
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                var depth = 0
                while let b = peek {
                    switch b {
                    case UInt8(ascii: "\""):
                        guard string() != nil else { return false }
                        continue
                    case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                    case UInt8(ascii: "}"), UInt8(ascii: "]"):
                        depth -= 1
                        if depth == 0 {
                            index += 1
                            return true
                        }
                    default: break
                    }
                    index += 1
                }
                return false
            default:
                let start = index
                while let b = peek, b != UInt8(ascii: ","), b != UInt8(ascii: "}"), b != UInt8(ascii: "]"),
                    b != 0x20, b != 0x0A, b != 0x0D, b != 0x09
                {
                    index += 1
                }
                return index > start
            }
        }

        /// The ranges of the elements of the array at the cursor.
        mutating func arrayElements() -> [Range<Int>]? {
            guard take(UInt8(ascii: "[")) else { return nil }
            var elements: [Range<Int>] = []
            skipWhitespace()
            if take(UInt8(ascii: "]")) { return elements }
            while true {
                skipWhitespace()
                let start = index
                guard skipValue() else { return nil }
                elements.append(start..<index)
                skipWhitespace()
                if take(UInt8(ascii: ",")) { continue }
                guard take(UInt8(ascii: "]")) else { return nil }
                return elements
            }
        }
    }
}
