import WireFormat

/// An error that chooses how it is reported to the Runtime API. Any other error is reported with its Swift
/// type name as `errorType` and `String(describing:)` as `errorMessage`.
public protocol FunctionError: Error {
    var errorType: String { get }
    var errorMessage: String { get }
}

/// What is posted to `/invocation/{id}/error` and `/init/error`:
/// `{"errorMessage": …, "errorType": …, "stackTrace": []}`.
public struct ErrorReport: Sendable, Equatable {
    public var errorType: String
    public var errorMessage: String

    public init(errorType: String, errorMessage: String) {
        self.errorType = errorType
        self.errorMessage = errorMessage
    }

    public init(_ error: any Error) {
        if let error = error as? any FunctionError {
            self.init(errorType: error.errorType, errorMessage: error.errorMessage)
        } else {
            self.init(errorType: String(describing: type(of: error)), errorMessage: String(describing: error))
        }
    }

    /// The JSON body, written without Foundation.
    public var json: String {
        var out = #"{"errorMessage":"#
        JSONString.append(errorMessage, to: &out)
        out += #","errorType":"#
        JSONString.append(errorType, to: &out)
        out += #","stackTrace":[]}"#
        return out
    }
}

/// Failures of the runtime itself: configuration, the Runtime API's transport or protocol. Compare with the
/// static members (`error == .connectionFailed`): equality looks at the kind only.
public struct RuntimeError: Error, CustomStringConvertible, Equatable {
    private enum Code: Sendable, Equatable {
        case invalidConfiguration, connectionFailed, connectionClosed, unexpectedStatus, protocolViolation
    }

    private let code: Code
    /// A readable explanation, naming what was expected.
    public let message: String
    /// The lower-level error, if any (a NIO channel error, for instance).
    public let underlying: (any Error)?

    private init(_ code: Code, _ message: String, underlying: (any Error)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public static let invalidConfiguration = RuntimeError(.invalidConfiguration, "")
    public static let connectionFailed = RuntimeError(.connectionFailed, "")
    public static let connectionClosed = RuntimeError(.connectionClosed, "")
    public static let unexpectedStatus = RuntimeError(.unexpectedStatus, "")
    public static let protocolViolation = RuntimeError(.protocolViolation, "")

    static func invalidConfiguration(_ message: String) -> RuntimeError {
        RuntimeError(.invalidConfiguration, message)
    }
    static func connectionFailed(_ message: String, underlying: (any Error)?) -> RuntimeError {
        RuntimeError(.connectionFailed, message, underlying: underlying)
    }
    static func connectionClosed(_ message: String, underlying: (any Error)? = nil) -> RuntimeError {
        RuntimeError(.connectionClosed, message, underlying: underlying)
    }
    static func unexpectedStatus(_ message: String) -> RuntimeError {
        RuntimeError(.unexpectedStatus, message)
    }
    static func protocolViolation(_ message: String) -> RuntimeError {
        RuntimeError(.protocolViolation, message)
    }

    public static func == (lhs: RuntimeError, rhs: RuntimeError) -> Bool {
        lhs.code == rhs.code
    }

    public var description: String {
        let kind: String
        switch code {
        case .invalidConfiguration: kind = "invalid configuration"
        case .connectionFailed: kind = "cannot connect to the Runtime API"
        case .connectionClosed: kind = "Runtime API connection lost"
        case .unexpectedStatus: kind = "unexpected Runtime API status"
        case .protocolViolation: kind = "Runtime API protocol violation"
        }
        let cause = underlying.map { " (\($0))" } ?? ""
        return message.isEmpty ? kind + cause : "\(kind): \(message)\(cause)"
    }
}
