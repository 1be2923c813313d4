import SigV4

/// Cross-origin rules applied to every bucket, so that a browser page can PUT to a presigned URL and
/// play a signed GET URL.
public struct CORSConfiguration: Sendable, Equatable {
    /// Origins allowed to call the store (`*` allows any origin). Empty disables CORS.
    public var allowedOrigins: [String]
    public var allowedMethods: [String]
    /// Request headers a preflight may ask for (`*` allows any).
    public var allowedHeaders: [String]
    /// Response headers exposed to scripts.
    public var exposedHeaders: [String]
    /// How long a browser may cache a preflight answer, in seconds.
    public var maxAgeSeconds: Int

    public init(
        allowedOrigins: [String] = ["*"],
        allowedMethods: [String] = ["GET", "HEAD", "PUT", "POST", "DELETE"],
        allowedHeaders: [String] = ["*"],
        exposedHeaders: [String] = [
            "ETag", "Content-Length", "Content-Range", "Accept-Ranges", "Content-Type", "Last-Modified",
            "x-amz-request-id", "x-amz-version-id",
        ],
        maxAgeSeconds: Int = 3600
    ) {
        self.allowedOrigins = allowedOrigins
        self.allowedMethods = allowedMethods
        self.allowedHeaders = allowedHeaders
        self.exposedHeaders = exposedHeaders
        self.maxAgeSeconds = maxAgeSeconds
    }

    public static let disabled = CORSConfiguration(allowedOrigins: [])

    func allows(origin: String) -> Bool {
        allowedOrigins.contains("*") || allowedOrigins.contains(origin)
    }
}

/// Settings of the embedded S3 server, read once at start-up.
public struct S3ServerConfiguration: Sendable {
    /// The store's users (``StoreUser``); requests signed with any other key are refused. Built from the
    /// `credentials` given to `init` (each an administrator) unless set.
    public var users: [StoreUser]
    /// Region that SigV4 credential scopes must name.
    public var region: String
    /// Buckets readable by anyone, signed or not (GET/HEAD of objects and listing), whatever their ACLs.
    public var publicReadBuckets: Set<String>
    public var cors: CORSConfiguration
    /// When set (for example `s3.localhost`), `Host: <bucket>.<domain>` selects the bucket (virtual-host style).
    public var virtualHostDomain: String?
    /// Largest body accepted by a single PutObject or UploadPart (S3: 5 GiB).
    public var maxSinglePutSize: Int
    /// How far a request's signing time may be from the server clock.
    public var allowedClockSkewSeconds: Double
    /// Size of each read when streaming an object to a client.
    public var readChunkSize: Int

    public init(
        credentials: [Credentials],
        region: String = "us-east-1",
        publicReadBuckets: Set<String> = [],
        cors: CORSConfiguration = .init(),
        virtualHostDomain: String? = nil,
        maxSinglePutSize: Int = 5 * 1024 * 1024 * 1024,
        allowedClockSkewSeconds: Double = 900,
        readChunkSize: Int = 1 << 20
    ) {
        self.users = credentials.enumerated().map { index, credentials in
            StoreUser.administrator(credentials, name: index == 0 ? "admin" : "admin\(index + 1)")
        }
        self.region = region
        self.publicReadBuckets = publicReadBuckets
        self.cors = cors
        self.virtualHostDomain = virtualHostDomain
        self.maxSinglePutSize = maxSinglePutSize
        self.allowedClockSkewSeconds = allowedClockSkewSeconds
        self.readChunkSize = readChunkSize
    }
}
