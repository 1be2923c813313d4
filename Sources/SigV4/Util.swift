import Foundation
import WireFormat

// MARK: - Hex

extension Hex {
    /// True for exactly 64 lowercase or uppercase hex characters.
    static func isSHA256Hex(_ s: String) -> Bool {
        let u = s.utf8
        return u.count == 64 && u.allSatisfy { nibble($0) != nil }
    }
}

// MARK: - ASCII helpers

extension UInt8 {
    @inline(__always) var isHTTPWhitespace: Bool {
        self == 0x20 || self == 0x09 || self == 0x0A || self == 0x0D || self == 0x0B || self == 0x0C
    }
    @inline(__always) var asciiLowercased: UInt8 {
        (self >= 0x41 && self <= 0x5A) ? self | 0x20 : self
    }
}

extension String {
    /// ASCII-only lowercasing (header names are ASCII; avoids locale-dependent rules).
    var asciiLowercased: String {
        if !utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) { return self }
        return String(decoding: utf8.map(\.asciiLowercased), as: UTF8.self)
    }

    /// Leading and trailing HTTP whitespace removed.
    var httpTrimmed: String {
        if let f = utf8.first, let l = utf8.last, !f.isHTTPWhitespace, !l.isHTTPWhitespace { return self }
        let u = Array(utf8)
        var lo = 0
        var hi = u.count
        while lo < hi && u[lo].isHTTPWhitespace { lo += 1 }
        while hi > lo && u[hi - 1].isHTTPWhitespace { hi -= 1 }
        if lo == 0 && hi == u.count { return self }
        return String(decoding: u[lo..<hi], as: UTF8.self)
    }

    /// Trimmed, with every inner whitespace run collapsed to one space (SigV4 "Trimall").
    var sigV4HeaderValue: String {
        if !utf8.contains(where: \.isHTTPWhitespace) { return self }
        var out = [UInt8]()
        out.reserveCapacity(utf8.count)
        var pendingSpace = false
        for b in utf8 {
            if b.isHTTPWhitespace {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace {
                    out.append(0x20)
                    pendingSpace = false
                }
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    func hasPrefixIgnoringCase(_ prefix: String) -> Bool {
        let a = utf8
        let p = prefix.utf8
        guard a.count >= p.count else { return false }
        return zip(a, p).allSatisfy { $0.asciiLowercased == $1.asciiLowercased }
    }
}

// MARK: - Header lookup

struct HeaderIndex {
    /// lowercased name -> values in order received
    private(set) var values: [String: [String]] = [:]

    init(_ headers: [(name: String, value: String)]) {
        for (name, value) in headers {
            values[name.httpTrimmed.asciiLowercased, default: []].append(value)
        }
    }

    /// First value, trimmed.
    func first(_ lowercasedName: String) -> String? {
        values[lowercasedName]?.first?.httpTrimmed
    }

    func all(_ lowercasedName: String) -> [String] { values[lowercasedName] ?? [] }

    func contains(_ lowercasedName: String) -> Bool { values[lowercasedName] != nil }
}

// MARK: - Dates (UTC, WireFormat's calendar; no Foundation formatters so no locale or thread-safety surprises)

enum AMZDate {
    static func epochSeconds(_ date: Date) -> Int {
        Int(date.timeIntervalSince1970.rounded(.down))
    }

    private static func pad(_ v: Int, _ width: Int, into out: inout String) {
        let s = String(v)
        if s.count < width { out += String(repeating: "0", count: width - s.count) }
        out += s
    }

    /// "yyyyMMdd'T'HHmmss'Z'"
    static func iso8601Basic(_ date: Date) -> String {
        let t = epochSeconds(date)
        let days = t >= 0 ? t / 86400 : (t - 86399) / 86400
        let secs = t - days * 86400
        let c = UTCCalendar.civil(fromDays: days)
        var out = ""
        pad(c.year, 4, into: &out)
        pad(c.month, 2, into: &out)
        pad(c.day, 2, into: &out)
        out += "T"
        pad(secs / 3600, 2, into: &out)
        pad((secs / 60) % 60, 2, into: &out)
        pad(secs % 60, 2, into: &out)
        out += "Z"
        return out
    }

    /// Parses "yyyyMMdd'T'HHmmss'Z'" exactly.
    static func parseISO8601Basic(_ s: String) -> Date? {
        let u = Array(s.utf8)
        guard u.count == 16, u[8] == UInt8(ascii: "T"), u[15] == UInt8(ascii: "Z") else { return nil }
        func num(_ r: Range<Int>) -> Int? {
            var v = 0
            for i in r {
                let c = u[i]
                guard c >= 0x30 && c <= 0x39 else { return nil }
                v = v * 10 + Int(c - 0x30)
            }
            return v
        }
        guard let y = num(0..<4), let mo = num(4..<6), let d = num(6..<8),
            let h = num(9..<11), let mi = num(11..<13), let se = num(13..<15),
            (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, se < 61
        else { return nil }
        let t = UTCCalendar.days(year: y, month: mo, day: d) * 86400 + h * 3600 + mi * 60 + se
        return Date(timeIntervalSince1970: TimeInterval(t))
    }

    private static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

    /// Parses HTTP dates: RFC 1123 ("Tue, 27 Mar 2007 19:36:42 +0000" / "GMT" / "UTC" / "Z"), the same
    /// without weekday, RFC 850 ("Tuesday, 27-Mar-07 19:36:42 GMT"), asctime ("Tue Mar 27 19:36:42 2007"),
    /// and, as a courtesy, ISO 8601 basic.
    static func parseHTTPDate(_ raw: String) -> Date? {
        let s = raw.httpTrimmed
        if let d = parseISO8601Basic(s) { return d }
        var tokens = s.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" }).map(String.init)
        guard !tokens.isEmpty else { return nil }
        // Drop a leading weekday.
        if let f = tokens.first, f.utf8.allSatisfy({ ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7A }),
            !months.contains(f.lowercased())
        {
            tokens.removeFirst()
        }
        var day: Int?
        var month: Int?
        var year: Int?
        var time: (Int, Int, Int)?
        var offset = 0
        // RFC 850 "27-Mar-07"
        if tokens.count >= 1, tokens[0].contains("-") {
            let parts = tokens[0].split(separator: "-").map(String.init)
            guard parts.count == 3, let d = Int(parts[0]),
                let m = months.firstIndex(of: parts[1].lowercased()), var y = Int(parts[2])
            else { return nil }
            if y < 100 { y += y < 70 ? 2000 : 1900 }
            day = d
            month = m + 1
            year = y
            tokens.removeFirst()
        }
        for tok in tokens {
            if tok.contains(":") {
                let p = tok.split(separator: ":").map { Int($0) }
                guard p.count == 3, let h = p[0], let m = p[1], let sec = p[2], h < 24, m < 60, sec < 61 else {
                    return nil
                }
                time = (h, m, sec)
            } else if let m = months.firstIndex(of: tok.lowercased()) {
                month = m + 1
            } else if let v = Int(tok), !tok.hasPrefix("+"), !tok.hasPrefix("-") {
                if tok.count == 4 { year = v } else if day == nil, tok.count <= 2 { day = v } else { return nil }
            } else if ["gmt", "utc", "ut", "z"].contains(tok.lowercased()) {
                offset = 0
            } else if tok.hasPrefix("+") || tok.hasPrefix("-"), tok.count == 5, let v = Int(tok.dropFirst()) {
                let sign = tok.hasPrefix("-") ? -1 : 1
                offset = sign * ((v / 100) * 3600 + (v % 100) * 60)
            } else {
                return nil
            }
        }
        guard let d = day, let m = month, let y = year, let (h, mi, se) = time, (1...31).contains(d) else {
            return nil
        }
        let t = UTCCalendar.days(year: y, month: m, day: d) * 86400 + h * 3600 + mi * 60 + se - offset
        return Date(timeIntervalSince1970: TimeInterval(t))
    }
}
