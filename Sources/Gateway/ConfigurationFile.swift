import Foundation
import Yams

/// The gateway file, read once and decoded in parts: YAML → a node tree → a `${NAME}` substitution pass →
/// each part's `ConfigurationSection` decoded by Yams' `YAMLDecoder` — the gateway core's
/// `GatewayConfiguration`, the event sources' configuration (target EventSources) — from the same tree.
///
/// Every error is a `GatewayError(.invalidConfiguration)` whose message starts with the dotted path of the field
/// (`functions.echo.timeout: …`, `sources.sqs[0].queueUrl: …`): the sections' decoders throw them with the
/// decoder's coding path, and a `DecodingError` Yams raises is mapped to the same form.
public struct ConfigurationFile {
    /// Relative paths in the file are resolved against this directory (standardised).
    public let baseDirectory: String
    /// The gateway's environment: `${NAME}` values, and defaults some sections read (credentials).
    public let environment: [String: String]
    private let root: Node.Mapping

    /// Parses `yaml`; fails unless it is a mapping whose keys are plain strings.
    public init(yaml: String, baseDirectory: String, environment: [String: String] = [:]) throws(GatewayError) {
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch {
            throw GatewayError(.invalidConfiguration, "the gateway file is not valid YAML: \(error)", underlying: error)
        }
        guard let root, case .mapping(let top) = root else {
            throw .configuration("(top level)", "expected a mapping with a 'functions' key")
        }
        try Self.checkKeys(.mapping(top), path: "")
        self.root = top
        self.baseDirectory = URL(fileURLWithPath: baseDirectory).standardizedFileURL.path
        self.environment = environment
    }

    /// Decodes one section from the whole file, after substituting its `${NAME}` values.
    public func decode<Section: ConfigurationSection>(_ type: Section.Type) throws(GatewayError) -> Section {
        let node = try Substitution.apply(Section.substitutions, to: .mapping(root), environment: environment)
        let context = ConfigurationContext(baseDirectory: baseDirectory, environment: environment)
        do {
            return try YAMLDecoder().decode(Section.self, from: node, userInfo: [ConfigurationContext.key: context])
        } catch let error as GatewayError {
            throw error
        } catch let error as DecodingError {
            throw Self.describe(error)
        } catch {
            throw GatewayError(.invalidConfiguration, "the gateway file could not be read: \(error)", underlying: error)
        }
    }

    /// A `DecodingError` as `path: message`.
    static func describe(_ error: DecodingError) -> GatewayError {
        switch error {
        case .keyNotFound(let key, let context):
            return .configuration(ConfigurationPath.dotted(context.codingPath + [key]), "is required")
        case .valueNotFound(_, let context):
            return .configuration(ConfigurationPath.dotted(context.codingPath), "is required")
        case .typeMismatch(let type, let context):
            let expected =
                switch type {
                case is Node.Mapping.Type: "a mapping"
                case is Node.Sequence.Type: "a list"
                default: "a value"
                }
            return .configuration(ConfigurationPath.dotted(context.codingPath), "expected \(expected)")
        case .dataCorrupted(let context):
            return .configuration(ConfigurationPath.dotted(context.codingPath), context.debugDescription)
        @unknown default:
            return GatewayError(.invalidConfiguration, "\(error)")
        }
    }

    /// Mapping keys must be plain strings (a list or a mapping as a key would be dropped by the decoder).
    private static func checkKeys(_ node: Node, path: String) throws(GatewayError) {
        switch node {
        case .mapping(let mapping):
            for (key, value) in mapping {
                guard case .scalar(let scalar) = key else {
                    throw .configuration(path.isEmpty ? "(top level)" : path, "keys must be plain strings")
                }
                try checkKeys(value, path: path.isEmpty ? scalar.string : "\(path).\(scalar.string)")
            }
        case .sequence(let sequence):
            for (index, item) in sequence.enumerated() { try checkKeys(item, path: "\(path)[\(index)]") }
        case .scalar, .alias:
            break
        }
    }
}

/// A part of the configuration decoded from the whole gateway file (each ignores the top-level keys of the
/// others; the gateway core's rejects unknown ones).
public protocol ConfigurationSection: Decodable {
    /// Where `${NAME}` is replaced in this section, and how.
    static var substitutions: [Substitution] { get }
}

/// What a section's decoder reads besides the file: `decoder.configurationContext`.
public struct ConfigurationContext: Sendable {
    public var baseDirectory: String
    public var environment: [String: String]

    static let key = CodingUserInfoKey(rawValue: "cinescale.configuration")!

    /// `path` made absolute against the base directory.
    public func resolve(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: baseDirectory, isDirectory: true))
            .standardizedFileURL.path
    }
}

