import Foundation
import Testing
import WireFormat

@Suite struct HexTests {
    @Test func encodesLowercaseTwoDigitsAByte() {
        #expect(Hex.encode([UInt8]()) == "")
        #expect(Hex.encode([0x00, 0x0f, 0x10, 0xab, 0xff]) == "000f10abff")
        #expect(Hex.encode((0...255).map { UInt8($0) }).count == 512)
    }

    @Test func readsDigitsOfEitherCase() {
        #expect(Hex.nibble(UInt8(ascii: "0")) == 0)
        #expect(Hex.nibble(UInt8(ascii: "9")) == 9)
        #expect(Hex.nibble(UInt8(ascii: "a")) == 10)
        #expect(Hex.nibble(UInt8(ascii: "F")) == 15)
        #expect(Hex.nibble(UInt8(ascii: "g")) == nil)
        #expect(Hex.nibble(UInt8(ascii: " ")) == nil)
    }
}

@Suite struct ConstantTimeTests {
    @Test func comparesWholeValues() {
        #expect(ConstantTime.equal("abc", "abc"))
        #expect(ConstantTime.equal("", ""))
        #expect(!ConstantTime.equal("abc", "abd"))
        #expect(!ConstantTime.equal("abc", "ab"))
        #expect(!ConstantTime.equal([1, 2, 3], [1, 2, 4]))
        #expect(ConstantTime.equal([1, 2, 3], [1, 2, 3]))
    }
}

@Suite struct JSONStringTests {
    @Test func quotesAndEscapes() {
        #expect(JSONString.quote("a\"b\\c\nd\r\te\u{1}é") == #""a\"b\\c\nd\r\te\u0001é""#)
        var out = "x:"
        JSONString.append("y", to: &out)
        #expect(out == #"x:"y""#)
    }

    @Test func isWhatJSONSerializationReadsBack() throws {
        let text = "quote \" slash \\ bell \u{7} tab \t emoji 🎬 nul \u{0}"
        let data = Data(("[" + JSONString.quote(text) + "]").utf8)
        #expect(try JSONSerialization.jsonObject(with: data) as? [String] == [text])
    }
}

@Suite struct ISO8601DateTests {
    @Test func formatsWholeSecondsOrMilliseconds() {
        let date = Date(timeIntervalSince1970: 1_255_369_830.123_9)  // 2009-10-12T17:50:30.1239Z
        #expect(ISO8601Date.format(date) == "2009-10-12T17:50:30Z")
        #expect(ISO8601Date.format(date, milliseconds: true) == "2009-10-12T17:50:30.123Z")
        #expect(ISO8601Date.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00Z")
        #expect(ISO8601Date.format(Date(timeIntervalSince1970: -1)) == "1969-12-31T23:59:59Z")
    }

    @Test func parsesTheSpellingsOnTheWire() {
        let expected = Date(timeIntervalSince1970: 1_255_369_830)
        #expect(ISO8601Date.parse("2009-10-12T17:50:30Z") == expected)
        #expect(ISO8601Date.parse("2009-10-12T17:50:30.000Z") == expected)
        #expect(ISO8601Date.parse("2009-10-12t17:50:30z") == expected)
        #expect(ISO8601Date.parse("2009-10-12T19:50:30+02:00") == expected)
        #expect(ISO8601Date.parse("2009-10-12T17:50:30") == expected)
        #expect(ISO8601Date.parse("2009-10-12T17:50:30.5Z") == Date(timeIntervalSince1970: 1_255_369_830.5))
        for bad in ["", "2009-10-12", "2009-13-12T17:50:30Z", "2009-10-12T17:50:30.Z", "2009-10-12T17:50:30Zx"] {
            #expect(ISO8601Date.parse(bad) == nil, "\(bad)")
        }
    }

    @Test func roundTripsItsOwnOutput() {
        for seconds in [0, 951_782_400, 1_709_210_096, 4_102_444_800, -86_400 * 365] {
            let date = Date(timeIntervalSince1970: TimeInterval(seconds))
            #expect(ISO8601Date.parse(ISO8601Date.format(date)) == date)
        }
    }

    @Test func agreesWithFoundationsFormatter() {
        let formatter = ISO8601DateFormatter()
        for seconds in stride(from: -2_000_000_000, to: 4_000_000_000, by: 86_399 * 97) {
            let date = Date(timeIntervalSince1970: TimeInterval(seconds))
            #expect(ISO8601Date.format(date) == formatter.string(from: date))
        }
    }
}

@Suite struct UTCCalendarTests {
    @Test func daysAndCivilDatesAreInverse() {
        for days in stride(from: -800_000, to: 800_000, by: 997) {
            let c = UTCCalendar.civil(fromDays: days)
            #expect(UTCCalendar.days(year: c.year, month: c.month, day: c.day) == days)
        }
        let epoch = UTCCalendar.civil(fromDays: 0)
        #expect(epoch.year == 1970 && epoch.month == 1 && epoch.day == 1)
        let leapDay = UTCCalendar.civil(fromDays: 11_016)
        #expect(leapDay.year == 2000 && leapDay.month == 2 && leapDay.day == 29)
        #expect(UTCCalendar.Fields(Date(timeIntervalSince1970: 0)).weekday == 4)  // a Thursday
        #expect(UTCCalendar.epoch(year: 2000, month: 13, day: 1, hour: 0, minute: 0, second: 0) == nil)
    }
}
