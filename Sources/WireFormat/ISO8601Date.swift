import Foundation

/// ISO 8601 / RFC 3339 date-times in UTC: `2009-10-12T17:50:30Z`, or with milliseconds as S3 writes them in XML
/// (`2009-10-12T17:50:30.000Z`).
public enum ISO8601Date {
    /// `date` in UTC, whole seconds (truncated), or with milliseconds (truncated).
    public static func format(_ date: Date, milliseconds: Bool = false) -> String {
        // Whole milliseconds first: the fraction of the double nearest 1764082974.393 is 0.39299988…, which
        // would truncate to .392; the product by 1000 rounds to the millisecond the date was made from.
        let millis = (date.timeIntervalSince1970 * 1000).rounded(.down)
        let seconds = (millis / 1000).rounded(.down)
        let t = UTCCalendar.Fields(Date(timeIntervalSince1970: seconds))
        let pad = UTCCalendar.pad
        var out =
            "\(pad(t.year, 4))-\(pad(t.month, 2))-\(pad(t.day, 2))T"
            + "\(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2))"
        if milliseconds { out += "." + pad(Int(millis - seconds * 1000), 3) }
        return out + "Z"
    }

    /// Parses ISO 8601 date-times: `2009-10-12T17:50:30.000Z`, `2009-10-12T17:50:30Z`,
    /// `2009-10-12T19:50:30+02:00`; any number of fractional digits; `t` or a space as separator;
    /// no zone means UTC. Nil for anything else.
    public static func parse(_ s: String) -> Date? {
        let u = Array(s.utf8)
        guard u.count >= 19, u[4] == UInt8(ascii: "-"), u[7] == UInt8(ascii: "-"),
            u[10] == UInt8(ascii: "T") || u[10] == UInt8(ascii: "t") || u[10] == UInt8(ascii: " "),
            u[13] == UInt8(ascii: ":"), u[16] == UInt8(ascii: ":"),
            let year = digits(u, 0, 4), let month = digits(u, 5, 2), let day = digits(u, 8, 2),
            let hour = digits(u, 11, 2), let minute = digits(u, 14, 2), let second = digits(u, 17, 2)
        else { return nil }
        var i = 19
        var fraction = 0.0
        if i < u.count, u[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            let start = i
            while i < u.count, u[i] >= 48, u[i] <= 57 {
                fraction += Double(u[i] - 48) * scale
                scale /= 10
                i += 1
            }
            if i == start { return nil }
        }
        var offset = 0
        if i < u.count {
            switch u[i] {
            case UInt8(ascii: "Z"), UInt8(ascii: "z"):
                i += 1
            case UInt8(ascii: "+"), UInt8(ascii: "-"):
                let sign = u[i] == UInt8(ascii: "+") ? 1 : -1
                guard let oh = digits(u, i + 1, 2) else { return nil }
                var j = i + 3
                if j < u.count, u[j] == UInt8(ascii: ":") { j += 1 }
                guard let om = digits(u, j, 2) else { return nil }
                offset = sign * (oh * 3600 + om * 60)
                i = j + 2
            default:
                return nil
            }
        }
        guard i == u.count,
            let base = UTCCalendar.epoch(
                year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        else { return nil }
        return Date(timeIntervalSince1970: Double(base - offset) + fraction)
    }

    /// `count` ASCII digits at `start` as a number; nil if any is not a digit or the input is too short.
    static func digits(_ u: [UInt8], _ start: Int, _ count: Int) -> Int? {
        guard start + count <= u.count else { return nil }
        var v = 0
        for k in start..<(start + count) {
            let c = u[k]
            guard c >= 48, c <= 57 else { return nil }
            v = v * 10 + Int(c - 48)
        }
        return v
    }
}
