import ArgumentParser
import Foundation
import S3Client
import SigV4

/// `cinescale presign`: prints a SigV4 presigned URL for an object.
struct PresignCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "presign", abstract: "Print a presigned GET or PUT URL for s3://BUCKET/KEY.")

    @Argument(help: "s3://bucket/key")
    var target: String

    @Option(help: "HTTP method the URL allows: GET or PUT.")
    var method: String = "GET"

    @Option(help: "Seconds until the URL expires (1...604800).")
    var expires: Int = 3600

    @Option(help: "S3 endpoint (env CINESCALE_S3_ENDPOINT).")
    var endpoint: String?

    @OptionGroup var credentialOptions: CredentialOptions

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard target.hasPrefix("s3://") else { throw ValidationError("expected s3://bucket/key") }
        let path = target.dropFirst("s3://".count)
        guard let slash = path.firstIndex(of: "/"), path.index(after: slash) < path.endIndex else {
            throw ValidationError("expected s3://bucket/key")
        }
        let endpointString = endpoint ?? environment["CINESCALE_S3_ENDPOINT"] ?? "http://127.0.0.1:9000"
        guard let endpointURL = URL(string: endpointString) else {
            throw ValidationError("invalid endpoint \(endpointString)")
        }
        let client = S3Client(
            configuration: S3ClientConfiguration(
                endpoint: endpointURL, region: credentialOptions.resolvedRegion(environment: environment),
                credentials: credentialOptions.credentials(environment: environment)))
        let url = try client.presignedURL(
            method: method.uppercased(), bucket: String(path[..<slash]), key: String(path[path.index(after: slash)...]),
            expires: expires)
        print(url.absoluteString)
    }
}
