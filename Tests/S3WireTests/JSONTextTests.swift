import Testing

@testable import S3Wire

@Suite struct JSONTextTests {
    func elements(_ json: String, _ key: String = "Records") -> [String]? {
        let bytes = Array(json.utf8)
        return JSONText.arrayElements(ofTopLevelKey: key, in: bytes)?.map { String(decoding: bytes[$0], as: UTF8.self) }
    }

    @Test func findsTheRawElementsOfATopLevelArray() {
        #expect(
            elements(#"{"EventName":"s3:x","Key":"b/k","Records":[{"a":1},{"b":"]}\"{"} ]}"#) == [
                #"{"a":1}"#, #"{"b":"]}\"{"}"#,
            ])
        #expect(
            elements(#" { "Records" : [ 1 , "two" , [3,[4]] , null , {"x":{"y":[]}} ] } "#) == [
                "1", #""two""#, "[3,[4]]", "null", #"{"x":{"y":[]}}"#,
            ])
        #expect(elements(#"{"Records":[]}"#) == [])
        // Only the top level counts; the first occurrence wins.
        #expect(elements(#"{"inner":{"Records":[1]},"Records":[2],"Records":[3]}"#) == ["2"])
    }

    @Test func refusesWhatItCannotRead() {
        #expect(elements(#"{"Other":[1]}"#) == nil)
        #expect(elements(#"{"Records":{"a":1}}"#) == nil)
        #expect(elements(#"[{"Records":[1]}]"#) == nil)
        #expect(elements(#"{"Records":[1,2"#) == nil)
        #expect(elements(#"{"Records":["unterminated]}"#) == nil)
        #expect(elements("") == nil)
        #expect(elements("{}") == nil)
    }

    @Test func quotesStrings() {
        #expect(JSONText.quote("a\"b\\c\nd\u{1}é") == #""a\"b\\c\nd\u0001é""#)
    }
}