/// `${NAME}` in the file: one of the gateway's environment variables, so that secrets stay out of the file.
/// Replaced before decoding, only where a section allows it — a value elsewhere is taken as written — and in one
/// of three forms, as the file has always had them.
public struct Substitution: Sendable {
    /// A step of the path a substitution applies at.
    public enum Step: Sendable, ExpressibleByStringLiteral {
        case key(String)
        /// Any key of a mapping.
        case anyKey
        /// Any item of a list.
        case anyItem

        public init(stringLiteral value: String) { self = .key(value) }
    }

    public enum Form: Sendable {
        /// The whole value is `${NAME}` (anything else is taken as written): an error names the field.
        case wholeValue
        /// As `wholeValue`, for the values of a mapping of variables: an error names the mapping and the variable
        /// (`functions.probe.environment: KEY names ${X}, …`).
        case wholeValueOfVariable
        /// `${NAME}` anywhere in the value, percent-encoded for a URL's password when `percentEncoded`.
        case anywhere(percentEncoded: Bool)
    }

    public var path: [Step]
    public var form: Form

    public init(_ path: [Step], _ form: Form) {
        self.path = path
        self.form = form
    }

    static func apply(_ substitutions: [Substitution], to node: Node, environment: [String: String])
        throws(GatewayError) -> Node
    {
        var node = node
        for substitution in substitutions {
            node = try substitution.apply(to: node, at: substitution.path[...], path: "", environment: environment)
        }
        return node
    }

    private func apply(to node: Node, at steps: ArraySlice<Step>, path: String, environment: [String: String])
        throws(GatewayError) -> Node
    {
        guard let step = steps.first else {
            guard case .scalar(var scalar) = node else { return node }  // left to the decoder to refuse
            scalar.string = try substitute(scalar.string, path: path, environment: environment)
            return .scalar(scalar)
        }
        let rest = steps.dropFirst()
        switch (step, node) {
        case (.key, .mapping(let mapping)), (.anyKey, .mapping(let mapping)):
            var pairs: [(Node, Node)] = []
            for (key, value) in mapping {
                let name = key.scalar?.string ?? ""
                if case .key(let wanted) = step, wanted != name {
                    pairs.append((key, value))
                    continue
                }
                let child = path.isEmpty ? name : "\(path).\(name)"
                pairs.append((key, try apply(to: value, at: rest, path: child, environment: environment)))
            }
            return .mapping(Node.Mapping(pairs, mapping.tag, mapping.style, mapping.mark))
        case (.anyItem, .sequence(let sequence)):
            var items: [Node] = []
            for (index, item) in sequence.enumerated() {
                items.append(try apply(to: item, at: rest, path: "\(path)[\(index)]", environment: environment))
            }
            return .sequence(Node.Sequence(items, sequence.tag, sequence.style, sequence.mark))
        default:
            return node  // another shape: the decoder says what it expected
        }
    }

    private func substitute(_ text: String, path: String, environment: [String: String]) throws(GatewayError)
        -> String
    {
        switch form {
        case .wholeValue, .wholeValueOfVariable:
            guard text.hasPrefix("${"), text.hasSuffix("}"), text.count > 3 else { return text }
            let name = String(text.dropFirst(2).dropLast())
            if let value = environment[name] { return value }
            let message = "names ${\(name)}, which is not set in the gateway's environment"
            if case .wholeValueOfVariable = form, let dot = path.lastIndex(of: ".") {
                let mapping = String(path[..<dot])
                throw .configuration(
                    mapping, "\(path[path.index(after: dot)...]) \(message)",
                    function: ConfigurationPath.function(mapping))
            }
            throw .configuration(path, message, function: ConfigurationPath.function(path))
        case .anywhere(let percentEncoded):
            var result = ""
            var rest = Substring(text)
            while let open = rest.range(of: "${") {
                result += rest[..<open.lowerBound]
                guard let close = rest[open.upperBound...].firstIndex(of: "}") else {
                    throw .configuration(path, "unterminated ${ in the value")
                }
                let name = String(rest[open.upperBound..<close])
                guard let value = environment[name] else {
                    throw .configuration(path, "names ${\(name)}, which is not set in the gateway's environment")
                }
                result +=
                    percentEncoded
                    ? value.addingPercentEncoding(withAllowedCharacters: .urlPasswordAllowed) ?? value : value
                rest = rest[rest.index(after: close)...]
            }
            return result + rest
        }
    }
}

