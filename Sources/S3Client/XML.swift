import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// One element of a parsed XML document: a small, immutable, `Sendable` tree.
///
/// Element names are local names (any `prefix:` is dropped). `text` is the concatenated
/// character data directly inside the element, kept verbatim (not trimmed), so S3 keys with
/// leading or trailing spaces survive.
public struct S3XMLElement: Sendable, Hashable {
    public var name: String
    public var attributes: [String: String]
    public var children: [S3XMLElement]
    public var text: String

    public init(name: String, attributes: [String: String] = [:], children: [S3XMLElement] = [], text: String = "") {
        self.name = name
        self.attributes = attributes
        self.children = children
        self.text = text
    }

    /// The first direct child named `name`.
    public func child(_ name: String) -> S3XMLElement? {
        children.first { $0.name == name }
    }

    /// All direct children named `name`, in document order.
    public func children(_ name: String) -> [S3XMLElement] {
        children.filter { $0.name == name }
    }

    /// The text of the first direct child named `name`, or nil when there is no such child.
    public func string(_ name: String) -> String? {
        child(name)?.text
    }

    /// Follows a path of child names: `root.descendant("Owner", "ID")`.
    public func descendant(_ path: String...) -> S3XMLElement? {
        var current: S3XMLElement? = self
        for name in path { current = current?.child(name) }
        return current
    }

    func int(_ name: String) -> Int? {
        string(name).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    func bool(_ name: String) -> Bool? {
        switch string(name)?.trimmingCharacters(in: .whitespacesAndNewlines).lowercased() {
        case "true": return true
        case "false": return false
        default: return nil
        }
    }

    func date(_ name: String) -> Date? {
        string(name).flatMap { S3Date.parseISO8601($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}

/// XML parsing (FoundationXML's `XMLParser`, portable to Linux) and escaping helpers.
public enum S3XML {
    /// Parses a whole document into a tree and returns its root element.
    public static func parse(_ data: Data) throws -> S3XMLElement {
        let builder = TreeBuilder()
        let parser = XMLParser(data: data)
        parser.shouldProcessNamespaces = false
        parser.shouldReportNamespacePrefixes = false
        parser.shouldResolveExternalEntities = false
        parser.delegate = builder
        let ok = parser.parse()
        if let root = builder.root, ok, builder.failure == nil {
            return root
        }
        let reason = builder.failure ?? parser.parserError.map { "\($0)" } ?? "empty document"
        throw S3ClientError.invalidResponse("malformed XML: \(reason)")
    }

    /// Parses a whole document held in a `String`.
    public static func parse(_ string: String) throws -> S3XMLElement {
        try parse(Data(string.utf8))
    }

    /// Escapes text for use in XML element content or attribute values.
    ///
    /// Escapes `& < > " '` and writes CR, LF, TAB and other control characters as numeric
    /// character references so they survive XML end-of-line normalisation.
    public static func escape(_ string: String) -> String {
        var out = ""
        out.reserveCapacity(string.utf8.count)
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

    /// `<name>escaped text</name>`
    static func element(_ name: String, _ text: String) -> String {
        "<\(name)>\(escape(text))</\(name)>"
    }
}

private final class TreeBuilder: NSObject, XMLParserDelegate {
    var stack: [S3XMLElement] = []
    var root: S3XMLElement?
    var failure: String?

    private static func localName(_ qualified: String) -> String {
        if let colon = qualified.lastIndex(of: ":") {
            return String(qualified[qualified.index(after: colon)...])
        }
        return qualified
    }

    func parser(
        _ parser: XMLParser,
        didStartElement elementName: String,
        namespaceURI: String?,
        qualifiedName qName: String?,
        attributes attributeDict: [String: String] = [:]
    ) {
        if root != nil {
            failure = "content after the root element"
            parser.abortParsing()
            return
        }
        stack.append(S3XMLElement(name: Self.localName(elementName), attributes: attributeDict))
    }

    func parser(
        _ parser: XMLParser,
        didEndElement elementName: String,
        namespaceURI: String?,
        qualifiedName qName: String?
    ) {
        guard let element = stack.popLast() else {
            failure = "unbalanced end tag \(elementName)"
            parser.abortParsing()
            return
        }
        if stack.isEmpty {
            root = element
        } else {
            stack[stack.count - 1].children.append(element)
        }
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        guard !stack.isEmpty else { return }
        stack[stack.count - 1].text += string
    }

    func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
        guard !stack.isEmpty else { return }
        stack[stack.count - 1].text += String(decoding: CDATABlock, as: UTF8.self)
    }

    func parser(_ parser: XMLParser, parseErrorOccurred parseError: any Error) {
        if failure == nil { failure = "\(parseError)" }
    }
}
