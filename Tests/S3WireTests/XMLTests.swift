import Foundation
import S3Wire
import Testing

@Suite("S3 XML: writer, escaping, parser")
struct XMLTests {
    /// Everything XML 1.0 can carry. (Other C0 controls are escaped too, as `&#1;`, but XML 1.0
    /// parsers reject them, so they cannot round-trip; S3 clients list such keys with `encoding-type=url`.)
    static let nasty = "a&b<c>d\"e'f\r\ng\th ü \u{7F} 文 🎬  "

    @Test func escaping() {
        #expect(S3XMLWriter.escape("plain key/with spaces") == "plain key/with spaces")
        #expect(
            S3XMLWriter.escape("a&b<c>d\"e'f\r\ng\th ü") == "a&amp;b&lt;c&gt;d&quot;e&apos;f&#13;&#10;g&#9;h ü")
        #expect(S3XMLWriter.escape("\u{1}\u{7F}") == "&#1;&#127;")
    }

    @Test func writer() {
        var xml = S3XMLWriter(root: "ListBucketResult")
        xml.element("Name", "b&b")
        xml.element("Prefix", nil as String?)
        xml.element("MaxKeys", 1000)
        xml.element("IsTruncated", false)
        xml.group("Contents") { $0.element("Key", "k") }
        #expect(
            xml.finish() == #"<?xml version="1.0" encoding="UTF-8"?>"#
                + #"<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#
                + "<Name>b&amp;b</Name><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
                + "<Contents><Key>k</Key></Contents></ListBucketResult>")
        #expect(
            S3XMLWriter(root: "Error", namespace: false).finish()
                == #"<?xml version="1.0" encoding="UTF-8"?><Error></Error>"#)
    }

    @Test func writeThenParseRoundTrip() throws {
        let keys = [Self.nasty, " padded ", "", "a/b/../c", "]]>", "&amp;"]
        var xml = S3XMLWriter(root: "Delete")
        for key in keys { xml.group("Object") { $0.element("Key", key) } }
        let root = try S3XMLElement.parse(xml.finish())
        #expect(root.name == "Delete")
        #expect(root.attributes["xmlns"] == "http://s3.amazonaws.com/doc/2006-03-01/")
        #expect(root.children("Object").map { $0.string("Key") } == keys)
    }

    @Test func parsing() throws {
        let root = try S3XMLElement.parse(
            """
            <?xml version="1.0" encoding="UTF-8"?>
            <s3:CompleteMultipartUpload xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/">
              <s3:Part><s3:PartNumber>1</s3:PartNumber><s3:ETag>"e1"</s3:ETag></s3:Part>
              <Part><PartNumber>2</PartNumber><ETag><![CDATA[<e2>&]]></ETag></Part>
              <Owner id="x"><ID> o </ID></Owner>
            </s3:CompleteMultipartUpload>
            """)
        #expect(root.name == "CompleteMultipartUpload")
        #expect(root.children("Part").map { $0.string("PartNumber") } == ["1", "2"])
        #expect(root.children("Part").map { $0.string("ETag") } == ["\"e1\"", "<e2>&"])
        #expect(root.descendant("Owner", "ID")?.text == " o ")
        #expect(root.child("Owner")?.attributes == ["id": "x"])
        #expect(root.string("Missing") == nil)
        #expect(root.descendant("Owner", "Missing") == nil)
    }

    @Test(
        "malformed documents throw",
        arguments: ["", "   ", "<a><b></a>", "<a>", "<a/><b/>", "not xml", "<a>&bogus;</a>"])
    func malformed(_ text: String) {
        #expect(throws: S3XMLError.self) { try S3XMLElement.parse(text) }
    }

    @Test func errorDescription() {
        do {
            _ = try S3XMLElement.parse("")
            Issue.record("expected an error")
        } catch {
            #expect(!error.reason.isEmpty)
            #expect(error.description == "malformed XML: \(error.reason)")
        }
    }

    @Test func externalEntitiesAreNotResolved() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("s3wire-xxe-\(UUID().uuidString)")
        try Data("SECRET".utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let doc = "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"\(file.absoluteString)\">]><r><k>&x;</k></r>"
        let root = try? S3XMLElement.parse(doc)
        #expect(root?.string("k")?.contains("SECRET") != true)
    }
}