/// Coding paths written as the file's fields: `functions.echo.timeout`, `sources.sqs[0].queueUrl`.
enum ConfigurationPath {
    static func dotted(_ codingPath: [any CodingKey]) -> String {
        var path = ""
        for key in codingPath {
            if let index = key.intValue {
                path += "[\(index)]"
            } else {
                path += path.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return path.isEmpty ? "(top level)" : path
    }

    /// The function a path is about (`functions.<name>…`), for `GatewayError.function`.
    static func function(_ path: String) -> String? {
        guard path.hasPrefix("functions.") else { return nil }
        return path.dropFirst("functions.".count).split(separator: ".", maxSplits: 1).first.map(String.init)
    }
}

/// Any key of a mapping, in the file's order.
public struct ConfigurationKey: CodingKey, Sendable {
    public var stringValue: String
    public var intValue: Int? { nil }
    public init(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}

/// A value's shape, and a scalar's text as written. Leaf values are read as text and parsed by each section
/// rather than by Yams' YAML 1.1 constructors, which would read `010` as octal 8 and `yes` or `on` as true,
/// refuse a quoted number, and could not name the value they refused; the file's forms and messages stay those
/// it has always had.
public enum ConfigurationValue: Decodable, Sendable, CustomStringConvertible {
    case scalar(String)
    case list
    case mapping

    public init(from decoder: any Decoder) throws {
        if let text = try? decoder.singleValueContainer().decode(String.self) {
            self = .scalar(text)
        } else if (try? decoder.unkeyedContainer()) != nil {
            self = .list
        } else {
            self = .mapping
        }
    }

    /// The scalar's text, nil for a list or a mapping.
    public var text: String? {
        if case .scalar(let text) = self { return text }
        return nil
    }

    /// Absent in effect: an empty value, `~` or `null`.
    public var isNull: Bool {
        guard let text else { return false }
        return text.isEmpty || text == "~" || text == "null"
    }

    /// `'value'`, `a list`, `a mapping`: what errors say was found.
    public var description: String {
        switch self {
        case .scalar(let text): "'\(text)'"
        case .list: "a list"
        case .mapping: "a mapping"
        }
    }
}

extension Decoder {
    /// The field being decoded, dotted (`functions.echo.retry`; `(top level)` for the file).
    public var configurationPath: String { ConfigurationPath.dotted(codingPath) }

    /// The base directory and environment the file is read with.
    public var configurationContext: ConfigurationContext {
        userInfo[ConfigurationContext.key] as? ConfigurationContext
            ?? ConfigurationContext(baseDirectory: FileManager.default.currentDirectoryPath, environment: [:])
    }

    /// The mapping being decoded (its keys in the file's order), or `notAMapping` as this field's error.
    public func configurationFields(notAMapping: String, function: String? = nil) throws -> ConfigurationFields {
        do {
            return ConfigurationFields(
                container: try container(keyedBy: ConfigurationKey.self), path: configurationPath, function: function)
        } catch is DecodingError {
            throw GatewayError.configuration(configurationPath, notAMapping, function: function)
        }
    }

    /// The list being decoded, each item's decoder in turn (its path ends in `[index]`), or `notAList` as this
    /// field's error.
    public func configurationItems(notAList: String) throws -> [any Decoder] {
        var container: any UnkeyedDecodingContainer
        do {
            container = try unkeyedContainer()
        } catch is DecodingError {
            throw GatewayError.configuration(configurationPath, notAList)
        }
        var items: [any Decoder] = []
        while !container.isAtEnd { items.append(try container.superDecoder()) }
        return items
    }
}

/// A mapping of the file, read field by field in the file's order.
public struct ConfigurationFields {
    let container: KeyedDecodingContainer<ConfigurationKey>
    /// The mapping's dotted path.
    public let path: String
    /// The function the mapping belongs to, carried by errors.
    public let function: String?

    /// The keys, in the file's order.
    public var keys: [String] { container.allKeys.map(\.stringValue) }

    /// `path.key`.
    public func path(of key: String) -> String { path == "(top level)" ? key : "\(path).\(key)" }

    /// An error about `key`'s value.
    public func error(_ key: String, _ message: String) -> GatewayError {
        .configuration(path(of: key), message, function: function)
    }

    /// The shape (and text) of `key`'s value.
    public func value(_ key: String) throws -> ConfigurationValue {
        try container.decode(ConfigurationValue.self, forKey: ConfigurationKey(stringValue: key))
    }

    /// `key`'s scalar text; nil for a list or a mapping.
    public func text(_ key: String) throws -> String? { try value(key).text }

    /// The decoder of `key`'s value, for a nested section.
    public func decoder(_ key: String) throws -> any Decoder {
        try container.superDecoder(forKey: ConfigurationKey(stringValue: key))
    }

    /// `key`'s value decoded as `T`.
    public func decode<T: Decodable>(_ type: T.Type, _ key: String) throws -> T {
        try container.decode(type, forKey: ConfigurationKey(stringValue: key))
    }
}
