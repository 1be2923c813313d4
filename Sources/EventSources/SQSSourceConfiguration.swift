import Foundation
import Gateway
import SQSClient
import SigV4

/// One SQS queue the gateway polls for object-store events (`sources.sqs[i]` in the gateway file): S3 event
/// notifications (2.1, or wrapped in an SNS envelope) become invocations by the same trigger rules and with the
/// same dedupe keys as the webhook's, and each message is deleted once every invocation made from it has
/// finished (succeeded or dead-lettered) — Lambda's SQS event-source semantics.
public struct SQSSourceConfiguration: Sendable, Hashable {
    /// The queue (`https://sqs.eu-west-1.amazonaws.com/123456789012/uploads`).
    public var queueURL: String
    /// Region of the SigV4 scope. Default: the region of an `sqs.<region>.amazonaws.com` queue URL, else the
    /// gateway's `region`.
    public var region: String
    /// Where requests go. Default: the queue URL's scheme and host.
    public var endpoint: URL
    /// Never logged.
    public var credentials: Credentials
    /// ReceiveMessage long-poll wait, 0–20 s. Default 20.
    public var waitTimeSeconds: Int
    /// Seconds a received message stays hidden; extended (ChangeMessageVisibility) every half of it while its
    /// invocations run. 1–43200. Default 30.
    public var visibilityTimeout: Int
    /// Messages held (received, not yet deleted or released) at most. Default 100.
    public var maxInFlight: Int

    public static let defaultWaitTimeSeconds = 20
    public static let defaultVisibilityTimeout = 30
    public static let defaultMaxInFlight = 100

    public init(
        queueURL: String, region: String, endpoint: URL? = nil, credentials: Credentials,
        waitTimeSeconds: Int = SQSSourceConfiguration.defaultWaitTimeSeconds,
        visibilityTimeout: Int = SQSSourceConfiguration.defaultVisibilityTimeout,
        maxInFlight: Int = SQSSourceConfiguration.defaultMaxInFlight
    ) {
        self.queueURL = queueURL
        self.region = region
        self.endpoint = endpoint ?? Self.endpoint(of: queueURL) ?? URL(fileURLWithPath: "/")
        self.credentials = credentials
        self.waitTimeSeconds = waitTimeSeconds
        self.visibilityTimeout = visibilityTimeout
        self.maxInFlight = maxInFlight
    }

    /// The queue's name (the last path component of its URL), for logs and metrics.
    public var queueName: String {
        URLComponents(string: queueURL)?.path.split(separator: "/").last.map(String.init) ?? queueURL
    }

    func validate(path: String) throws(GatewayError) {
        guard Self.endpoint(of: queueURL) != nil else {
            throw .configuration("\(path).queueUrl", "expected an http(s) queue URL, got '\(queueURL)'")
        }
        guard let scheme = endpoint.scheme?.lowercased(), scheme == "http" || scheme == "https",
            endpoint.host?.isEmpty == false
        else { throw .configuration("\(path).endpoint", "expected an http(s) URL, got '\(endpoint.absoluteString)'") }
        guard !region.isEmpty else { throw .configuration("\(path).region", "expected a region name") }
        guard !credentials.accessKeyId.isEmpty, !credentials.secretAccessKey.isEmpty else {
            throw .configuration("\(path)", "credentials must not be empty")
        }
        guard (0...20).contains(waitTimeSeconds) else {
            throw .configuration("\(path).waitTimeSeconds", "must be between 0 and 20")
        }
        guard (1...43_200).contains(visibilityTimeout) else {
            throw .configuration("\(path).visibilityTimeout", "must be between 1 and 43200 seconds")
        }
        guard (1...100_000).contains(maxInFlight) else {
            throw .configuration("\(path).maxInFlight", "must be between 1 and 100000")
        }
    }

    static func endpoint(of queueURL: String) -> URL? { SQSClientConfiguration.endpoint(forQueueURL: queueURL) }

