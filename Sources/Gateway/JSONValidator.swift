/// A strict RFC 8259 syntax check of a payload, without building any value (Lambda only accepts JSON
/// payloads). Iterative, so deep nesting cannot overflow the stack.
enum JSONValidator {
    struct Failure: Error, Sendable, CustomStringConvertible {
        var offset: Int
        var reason: String
        var description: String { "\(reason) at offset \(offset)" }
    }

    static let maxDepth = 10_000

    static func validate(_ bytes: UnsafeRawBufferPointer) throws(Failure) {
        var parser = Parser(bytes: bytes)
        try parser.run()
    }

    private struct Parser {
        let bytes: UnsafeRawBufferPointer
        var i = 0
        /// true = object, false = array
        var stack: [Bool] = []

        init(bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

        @inline(__always) func fail(_ reason: String) -> Failure { Failure(offset: i, reason: reason) }

        @inline(__always) mutating func skipWhitespace() {
            while i < bytes.count {
                let c = bytes[i]
                guard c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 else { return }
                i += 1
            }
        }

        mutating func run() throws(Failure) {
            skipWhitespace()
            guard i < bytes.count else { throw fail("empty document") }
            try value()
            skipWhitespace()
            guard i == bytes.count else { throw fail("unexpected data after the JSON value") }
        }

        /// Parses one value; containers are walked with an explicit stack.
        mutating func value() throws(Failure) {
            while true {
                skipWhitespace()
                guard i < bytes.count else { throw fail("unexpected end of input") }
                switch bytes[i] {
                case UInt8(ascii: "{"):
                    i += 1
                    skipWhitespace()
                    if i < bytes.count, bytes[i] == UInt8(ascii: "}") {
                        i += 1
                    } else {
                        try push(object: true)
                        try key()
                        continue
                    }
                case UInt8(ascii: "["):
                    i += 1
                    skipWhitespace()
                    if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
                        i += 1
                    } else {
                        try push(object: false)
                        continue
                    }
                case UInt8(ascii: "\""):
                    try string()
                case UInt8(ascii: "t"):
                    try literal("true")
                case UInt8(ascii: "f"):
                    try literal("false")
                case UInt8(ascii: "n"):
                    try literal("null")
                case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                    try number()
                default:
                    throw fail("unexpected character '\(Character(Unicode.Scalar(bytes[i])))'")
                }
                // A value ended: close containers until one expects another element.
                while let isObject = stack.last {
                    skipWhitespace()
                    guard i < bytes.count else { throw fail("unexpected end of input") }
                    let c = bytes[i]
                    if c == UInt8(ascii: ",") {
                        i += 1
                        if isObject { try key() }
                        break
                    } else if c == (isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")) {
                        i += 1
                        stack.removeLast()
                    } else {
                        throw fail(isObject ? "expected ',' or '}'" : "expected ',' or ']'")
                    }
                }
                if stack.isEmpty { return }
            }
        }

        mutating func push(object: Bool) throws(Failure) {
            guard stack.count < JSONValidator.maxDepth else { throw fail("nesting too deep") }
            stack.append(object)
        }

        /// `"name" :` inside an object.
        mutating func key() throws(Failure) {
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
            try string()
            skipWhitespace()
            guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            i += 1
        }

        mutating func literal(_ word: StaticString) throws(Failure) {
            let n = word.utf8CodeUnitCount
            guard i + n <= bytes.count else { throw fail("invalid literal") }
            let p = word.utf8Start
            for k in 0..<n where bytes[i + k] != p[k] { throw fail("invalid literal") }
            i += n
        }

        mutating func number() throws(Failure) {
            if bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard i < bytes.count else { throw fail("invalid number") }
            if bytes[i] == UInt8(ascii: "0") {
                i += 1
            } else if isDigit(bytes[i]) {
                while i < bytes.count, isDigit(bytes[i]) { i += 1 }
            } else {
                throw fail("invalid number")
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard i < bytes.count, isDigit(bytes[i]) else { throw fail("invalid number") }
                while i < bytes.count, isDigit(bytes[i]) { i += 1 }
            }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") { i += 1 }
                guard i < bytes.count, isDigit(bytes[i]) else { throw fail("invalid number") }
                while i < bytes.count, isDigit(bytes[i]) { i += 1 }
            }
        }

        @inline(__always) func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

        @inline(__always) func isHex(_ c: UInt8) -> Bool {
            isDigit(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
        }

        /// A string, including UTF-8 well-formedness.
        mutating func string() throws(Failure) {
            i += 1  // opening quote
            while i < bytes.count {
                let c = bytes[i]
                if c == UInt8(ascii: "\"") {
                    i += 1
                    return
                } else if c == UInt8(ascii: "\\") {
                    i += 1
                    guard i < bytes.count else { break }
                    switch bytes[i] {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                        UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        i += 1
                    case UInt8(ascii: "u"):
                        guard i + 4 < bytes.count, isHex(bytes[i + 1]), isHex(bytes[i + 2]), isHex(bytes[i + 3]),
                            isHex(bytes[i + 4])
                        else { throw fail("invalid \\u escape") }
                        i += 5
                    default:
                        throw fail("invalid escape")
                    }
                } else if c < 0x20 {
                    throw fail("control character in string")
                } else if c < 0x80 {
                    i += 1
                } else {
                    try utf8Sequence(c)
                }
            }
            throw fail("unterminated string")
        }

        mutating func utf8Sequence(_ lead: UInt8) throws(Failure) {
            let length: Int
            var lower: UInt8 = 0x80
            var upper: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0:
                length = 3
                lower = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED:
                length = 3
                upper = 0x9F
            case 0xF0:
                length = 4
                lower = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4:
                length = 4
                upper = 0x8F
            default: throw fail("invalid UTF-8")
            }
            guard i + length <= bytes.count else { throw fail("invalid UTF-8") }
            let second = bytes[i + 1]
            guard second >= lower, second <= upper else { throw fail("invalid UTF-8") }
            for k in 2..<max(2, length) where bytes[i + k] & 0xC0 != 0x80 { throw fail("invalid UTF-8") }
            i += length
        }
    }
}
