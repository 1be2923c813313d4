import Foundation
import NIOCore
import S3Client
import SigV4
import Synchronization

/// What the media functions read from their environment, once at start-up — the Lambda variables first, so
/// the same binaries run unchanged on AWS Lambda:
///   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION
///   CINESCALE_S3_ENDPOINT or AWS_ENDPOINT_URL_S3   the S3 endpoint (default: AWS S3 in AWS_REGION)
///   MEDIA_BUCKET                                   where outputs go (default: media)
public struct MediaFunctionEnvironment: Sendable {
    public var s3: S3ClientConfiguration
    public var mediaBucket: String
    public var variables: [String: String]

    public init(_ environment: [String: String] = ProcessInfo.processInfo.environment)
        throws(MediaFunctionConfigurationError)
    {
        let region = environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? "us-east-1"
        guard let accessKey = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"] else {
            throw MediaFunctionConfigurationError(message: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
        }
        let endpointText =
            environment["CINESCALE_S3_ENDPOINT"] ?? environment["AWS_ENDPOINT_URL_S3"]
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

/// Runs async work from a thread that may block (FFmpeg's read callbacks), waiting for its result.
public enum Blocking {
    public static func run<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let outcome: Result<T, any Error>
            do { outcome = .success(try await work()) } catch { outcome = .failure(error) }
            result.withLock { $0 = outcome }
            done.signal()
        }
        done.wait()
        return try result.withLock { $0! }.get()
    }
}
