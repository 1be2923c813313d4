import Foundation
import S3Wire
import Testing

@Suite("S3Date: HTTP and ISO 8601 dates")
struct S3DateTests {
    /// RFC 7231 section 7.1.1.1's example, 1994-11-06T08:49:37Z.
    static let rfc7231Example = Date(timeIntervalSince1970: 784_111_777)

    @Test(
        "the three RFC 7231 HTTP-date formats",
        arguments: [
            "Sun, 06 Nov 1994 08:49:37 GMT",  // IMF-fixdate
            "Sunday, 06-Nov-94 08:49:37 GMT",  // RFC 850
            "Sun Nov  6 08:49:37 1994",  // asctime
        ])
    func httpDateFormats(_ text: String) {
        #expect(S3Date.parseHTTP(text) == Self.rfc7231Example)
    }

    @Test func httpDateVariants() {
        #expect(S3Date.parseHTTP("Wed, 21 Oct 2015 07:28:00 GMT") == Date(timeIntervalSince1970: 1_445_412_480))
        #expect(S3Date.parseHTTP("Wednesday, 21-Oct-15 07:28:00 GMT") == Date(timeIntervalSince1970: 1_445_412_480))
        #expect(S3Date.parseHTTP("Wed Oct 21 07:28:00 2015") == Date(timeIntervalSince1970: 1_445_412_480))
        #expect(S3Date.parseHTTP("1 Jan 1970 00:00:00 GMT") == Date(timeIntervalSince1970: 0))
        #expect(S3Date.parseHTTP("Thursday, 01-Jan-70 00:00:00 GMT") == Date(timeIntervalSince1970: 0))
        #expect(S3Date.parseHTTP("Tue, 29 Feb 2000 12:00:00 UTC") == Date(timeIntervalSince1970: 951_825_600))
        #expect(S3Date.parseHTTP("sun, 06 nov 1994 08:49:37 gmt") == Self.rfc7231Example)
    }

    @Test func httpDateRejects() {
        for text in [
            "", "garbage", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT", "Sun, 06 Nov 1994 08:49:37", "Sun Nov 6 08:49:37 94",
            "Sun, 06 Nov 1994 08:49:37 GMT extra", "2015-10-21T07:28:00Z",
        ] {
            #expect(S3Date.parseHTTP(text) == nil, "\(text)")
        }
    }

    @Test func rfc1123() {
        #expect(S3Date.rfc1123(Self.rfc7231Example) == "Sun, 06 Nov 1994 08:49:37 GMT")
        #expect(S3Date.rfc1123(Date(timeIntervalSince1970: 0)) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(S3Date.rfc1123(Date(timeIntervalSince1970: 1_445_412_480.999)) == "Wed, 21 Oct 2015 07:28:00 GMT")
        #expect(S3Date.rfc1123(Date(timeIntervalSince1970: -1)) == "Wed, 31 Dec 1969 23:59:59 GMT")
        #expect(S3Date.rfc1123(Date(timeIntervalSince1970: 951_825_600)) == "Tue, 29 Feb 2000 12:00:00 GMT")
    }

    @Test func iso8601() {
        #expect(S3Date.iso8601(Date(timeIntervalSince1970: 1_255_369_830)) == "2009-10-12T17:50:30.000Z")
        #expect(S3Date.iso8601(Date(timeIntervalSince1970: 1_255_369_830.5)) == "2009-10-12T17:50:30.500Z")
        #expect(S3Date.iso8601(Date(timeIntervalSince1970: 1_255_369_830.25)) == "2009-10-12T17:50:30.250Z")
        #expect(S3Date.iso8601(Date(timeIntervalSince1970: -0.5)) == "1969-12-31T23:59:59.500Z")
        #expect(S3Date.iso8601(Date(timeIntervalSince1970: 4_107_542_400)) == "2100-03-01T00:00:00.000Z")
        // The fraction of this double is 0.39299988…: still .393, the millisecond it was made from.
        #expect(S3Date.iso8601(Date(timeIntervalSince1970: 1_764_082_974.393)) == "2025-11-25T15:02:54.393Z")
        #expect(
            S3Date.parseISO8601(S3Date.iso8601(Date(timeIntervalSince1970: 1_764_082_974.393)))
                == Date(timeIntervalSince1970: 1_764_082_974.393))
    }

    @Test func parseISO8601() {
        #expect(S3Date.parseISO8601("2009-10-12T17:50:30.000Z") == Date(timeIntervalSince1970: 1_255_369_830))
        #expect(S3Date.parseISO8601("2009-10-12T17:50:30Z") == Date(timeIntervalSince1970: 1_255_369_830))
        #expect(S3Date.parseISO8601("2009-10-12T17:50:30.5Z") == Date(timeIntervalSince1970: 1_255_369_830.5))
        #expect(S3Date.parseISO8601("2009-10-12T19:50:30+02:00") == Date(timeIntervalSince1970: 1_255_369_830))
        #expect(S3Date.parseISO8601("2009-10-12T15:50:30-0200") == Date(timeIntervalSince1970: 1_255_369_830))
        #expect(S3Date.parseISO8601("2009-10-28T22:32:00") == Date(timeIntervalSince1970: 1_256_769_120))
        for bad in ["garbage", "", "2009-10-12T17:50:30.Z", "2009-13-12T17:50:30Z", "2009-10-12T17:50:30Zx"] {
            #expect(S3Date.parseISO8601(bad) == nil, "\(bad)")
        }
    }

    /// Formatting and parsing agree with each other and with Foundation's formatters over a wide range.
    @Test func roundTripsAgainstFoundation() throws {
        let iso = ISO8601DateFormatter()
        iso.formatOptions = [.withInternetDateTime]
        let http = DateFormatter()
        http.locale = Locale(identifier: "en_US_POSIX")
        http.timeZone = TimeZone(identifier: "GMT")
        http.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let seconds = Int.random(in: -2_000_000_000...8_000_000_000, using: &generator)
            let date = Date(timeIntervalSince1970: TimeInterval(seconds))
            let text = S3Date.iso8601(date)
            #expect(text == iso.string(from: date).dropLast() + ".000Z")
            #expect(S3Date.parseISO8601(text) == date)
            let header = S3Date.rfc1123(date)
            #expect(header == http.string(from: date))
            #expect(S3Date.parseHTTP(header) == date)
        }
    }
}
