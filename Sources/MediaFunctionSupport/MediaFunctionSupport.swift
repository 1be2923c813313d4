import Foundation
import NIOCore
import S3Client
import SigV4

/// What the media functions read from their environment, once at start-up — the Lambda variables first, so
/// the same binaries run unchanged on AWS Lambda:
///   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION
///   CINESCALE_S3_ENDPOINT or AWS_ENDPOINT_URL_S3   the S3 endpoint (default: AWS S3 in AWS_REGION)
///   MEDIA_BUCKET                                   where outputs go (default: media)
public struct MediaFunctionEnvironment: Sendable {
    public var s3: S3ClientConfiguration
    public var mediaBucket: String
    public var variables: [String: String]

    public init(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws(MediaFunctionConfigurationError) {
        let region = environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? "us-east-1"
        guard let accessKey = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"] else {
            throw MediaFunctionConfigurationError(message: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
        }
        let endpointText = environment["CINESCALE_S3_ENDPOINT"] ?? environment["AWS_ENDPOINT_URL_S3"]
            ?? "https://s3.\(region).amazonaws.com"
        guard let endpoint = URL(string: endpointText), endpoint.host != nil else {
            throw MediaFunctionConfigurationError(message: "invalid S3 endpoint '\(endpointText)'")
        }
        s3 = S3ClientConfiguration(
            endpoint: endpoint, region: region,
            credentials: Credentials(
                accessKeyId: accessKey, secretAccessKey: secret, sessionToken: environment["AWS_SESSION_TOKEN"]))
        mediaBucket = environment["MEDIA_BUCKET"] ?? "media"
        variables = environment
    }

    /// A positive number from the environment, or `fallback`.
    public func number(_ name: String, _ fallback: Double) throws(MediaFunctionConfigurationError) -> Double {
        guard let text = variables[name] else { return fallback }
        guard let value = Double(text), value > 0 else {
            throw MediaFunctionConfigurationError(message: "\(name) must be a positive number, got '\(text)'")
        }
        return value
    }
}

public struct MediaFunctionConfigurationError: Error, CustomStringConvertible {
    public var message: String

    public init(message: String) { self.message = message }

    public var description: String { message }
}

/// Video ids and the keys of their outputs in the media bucket.
public enum VideoKeys {
    /// The id of an uploaded object: its file name without the extension (`uploads/7f3a.mp4` → `7f3a`).
    public static func videoID(forUpload key: String) -> String {
        let name = key.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? key
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return name }
        return String(name[..<dot])
    }

    public static func metadata(_ id: String) -> String { "\(id)/metadata.json" }
    public static func status(_ id: String) -> String { "\(id)/status.json" }
    public static func mp4(_ id: String, rung: String) -> String { "\(id)/mp4/\(rung).mp4" }

    /// The video id of a `<id>/metadata.json` key.
    public static func videoID(forMetadata key: String) -> String? {
        guard key.hasSuffix("/metadata.json") else { return nil }
        let id = String(key.dropLast("/metadata.json".count))
        return id.isEmpty ? nil : id
    }
}

extension S3Client {
    /// Writes `value` as pretty, key-sorted JSON.
    public func putJSON(_ value: some Encodable, bucket: String, key: String) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        _ = try await putObject(
            bucket: bucket, key: key, body: ByteBuffer(bytes: try encoder.encode(value)), contentType: "application/json")
    }

    /// Reads a JSON object.
    public func getJSON<T: Decodable>(_ type: T.Type, bucket: String, key: String) async throws -> T {
        let output = try await getObject(bucket: bucket, key: key)
        return try JSONDecoder().decode(T.self, from: Data(output.body.readableBytesView))
    }
}
