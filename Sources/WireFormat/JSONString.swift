/// A string as a JSON string literal (RFC 8259): quoted, with `"`, `\` and control characters escaped, everything
/// else as it is. For documents built by hand (event records, error bodies) without a Foundation encoder.
public enum JSONString {
    public static func quote(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count + 2)
        append(s, to: &out)
        return out
    }

    public static func append(_ s: String, to out: inout String) {
        out.append("\"")
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out.append("\"")
    }
}
