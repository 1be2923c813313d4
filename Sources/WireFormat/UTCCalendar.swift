import Foundation

/// UTC calendar arithmetic (proleptic Gregorian) for the date formats on the wire, instead of `DateFormatter`
/// and `ISO8601DateFormatter`, which are not `Sendable`, depend on locale settings and are slow.
public enum UTCCalendar {
    /// The UTC calendar fields of a date, whole seconds (rounded down).
    public struct Fields: Sendable, Equatable {
        public var year, month, day, hour, minute, second: Int
        /// 0 is Sunday.
        public var weekday: Int

        public init(_ date: Date) {
            let t = Int(date.timeIntervalSince1970.rounded(.down))
            let days = t >= 0 ? t / 86_400 : (t - 86_399) / 86_400
            let secs = t - days * 86_400
            hour = secs / 3600
            minute = secs / 60 % 60
            second = secs % 60
            weekday = ((days + 4) % 7 + 7) % 7  // 1970-01-01 was a Thursday
            (year, month, day) = UTCCalendar.civil(fromDays: days)
        }
    }

    /// Seconds since 1970 of a UTC civil time; nil when a field is out of range (the day is only checked against
    /// 1...31; a leap second 60 is accepted).
    public static func epoch(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) -> Int? {
        guard (1...12).contains(month), (1...31).contains(day), (0...23).contains(hour), (0...59).contains(minute),
            (0...60).contains(second)
        else { return nil }
        return days(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second
    }

    /// Days since 1970-01-01 of a civil date (Howard Hinnant's `days_from_civil`).
    public static func days(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The civil date of a day since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    public static func civil(fromDays days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// `value` in decimal, zero-padded on the left to `width` digits.
    public static func pad(_ value: Int, _ width: Int) -> String {
        let s = String(value)
        return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
    }
}
