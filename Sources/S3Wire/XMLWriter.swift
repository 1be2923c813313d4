/// Builds an S3 XML document with correct escaping.
///
/// ```swift
/// var xml = S3XMLWriter(root: "CopyObjectResult")
/// xml.element("ETag", "\"9b2cf535f27731c974343645a3985328\"")
/// let body = xml.finish()
/// ```
public struct S3XMLWriter: Sendable {
    /// The document so far, without the closing root tag.
    public private(set) var text: String
    private let root: String

    /// Starts a document with an XML declaration and the opening `root` tag, in the S3 namespace
    /// (`http://s3.amazonaws.com/doc/2006-03-01/`) unless `namespace` is false.
    public init(root: String, namespace: Bool = true) {
        text = #"<?xml version="1.0" encoding="UTF-8"?>"#
        text += namespace ? "<\(root) xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">" : "<\(root)>"
        self.root = root
    }

    /// `<name>escaped value</name>`; nothing when `value` is nil.
    public mutating func element(_ name: String, _ value: String?) {
        guard let value else { return }
        text += "<\(name)>\(Self.escape(value))</\(name)>"
    }

    /// `<name>value</name>`; nothing when `value` is nil.
    public mutating func element(_ name: String, _ value: Int?) {
        guard let value else { return }
        text += "<\(name)>\(value)</\(name)>"
    }

    /// `<name>true</name>` or `<name>false</name>`.
    public mutating func element(_ name: String, _ value: Bool) {
        text += "<\(name)>\(value ? "true" : "false")</\(name)>"
    }

    /// Writes an opening tag.
    public mutating func open(_ name: String) { text += "<\(name)>" }

    /// Appends markup as it is: the caller escapes any text in it (used for elements with attributes,
    /// such as an ACL grant's `xsi:type`).
    public mutating func raw(_ markup: String) { text += markup }

    /// Writes a closing tag.
    public mutating func close(_ name: String) { text += "</\(name)>" }

    /// Writes `<name>`, whatever `body` writes, then `</name>`.
    public mutating func group(_ name: String, _ body: (inout S3XMLWriter) -> Void) {
        open(name)
        body(&self)
        close(name)
    }

    /// The finished document, closing the root element.
    public func finish() -> String { text + "</\(root)>" }

    /// Escapes text for use in XML element content or attribute values.
    ///
    /// Escapes `& < > " '` and writes CR, LF, TAB, the other C0 controls and DEL as numeric
    /// character references, so they survive XML end-of-line and attribute-value normalisation.
    public static func escape(_ string: String) -> String {
        guard string.utf8.contains(where: needsEscaping) else { return string }
        var out = ""
        out.reserveCapacity(string.utf8.count + 16)
        for scalar in string.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "&#\(scalar.value);"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    private static func needsEscaping(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "&"), UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "\""), UInt8(ascii: "'"), 0x7F:
            return true
        default:
            return byte < 0x20
        }
    }
}
