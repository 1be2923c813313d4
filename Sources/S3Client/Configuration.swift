import Foundation
import SigV4

extension S3ClientConfiguration {
    /// How S3 requests are addressed.
    public enum Addressing: Sendable, Hashable {
        /// `http://host/bucket/key` — works everywhere, required for most local stores.
        case path
        /// `http://bucket.host/key`. Buckets whose names are not DNS-compatible (dots, upper
        /// case, underscores) fall back to path style.
        case virtualHost
    }
}

/// Retry policy for idempotent requests: connection errors, 5xx, 429 and the S3 throttling codes
/// (`SlowDown`, `RequestTimeout`, `InternalError`, …) are retried with capped exponential
/// backoff and jitter.
public struct S3RetryPolicy: Sendable, Hashable {
    /// Total attempts including the first one. `1` disables retries.
    public var maxAttempts: Int
    /// Delay before the second attempt; doubles each time.
    public var baseDelay: Duration
    /// Upper bound of a single delay.
    public var maxDelay: Duration

    public init(maxAttempts: Int = 3, baseDelay: Duration = .milliseconds(100), maxDelay: Duration = .seconds(5)) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    public static let `default` = S3RetryPolicy()
    public static let none = S3RetryPolicy(maxAttempts: 1)

    /// Delay before attempt `attempt + 1` (attempt is 1-based): "equal jitter", i.e. a
    /// random value in [d/2, d] where d = min(maxDelay, baseDelay·2^(attempt-1)).
    func delay(afterAttempt attempt: Int) -> Duration {
        let exp = min(max(attempt - 1, 0), 30)
        let base = Double(baseDelay.components.seconds) + Double(baseDelay.components.attoseconds) / 1e18
        let cap = Double(maxDelay.components.seconds) + Double(maxDelay.components.attoseconds) / 1e18
        let d = min(cap, base * Double(1 << exp))
        let jittered = d / 2 + Double.random(in: 0...1) * d / 2
        return .nanoseconds(Int64(jittered * 1e9))
    }
}

public struct S3ClientConfiguration: Sendable {
    /// Service endpoint, `http://127.0.0.1:9000` or `https://s3.eu-west-1.amazonaws.com`.
    /// A path component (`http://host/prefix`) is kept as a prefix of every request path.
    public var endpoint: URL
    public var region: String
    public var credentials: Credentials
    public var addressing: Addressing
    /// Files at least this large are uploaded by `uploadFile` as multipart uploads.
    public var multipartThreshold: Int
    /// Multipart part size. Raised to 5 MiB if smaller, and raised further when a file would
    /// need more than 10,000 parts.
    public var partSize: Int
    /// Parts uploaded in parallel by `uploadFile`; memory use is about `partSize` × this.
    public var multipartConcurrency: Int
    /// Deadline of one attempt of a buffered request (everything except streamed downloads).
    public var timeout: Duration
    /// Deadline of a streamed download (`getObjectStream`, `downloadObject`), headers and body.
    public var streamingTimeout: Duration
    public var retry: S3RetryPolicy
    /// Compare the ETag of a single-part upload with the MD5 of the bytes sent, when the
    /// store answers with a plain MD5 ETag (32 hex digits).
    public var verifyUploadETag: Bool

    public init(
        endpoint: URL,
        region: String = "us-east-1",
        credentials: Credentials,
        addressing: Addressing = .path,
        multipartThreshold: Int = 16 * 1024 * 1024,
        partSize: Int = 8 * 1024 * 1024,
        multipartConcurrency: Int = 4,
        timeout: Duration = .seconds(300),
        streamingTimeout: Duration = .seconds(6 * 3600),
        retry: S3RetryPolicy = .default,
        verifyUploadETag: Bool = true
    ) {
        self.endpoint = endpoint
        self.region = region
        self.credentials = credentials
        self.addressing = addressing
        self.multipartThreshold = multipartThreshold
        self.partSize = partSize
        self.multipartConcurrency = multipartConcurrency
        self.timeout = timeout
        self.streamingTimeout = streamingTimeout
        self.retry = retry
        self.verifyUploadETag = verifyUploadETag
    }

    public static let minimumPartSize = 5 * 1024 * 1024
    public static let maximumPartCount = 10_000
}
