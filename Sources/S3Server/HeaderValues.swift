// The object routes' header values, parsed and written as S3 has them: RFC 2047 metadata, quoted ETags and
// `Range: bytes=…`.
import Foundation

/// User metadata that is not US-ASCII, as S3 keeps it: a value sent as an RFC 2047 encoded word
/// (`=?UTF-8?B?…?=` or `=?UTF-8?Q?…?=`, what SDKs that refuse raw non-ASCII headers send) is decoded before it
/// is stored, and a stored value that is not ASCII is answered as a `=?UTF-8?B?…?=` word, so it survives
/// HTTP clients that read header bytes as Latin-1. Raw UTF-8 in a header is stored as the text it is.
enum EncodedWord {
    static func encode(_ value: String) -> String {
        guard value.utf8.contains(where: { $0 >= 0x80 || $0 < 0x20 }) else { return value }
        return "=?UTF-8?B?" + Data(value.utf8).base64EncodedString() + "?="
    }

    static func decode(_ value: String) -> String {
        let parts = value.split(separator: "?", omittingEmptySubsequences: false)
        guard value.hasPrefix("=?"), value.hasSuffix("?="), parts.count == 5,
            parts[1].lowercased() == "utf-8"
        else { return value }
        let text = parts[3]
        switch parts[2].uppercased() {
        case "B":
            guard let data = Data(base64Encoded: String(text)), let decoded = String(data: data, encoding: .utf8) else {
                return value
            }
            return decoded
        case "Q":
            var bytes: [UInt8] = []
            var index = text.utf8.startIndex
            let utf8 = text.utf8
            while index < utf8.endIndex {
                let byte = utf8[index]
                if byte == UInt8(ascii: "_") {
                    bytes.append(0x20)
                } else if byte == UInt8(ascii: "="), utf8.distance(from: index, to: utf8.endIndex) >= 3,
                    let hex = UInt8(
                        String(
                            decoding: utf8[utf8.index(after: index)...utf8.index(index, offsetBy: 2)], as: UTF8.self),
                        radix: 16)
                {
                    bytes.append(hex)
                    index = utf8.index(index, offsetBy: 2)
                } else {
                    bytes.append(byte)
                }
                index = utf8.index(after: index)
            }
            return String(validating: bytes, as: UTF8.self) ?? value
        default:
            return value
        }
    }
}

func quoted(_ etag: String) -> String { "\"\(etag)\"" }

func unquoted(_ etag: String) -> String {
    var value = Substring(etag.trimmingCharacters(in: .whitespaces))
    if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 {
        value = value.dropFirst().dropLast()
    }
    return String(value)
}

/// A `Range: bytes=...` request header against an object of known size. Multiple ranges and malformed
/// headers are ignored (the whole object is sent), as S3 does.
enum ByteRangeRequest: Equatable {
    case whole
    case range(Int, Int)
    case unsatisfiable

    static func parse(_ header: String?, size: Int) -> ByteRangeRequest {
        guard let header else { return .whole }
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        guard trimmed.lowercased().hasPrefix("bytes=") else { return .whole }
        let spec = trimmed.dropFirst("bytes=".count).trimmingCharacters(in: .whitespaces)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return .whole }
        let first = spec[..<dash].trimmingCharacters(in: .whitespaces)
        let last = spec[spec.index(after: dash)...].trimmingCharacters(in: .whitespaces)
        if first.isEmpty {
            guard let suffix = Int(last), suffix >= 0 else { return .whole }
            if suffix == 0 || size == 0 { return .unsatisfiable }
            return .range(max(0, size - suffix), size - 1)
        }
        guard let lower = Int(first), lower >= 0 else { return .whole }
        var upper = size - 1
        if !last.isEmpty {
            guard let value = Int(last), value >= lower else { return .whole }
            upper = min(value, size - 1)
        }
        guard lower < size else { return .unsatisfiable }
        return .range(lower, upper)
    }
}
