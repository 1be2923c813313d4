import Foundation

/// A webhook endpoint events are POSTed to, like MinIO's `MINIO_NOTIFY_WEBHOOK_ENDPOINT_<ID>`.
public struct WebhookTarget: Sendable, Hashable {
    /// Names the target in ARNs: `arn:minio:sqs::<id>:webhook`.
    public var id: String
    public var endpoint: URL
    /// Sent as `Authorization: Bearer <token>` when set. Never logged.
    public var authToken: String?
    /// Most events per POST. 1 (the default) sends MinIO's body, one event per POST. Above 1, a sender that
    /// finds several events waiting (a backlog, after the target was down or slow) sends up to this many in
    /// one body in AWS's S3 event format, `{"Records":[…]}` with one record per event; a lone event still
    /// goes out in MinIO's body. Only for targets that read every record of a body, as CineScale's gateway
    /// does (MinIO's own webhook consumers expect one).
    public var batchSize: Int

    public init(id: String, endpoint: URL, authToken: String? = nil, batchSize: Int = 1) {
        self.id = id
        self.endpoint = endpoint
        self.authToken = authToken
        self.batchSize = max(1, batchSize)
    }

    public var arn: String { "arn:minio:sqs::\(id):webhook" }

    /// Parses `ID=URL` (the store command's `--notify-webhook`).
    public static func parse(_ text: String, token: String?, batchSize: Int = 1) throws(NotificationError)
        -> WebhookTarget
    {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, !parts[0].isEmpty,
            parts[0].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }),
            let url = URL(string: parts[1]), let scheme = url.scheme?.lowercased(),
            scheme == "http" || scheme == "https",
            url.host != nil
        else {
            throw NotificationError("InvalidArgument", "expected ID=http(s)://host[:port]/path, got '\(text)'")
        }
        return WebhookTarget(id: parts[0], endpoint: url, authToken: token, batchSize: batchSize)
    }
}

/// Event notification settings of the embedded store, read once at start-up.
public struct NotificationSettings: Sendable {
    public var targets: [WebhookTarget]
    /// The durable queue's SQLite file.
    public var queuePath: String
    /// Undelivered events past which uploads to buckets with notification rules get 503 SlowDown.
    /// Default 100 000.
    public var maxQueued: Int
    /// Concurrent POSTs per target. Default 16.
    public var concurrency: Int
    /// Per-POST timeout. Default 10 s.
    public var timeout: Duration
    /// Retry delay after a failed POST: doubles from `retryInitial` up to `retryMax`. Defaults 50 ms, 2 s.
    public var retryInitial: Duration
    public var retryMax: Duration
    /// Region named in event records (`awsRegion`). Default empty, as MinIO.
    public var region: String
    /// `responseElements.x-minio-origin-endpoint`; empty: `http://` + the request's Host.
    public var originEndpoint: String

    public init(
        targets: [WebhookTarget], queuePath: String, maxQueued: Int = 100_000, concurrency: Int = 16,
        timeout: Duration = .seconds(10), retryInitial: Duration = .milliseconds(50), retryMax: Duration = .seconds(2),
        region: String = "", originEndpoint: String = ""
    ) {
        self.targets = targets
        self.queuePath = queuePath
        self.maxQueued = maxQueued
        self.concurrency = concurrency
        self.timeout = timeout
        self.retryInitial = retryInitial
        self.retryMax = retryMax
        self.region = region
        self.originEndpoint = originEndpoint
    }
}

/// Who made the request that caused an event; set by the HTTP layer around store calls.
public struct EventRequestInfo: Sendable {
    public var principalID: String
    public var sourceIP: String
    public var requestID: String
    public var userAgent: String
    public var host: String

    public init(principalID: String, sourceIP: String, requestID: String, userAgent: String, host: String) {
        self.principalID = principalID
        self.sourceIP = sourceIP
        self.requestID = requestID
        self.userAgent = userAgent
        self.host = host
    }

    @TaskLocal public static var current: EventRequestInfo?
}
