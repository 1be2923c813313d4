import Foundation
import WireFormat

/// The date formats on the S3 wire: RFC 1123 in HTTP headers, ISO 8601 in XML bodies.
///
/// Plain UTC arithmetic (WireFormat's `UTCCalendar`) instead of `DateFormatter`, which is not
/// `Sendable`, depends on locale settings and is slow.
public enum S3Date {
    private static let dayNames = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static let monthNames = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]

    // MARK: Formatting

    /// RFC 1123 / RFC 7231 IMF-fixdate, whole seconds (truncated): `Tue, 27 Mar 2007 19:36:42 GMT`.
    public static func rfc1123(_ date: Date) -> String {
        let t = UTCCalendar.Fields(date)
        return "\(dayNames[t.weekday]), \(pad(t.day, 2)) \(monthNames[t.month - 1]) \(pad(t.year, 4)) "
            + "\(pad(t.hour, 2)):\(pad(t.minute, 2)):\(pad(t.second, 2)) GMT"
    }

    /// ISO 8601 with milliseconds (truncated), as S3 writes it in XML: `2009-10-12T17:50:30.000Z`.
    public static func iso8601(_ date: Date) -> String { ISO8601Date.format(date, milliseconds: true) }

    // MARK: Parsing

    /// Parses ISO 8601 date-times (see `ISO8601Date.parse`): `2009-10-12T17:50:30.000Z`, `2009-10-12T17:50:30Z`,
    /// `2009-10-12T19:50:30+02:00`. Nil for anything else.
    public static func parseISO8601(_ s: String) -> Date? { ISO8601Date.parse(s) }

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
            let t = UTCCalendar.epoch(year: year, month: month, day: day, hour: hour, minute: minute, second: second)
        else { return nil }
        return Date(timeIntervalSince1970: Double(t))
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

    private static func pad(_ value: Int, _ width: Int) -> String { UTCCalendar.pad(value, width) }
}
