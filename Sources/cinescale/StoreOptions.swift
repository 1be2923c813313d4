import ArgumentParser
import Foundation
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
