import Foundation

// The shared PostgreSQL queue's settings and errors are values with no driver behind them, so that whatever
// reads a configuration (the gateway's, checking `queue.postgres`) can parse and check them without linking
// PostgresNIO; `PostgresInvocationQueue` is the queue itself.

/// Where the shared queue lives, parsed from a `postgres://user:password@host:port/database?sslmode=…` URL.
public struct PostgresQueueConfiguration: Sendable, Hashable {
    public enum TLSMode: String, Sendable, Hashable {
        case disable, prefer, require
    }

    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String
    public var tls: TLSMode
    /// How long a claim lasts without renewal: a gateway that dies loses its attempts to another after this.
    public var leaseDuration: Duration
    /// Connections this gateway may open. Default 8.
    public var maxConnections: Int
    /// This gateway in `lease_owner` (unique per process).
    public var owner: String

    public init(
        host: String, port: Int = 5432, user: String, password: String? = nil, database: String,
        tls: TLSMode = .prefer, leaseDuration: Duration = .seconds(10), maxConnections: Int = 8,
        owner: String = PostgresQueueConfiguration.defaultOwner()
    ) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.tls = tls
        self.leaseDuration = leaseDuration
        self.maxConnections = maxConnections
        self.owner = owner
    }

    /// `<host name>/<pid>/<random>`: unique per gateway process, readable in the operator view.
    public static func defaultOwner() -> String {
        "\(ProcessInfo.processInfo.hostName)/\(getpid())/\(UInt32.random(in: 0...UInt32.max))"
    }

    /// Parses `postgres://` (or `postgresql://`) URLs; `sslmode` is `disable`, `prefer` (default) or `require`
    /// (`verify-full` is taken as `require`: certificates are always verified).
    public init(url: String) throws(PostgresQueueError) {
        guard let components = URLComponents(string: url), let scheme = components.scheme,
            scheme == "postgres" || scheme == "postgresql"
        else {
            throw PostgresQueueError(
                .invalidURL, "expected postgres://user:password@host:port/database, got '\(Self.redacted(url))'")
        }
        guard let host = components.host, !host.isEmpty else {
            throw PostgresQueueError(.invalidURL, "the URL names no host: '\(Self.redacted(url))'")
        }
        guard let user = components.user, !user.isEmpty else {
            throw PostgresQueueError(.invalidURL, "the URL names no user: '\(Self.redacted(url))'")
        }
        let database = String(components.path.drop { $0 == "/" })
        var tls = TLSMode.prefer
        for item in components.queryItems ?? [] {
            switch (item.name, item.value ?? "") {
            case ("sslmode", "disable"): tls = .disable
            case ("sslmode", "prefer"), ("sslmode", "allow"): tls = .prefer
            case ("sslmode", "require"), ("sslmode", "verify-ca"), ("sslmode", "verify-full"): tls = .require
            case ("sslmode", let other):
                throw PostgresQueueError(
                    .invalidURL, "unknown sslmode '\(other)' (expected disable, prefer or require)")
            default:
                throw PostgresQueueError(.invalidURL, "unknown URL parameter '\(item.name)' (expected sslmode)")
            }
        }
        self.init(
            host: host, port: components.port ?? 5432, user: user.removingPercentEncoding ?? user,
            password: components.password.map { $0.removingPercentEncoding ?? $0 },
            database: database.isEmpty ? user : database, tls: tls)
    }

    /// The URL with its password masked, for messages.
    public static func redacted(_ url: String) -> String {
        guard var components = URLComponents(string: url), components.password != nil else { return url }
        components.password = "***"
        return components.string ?? "(unreadable URL)"
    }
}

/// A failure of the PostgreSQL queue, with a code.
public struct PostgresQueueError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        case invalidURL = "InvalidURL"
        case unavailable = "QueueUnavailable"
        case schema = "SchemaMismatch"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
