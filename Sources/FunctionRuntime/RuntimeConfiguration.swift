import Foundation
import Logging

/// How a function process talks to its Runtime API; read once at start-up by
/// ``RuntimeConfiguration/fromEnvironment(_:)``, nowhere else.
public struct RuntimeConfiguration: Sendable, Equatable {
    /// Host of the Runtime API (`AWS_LAMBDA_RUNTIME_API` is `host:port`).
    public var host: String
    /// Port of the Runtime API.
    public var port: Int
    /// `AWS_LAMBDA_FUNCTION_NAME`; defaults to the executable's name.
    public var functionName: String
    /// `AWS_LAMBDA_FUNCTION_VERSION`; defaults to `$LATEST`.
    public var functionVersion: String
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` in MB; `nil` when unset.
    public var memoryLimitMB: Int?
    /// `LOG_LEVEL` (falling back to `AWS_LAMBDA_LOG_LEVEL`): trace, debug, info, notice, warn(ing), error,
    /// critical/fatal, any case. Defaults to `info`.
    public var logLevel: Logger.Level

    public init(
        host: String, port: Int, functionName: String, functionVersion: String = "$LATEST",
        memoryLimitMB: Int? = nil, logLevel: Logger.Level = .info
    ) {
        self.host = host
        self.port = port
        self.functionName = functionName
        self.functionVersion = functionVersion
        self.memoryLimitMB = memoryLimitMB
        self.logLevel = logLevel
    }

    /// Reads the configuration from `environment` (the process environment by default).
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> RuntimeConfiguration {
        guard let api = environment["AWS_LAMBDA_RUNTIME_API"], !api.isEmpty else {
            throw RuntimeError.invalidConfiguration("AWS_LAMBDA_RUNTIME_API is not set (expected host:port)")
        }
        let (host, port) = try parseHostPort(api)
        let functionName =
            environment["AWS_LAMBDA_FUNCTION_NAME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (CommandLine.arguments.first.map { ($0 as NSString).lastPathComponent } ?? "function")
        let memory = environment["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"].flatMap { Int($0) }
        let levelText = environment["LOG_LEVEL"] ?? environment["AWS_LAMBDA_LOG_LEVEL"]
        var logLevel = Logger.Level.info
        if let levelText, !levelText.isEmpty {
            guard let level = parseLogLevel(levelText) else {
                throw RuntimeError.invalidConfiguration("LOG_LEVEL '\(levelText)' is not a log level")
            }
            logLevel = level
        }
        return RuntimeConfiguration(
            host: host, port: port, functionName: functionName,
            functionVersion: environment["AWS_LAMBDA_FUNCTION_VERSION"] ?? "$LATEST",
            memoryLimitMB: memory, logLevel: logLevel)
    }

    static func parseHostPort(_ text: String) throws -> (String, Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else {
            throw RuntimeError.invalidConfiguration("AWS_LAMBDA_RUNTIME_API '\(text)' is not host:port")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else {
            throw RuntimeError.invalidConfiguration("AWS_LAMBDA_RUNTIME_API '\(text)' has no host")
        }
        return (host, port)
    }

    static func parseLogLevel(_ text: String) -> Logger.Level? {
        switch text.lowercased() {
        case "warn": return .warning
        case "fatal": return .critical
        default: return Logger.Level(rawValue: text.lowercased())
        }
    }
}
