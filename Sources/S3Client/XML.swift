import Foundation
import S3Wire

/// XML helpers for S3 bodies. The tree, parser and escaping live in `S3Wire`; parsing here reports
/// a malformed document as an ``S3ClientError`` (invalid response).
public enum S3XML {
    /// Parses a whole document into a tree and returns its root element.
    public static func parse(_ data: Data) throws -> S3XMLElement {
        do {
            return try S3XMLElement.parse(data)
        } catch {
            throw S3ClientError.invalidResponse("malformed XML: \(error.reason)")
        }
    }

    /// Parses a whole document held in a `String`.
    public static func parse(_ string: String) throws -> S3XMLElement {
        try parse(Data(string.utf8))
    }

    /// Escapes text for use in XML element content or attribute values (see `S3XMLWriter.escape(_:)`).
    public static func escape(_ string: String) -> String {
        S3XMLWriter.escape(string)
    }

    /// `<name>escaped text</name>`
    static func element(_ name: String, _ text: String) -> String {
        "<\(name)>\(escape(text))</\(name)>"
    }
}

extension S3XMLElement {
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
