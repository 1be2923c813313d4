import Foundation

/// The date formats on the S3 wire: RFC 1123 in HTTP headers, ISO 8601 in XML bodies.
///
/// Plain UTC arithmetic (proleptic Gregorian calendar) instead of `DateFormatter`, which is not
/// `Sendable`, depends on locale settings and is slow.
public enum S3Date {
    private static let dayNames = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    // MARK: Formatting

    /// RFC 1123 / RFC 7231 IMF-fixdate, whole seconds (truncated): `Tue, 27 Mar 2007 19:36:42 GMT`.
    public static func rfc1123(_ date: Date) -> String {
        let t = UTCTime(date)
        return "\(dayNames[t.weekday]), \(pad(t.day, 2)) \(monthNames[t.month - 1]) \(pad(t.year, 4)) "
            + "\(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2)) GMT"
    }

    /// ISO 8601 with milliseconds (truncated), as S3 writes it in XML: `2009-10-12T17:50:30.000Z`.
    public static func iso8601(_ date: Date) -> String {
        // Whole milliseconds first: the fraction of the double nearest 1764082974.393 is 0.39299988…, which
        // would truncate to .392; the product by 1000 rounds to the millisecond the date was made from.
        let milliseconds = (date.timeIntervalSince1970 * 1000).rounded(.down)
        let seconds = (milliseconds / 1000).rounded(.down)
        let t = UTCTime(Date(timeIntervalSince1970: seconds))
        let millis = Int(milliseconds - seconds * 1000)
        return "\(pad(t.year, 4))-\(pad(t.month, 2))-\(pad(t.day, 2))T"
            + "\(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2)).\(pad(millis, 3))Z"
    }

    // MARK: Parsing

    /// Parses ISO 8601 date-times: `2009-10-12T17:50:30.000Z`, `2009-10-12T17:50:30Z`,
    /// `2009-10-12T19:50:30+02:00`; any number of fractional digits; `t` or a space as separator;
    /// no zone means UTC. Nil for anything else.
    public static func parseISO8601(_ s: String) -> Date? {
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
            let base = epoch(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        else { return nil }
        return Date(timeIntervalSince1970: Double(base - offset) + fraction)
    }

    /// Parses the three HTTP-date formats of RFC 7231 section 7.1.1.1:
    ///
    /// - IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`
    /// - RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT` (two-digit years below 70 are 20xx)
    /// - asctime: `Sun Nov  6 08:49:37 1994`
    ///
    /// Leniently: the day name may be missing and is not checked, names are matched without regard
    /// to case, the zone may be `UTC`, and one-digit days and two-digit IMF years are accepted.
    /// Nil for anything else.
    public static func parseHTTP(_ s: String) -> Date? {
        var tokens = s.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "-" || $0 == "\t" })
        if let first = tokens.first, first.allSatisfy(\.isLetter), month(first) == nil {
            tokens.removeFirst()  // day name
        }
        let day: Int?
        let month: Int?
        var year: Int?
        let clock: Substring
        switch tokens.count {
        case 5:  // day month year time zone (IMF-fixdate, RFC 850)
            guard ["GMT", "UTC"].contains(tokens[4].uppercased()) else { return nil }
            day = number(tokens[0], digits: 1...2)
            month = Self.month(tokens[1])
            year = number(tokens[2], digits: 4...4)
            if year == nil, let short = number(tokens[2], digits: 2...2) {
                year = short < 70 ? 2000 + short : 1900 + short
            }
            clock = tokens[3]
        case 4:  // month day time year (asctime)
            month = Self.month(tokens[0])
            day = number(tokens[1], digits: 1...2)
            clock = tokens[2]
            year = number(tokens[3], digits: 4...4)
        default:
            return nil
        }
        let time = clock.split(separator: ":", omittingEmptySubsequences: false).map { number($0, digits: 1...2) }
        guard let day, let month, let year, time.count == 3, let hour = time[0], let minute = time[1],
            let second = time[2],
            let t = epoch(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        else { return nil }
        return Date(timeIntervalSince1970: Double(t))
    }

    // MARK: Calendar arithmetic

    /// Seconds since 1970 of a UTC civil time; nil when a field is out of range (the day is only
    /// checked against 1...31; a leap second 60 is accepted).
    static func epoch(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) -> Int? {
        guard (1...12).contains(month), (1...31).contains(day), (0...23).contains(hour), (0...59).contains(minute),
            (0...60).contains(second)
        else { return nil }
        return days(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second
    }

    /// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
    private static func days(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The UTC calendar fields of a date, whole seconds (rounded down).
    private struct UTCTime {
        var year, month, day, hour, minute, second, weekday: Int

        init(_ date: Date) {
            let t = Int(date.timeIntervalSince1970.rounded(.down))
            let days = t >= 0 ? t / 86_400 : (t - 86_399) / 86_400
            let secs = t - days * 86_400
            hour = secs / 3600
            minute = secs / 60 % 60
            second = secs % 60
            weekday = ((days + 4) % 7 + 7) % 7  // 1970-01-01 was a Thursday
            // Howard Hinnant's `civil_from_days`.
            let z = days + 719_468
            let era = (z >= 0 ? z : z - 146_096) / 146_097
            let doe = z - era * 146_097
            let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
            let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
            let mp = (5 * doy + 2) / 153
            day = doy - (153 * mp + 2) / 5 + 1
            month = mp < 10 ? mp + 3 : mp - 9
            year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        }
    }

    // MARK: Helpers

    private static func month(_ name: Substring) -> Int? {
        let lowered = name.lowercased()
        return monthNames.firstIndex { $0.lowercased() == lowered }.map { $0 + 1 }
    }

    /// A token of only ASCII digits, of a length within `digits`.
    private static func number(_ token: Substring, digits: ClosedRange<Int>) -> Int? {
        guard digits.contains(token.utf8.count), token.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return Int(token)
    }

    private static func digits(_ u: [UInt8], _ start: Int, _ count: Int) -> Int? {
        guard start + count <= u.count else { return nil }
        var v = 0
        for k in start..<(start + count) {
            let c = u[k]
            guard c >= 48, c <= 57 else { return nil }
            v = v * 10 + Int(c - 48)
        }
        return v
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let s = String(value)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}
