import Foundation

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// One element of a parsed XML document: a small, immutable, `Sendable` tree.
///
/// Element names are local names (any `prefix:` is dropped). `text` is the concatenated
/// character data (and CDATA) directly inside the element, kept verbatim (not trimmed), so S3 keys
/// with leading or trailing spaces survive.
public struct S3XMLElement: Sendable, Hashable {
    /// The local name, without any namespace prefix.
    public var name: String
    /// Attributes as written, qualified names included (`xmlns` declarations among them).
    public var attributes: [String: String]
    /// Child elements in document order.
    public var children: [S3XMLElement]
    /// Character data directly inside this element, verbatim.
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
}

/// A document that is not well-formed XML (or is empty).
public struct S3XMLError: Error, Sendable, CustomStringConvertible {
    /// What the parser reported, e.g. the libxml2 error or "empty document".
    public var reason: String

    public init(reason: String) { self.reason = reason }

    public var description: String { "malformed XML: \(reason)" }
}

extension S3XMLElement {
    /// Parses a whole document into a tree and returns its root element.
    ///
    /// Uses FoundationXML's `XMLParser` (portable to Linux) with external entities off, so a body
    /// cannot make the parser read files or fetch URLs.
    public static func parse(_ data: Data) throws(S3XMLError) -> S3XMLElement {
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
        throw S3XMLError(reason: builder.failure ?? parser.parserError.map { "\($0)" } ?? "empty document")
    }

    /// Parses a whole document held in a `String`.
    public static func parse(_ string: String) throws(S3XMLError) -> S3XMLElement {
        try parse(Data(string.utf8))
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
