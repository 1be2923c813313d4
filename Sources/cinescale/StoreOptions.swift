import ArgumentParser
import Foundation
import Logging
import S3Server
import SigV4

/// Credentials and addressing shared by every subcommand that talks to or serves the store.
/// Flags win over environment variables; both are read once, here.
struct CredentialOptions: ParsableArguments {
    @Option(help: "Access key id (env CINESCALE_ACCESS_KEY).")
    var accessKey: String?

    @Option(help: "Secret access key (env CINESCALE_SECRET_KEY).")
    var secretKey: String?

    @Option(help: "Region named in SigV4 credential scopes (env CINESCALE_REGION).")
    var region: String?

    static let defaultAccessKey = "cinescale"
    static let defaultSecretKey = "cinescale-dev-secret"

    func credentials(environment: [String: String] = ProcessInfo.processInfo.environment) -> Credentials {
        Credentials(
            accessKeyId: accessKey ?? environment["CINESCALE_ACCESS_KEY"] ?? Self.defaultAccessKey,
            secretAccessKey: secretKey ?? environment["CINESCALE_SECRET_KEY"] ?? Self.defaultSecretKey)
    }

    func resolvedRegion(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        region ?? environment["CINESCALE_REGION"] ?? "us-east-1"
    }
}

/// Logging and start-up reporting shared by the long-running subcommands.
struct ProcessOptions: ParsableArguments {
    @Option(help: "Write the bound port to this file once listening (for scripts using --port 0).")
    var portFile: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func makeLogger(label: String) -> Logger {
        var logger = Logger(label: label)
        logger.logLevel = Logger.Level(rawValue: logLevel) ?? .info
        return logger
    }

    /// Writes the bound port to `--port-file`, if one was given.
    static func announce(port: Int, to portFile: String?) throws {
        if let portFile { try String(port).write(toFile: portFile, atomically: true, encoding: .utf8) }
    }
}
