import Foundation
import Gateway
import SigV4

/// One bucket the gateway lists periodically for new and changed objects (`sources.poll[i]` in the gateway
/// file), for stores whose notifications cannot be used (Garage: none; RustFS: reported not to fire; any store a
/// user brings). Each new or changed object (by key and ETag) becomes the S3 event record a notification would
/// have carried, and goes through the same trigger rules, dedupe keys and durable queue as the webhook's.
public struct PollSourceConfiguration: Sendable, Hashable {
    /// Where the objects are seen on the first scan of a bucket that already holds objects.
    public enum StartFrom: String, Sendable, Hashable {
        /// Every object present at the first scan is an event (nothing uploaded before the gateway is missed).
        case beginning
        /// Objects present at the first scan are recorded as seen without events; only later ones trigger.
        case now
    }

    /// The S3 endpoint (`http://127.0.0.1:3900`, `https://s3.eu-west-1.amazonaws.com`).
    public var endpoint: URL
    public var bucket: String
    /// Only keys under this prefix are listed (and tracked). Default: the whole bucket.
    public var prefix: String
    /// Time between the end of one scan and the start of the next. Default 5 s.
    public var interval: Duration
    /// Never logged.
    public var credentials: Credentials
    /// Region of the SigV4 scope. Default: the gateway's `region`.
    public var region: String
    /// Path-style requests (`http://host/bucket`) unless false (virtual-hosted style). Default true: what
    /// self-hosted stores need.
    public var pathStyle: Bool
    /// Default `beginning`.
    public var startFrom: StartFrom

    public static let defaultInterval: Duration = .seconds(5)

    public init(
        endpoint: URL, bucket: String, prefix: String = "",
        interval: Duration = PollSourceConfiguration.defaultInterval,
        credentials: Credentials, region: String, pathStyle: Bool = true, startFrom: StartFrom = .beginning
    ) {
        self.endpoint = endpoint
        self.bucket = bucket
        self.prefix = prefix
        self.interval = interval
        self.credentials = credentials
        self.region = region
        self.pathStyle = pathStyle
        self.startFrom = startFrom
    }

    /// What the seen state of this source is filed under: endpoint, bucket and prefix (a source pointed
    /// elsewhere starts afresh rather than reading another bucket's state).
    public var stateID: String {
        var endpoint = endpoint.absoluteString
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        return "\(endpoint)/\(bucket)/\(prefix)"
    }

    /// `bucket` or `bucket/prefix`, for logs and metrics.
    public var name: String { prefix.isEmpty ? bucket : "\(bucket)/\(prefix)" }

    func validate(path: String) throws(GatewayError) {
        guard let scheme = endpoint.scheme?.lowercased(), scheme == "http" || scheme == "https",
            endpoint.host?.isEmpty == false
        else { throw .configuration("\(path).endpoint", "expected an http(s) URL, got '\(endpoint.absoluteString)'") }
        guard Self.isValidBucket(bucket) else {
            throw .configuration("\(path).bucket", "'\(bucket)' is not a bucket name (3-63 of a-z 0-9 . - _)")
        }
        guard interval >= Self.minimumInterval, interval <= Self.maximumInterval else {
            throw .configuration("\(path).interval", "must be between 100ms and 24h")
        }
        guard !region.isEmpty else { throw .configuration("\(path).region", "expected a region name") }
        guard !credentials.accessKeyId.isEmpty, !credentials.secretAccessKey.isEmpty else {
            throw .configuration(path, "credentials must not be empty")
        }
    }

    static let minimumInterval: Duration = .milliseconds(100)
    static let maximumInterval: Duration = .seconds(86_400)