    /// `eu-west-1` of `sqs.eu-west-1.amazonaws.com` (and `.amazonaws.com.cn`); nil for other hosts.
    static func awsRegion(of queueURL: String) -> String? {
        guard let host = URLComponents(string: queueURL)?.host?.lowercased() else { return nil }
        let labels = host.split(separator: ".")
        guard labels.count >= 4, labels[0] == "sqs", labels[2] == "amazonaws" else { return nil }
        return String(labels[1])
    }
}

extension SQSSourceConfiguration {
    static let fields = [
        "queueUrl", "region", "endpoint", "accessKeyId", "secretAccessKey", "sessionToken", "waitTimeSeconds",
        "visibilityTimeout", "maxInFlight",
    ]

    /// `sources.sqs[i]`. `${NAME}` values were replaced before decoding (`EventSourcesConfiguration.substitutions`);
    /// credentials default to the gateway's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN;
    /// `defaultRegion` is the gateway's region.
    init(from decoder: any Decoder, defaultRegion: String) throws {
        let environment = decoder.configurationContext.environment
        let path = decoder.configurationPath
        let fields = try decoder.configurationFields(
            notAMapping: "expected a mapping (queueUrl, region, endpoint, credentials, …)")
        var values: [String: String] = [:]
        for field in fields.keys {
            guard Self.fields.contains(field) else {
                throw fields.error(field, "unknown field (expected \(Self.fields.joined(separator: ", ")))")
            }
            let value = try fields.value(field)
            guard let text = value.text else { throw fields.error(field, "expected a value, got \(value)") }
            values[field] = text
        }
        guard let queueURL = values["queueUrl"], !queueURL.isEmpty else {
            throw GatewayError.configuration("\(path).queueUrl", "is required (the queue's URL)")
        }
        guard Self.endpoint(of: queueURL) != nil else {
            throw GatewayError.configuration("\(path).queueUrl", "expected an http(s) queue URL, got '\(queueURL)'")
        }
        var endpointOverride: URL?
        if let text = values["endpoint"] {
            guard let url = URL(string: text), let scheme = url.scheme?.lowercased(),
                scheme == "http" || scheme == "https", url.host?.isEmpty == false
            else { throw GatewayError.configuration("\(path).endpoint", "expected an http(s) URL, got '\(text)'") }
            endpointOverride = url
        }
        func integer(_ field: String, _ range: ClosedRange<Int>, default value: Int) throws(GatewayError) -> Int {
            guard let text = values[field] else { return value }
            guard let n = Int(text), range.contains(n) else {
                throw .configuration(
                    "\(path).\(field)",
                    "expected an integer between \(range.lowerBound) and \(range.upperBound), got '\(text)'")
            }
            return n
        }
        let accessKey = values["accessKeyId"] ?? environment["AWS_ACCESS_KEY_ID"]
        let secretKey = values["secretAccessKey"] ?? environment["AWS_SECRET_ACCESS_KEY"]
        guard let accessKey, !accessKey.isEmpty, let secretKey, !secretKey.isEmpty else {
            throw GatewayError.configuration(
                path,
                "no credentials: set accessKeyId and secretAccessKey (e.g. \"${AWS_ACCESS_KEY_ID}\"), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the gateway's environment"
            )
        }
        let sessionToken =
            values["sessionToken"] ?? (values["accessKeyId"] == nil ? environment["AWS_SESSION_TOKEN"] : nil)
        let region = values["region"] ?? Self.awsRegion(of: queueURL) ?? defaultRegion
        self.init(
            queueURL: queueURL, region: region, endpoint: endpointOverride,
            credentials: Credentials(
                accessKeyId: accessKey, secretAccessKey: secretKey,
                sessionToken: sessionToken.flatMap { $0.isEmpty ? nil : $0 }),
            waitTimeSeconds: try integer("waitTimeSeconds", 0...20, default: Self.defaultWaitTimeSeconds),
            visibilityTimeout: try integer("visibilityTimeout", 1...43_200, default: Self.defaultVisibilityTimeout),
            maxInFlight: try integer("maxInFlight", 1...100_000, default: Self.defaultMaxInFlight))
        try validate(path: path)
    }
}