    /// Lenient on purpose (stores differ: Ceph allows upper case and underscores in old buckets); the store
    /// refuses what it does not know.
    static func isValidBucket(_ name: String) -> Bool {
        (3...63).contains(name.utf8.count)
            && name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D
                    || c == 0x2E || c == 0x5F
            }
    }

    /// A duration as the rest of the file writes them — a number of seconds (`5`, `0.5`) — or with a unit:
    /// `500ms`, `5s`, `2m`, `1h`. Nil for anything else.
    static func parseDuration(_ text: String) -> Duration? {
        let text = text.trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        var number = Substring(text)
        var scale = 1.0
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            scale = factor
            break
        }
        guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }), let value = Double(number),
            value.isFinite
        else { return nil }
        return .milliseconds(Int64((value * scale * 1000).rounded()))
    }
}

extension PollSourceConfiguration {
    static let fields = [
        "endpoint", "bucket", "prefix", "interval", "accessKey", "secretKey", "region", "pathStyle", "startFrom",
    ]

    /// `sources.poll[i]`. `${NAME}` anywhere in a value was replaced before decoding
    /// (`EventSourcesConfiguration.substitutions`); credentials default to the gateway's AWS_ACCESS_KEY_ID /
    /// AWS_SECRET_ACCESS_KEY; `defaultRegion` is the gateway's region.
    init(from decoder: any Decoder, defaultRegion: String) throws {
        let environment = decoder.configurationContext.environment
        let path = decoder.configurationPath
        let mapping = try decoder.configurationFields(
            notAMapping: "expected a mapping (endpoint, bucket, prefix, interval, accessKey, …)")
        var values: [String: String] = [:]
        for field in mapping.keys {
            guard Self.fields.contains(field) else {
                throw mapping.error(field, "unknown field (expected \(Self.fields.joined(separator: ", ")))")
            }
            let value = try mapping.value(field)
            guard let text = value.text else { throw mapping.error(field, "expected a value, got \(value)") }
            values[field] = text
        }
        guard let endpointText = values["endpoint"], !endpointText.isEmpty else {
            throw GatewayError.configuration("\(path).endpoint", "is required (the S3 endpoint URL)")
        }
        guard let endpoint = URL(string: endpointText), let scheme = endpoint.scheme?.lowercased(),
            scheme == "http" || scheme == "https", endpoint.host?.isEmpty == false
        else {
            throw GatewayError.configuration("\(path).endpoint", "expected an http(s) URL, got '\(endpointText)'")
        }
        guard let bucket = values["bucket"], !bucket.isEmpty else {
            throw GatewayError.configuration("\(path).bucket", "is required")
        }
        var interval = Self.defaultInterval
        if let text = values["interval"] {
            guard let parsed = Self.parseDuration(text) else {
                throw GatewayError.configuration(
                    "\(path).interval", "expected a duration (5s, 500ms, 2m, or a number of seconds), got '\(text)'")
            }
            interval = parsed
        }
        var pathStyle = true
        if let text = values["pathStyle"] {
            guard let flag = Bool(text) else {
                throw GatewayError.configuration("\(path).pathStyle", "expected true or false")
            }
            pathStyle = flag
        }
        var startFrom = StartFrom.beginning
        if let text = values["startFrom"] {
            guard let parsed = StartFrom(rawValue: text) else {
                throw GatewayError.configuration("\(path).startFrom", "expected beginning or now, got '\(text)'")
            }
            startFrom = parsed
        }
        let accessKey = values["accessKey"] ?? environment["AWS_ACCESS_KEY_ID"]
        let secretKey = values["secretKey"] ?? environment["AWS_SECRET_ACCESS_KEY"]
        guard let accessKey, !accessKey.isEmpty, let secretKey, !secretKey.isEmpty else {
            throw GatewayError.configuration(
                path,
                "no credentials: set accessKey and secretKey (e.g. \"${S3_SECRET_KEY}\"), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the gateway's environment"
            )
        }
        self.init(
            endpoint: endpoint, bucket: bucket, prefix: values["prefix"] ?? "", interval: interval,
            credentials: Credentials(accessKeyId: accessKey, secretAccessKey: secretKey),
            region: values["region"] ?? defaultRegion, pathStyle: pathStyle, startFrom: startFrom)
        try validate(path: path)
    }
}
