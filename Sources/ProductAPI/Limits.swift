import Foundation
import HTTPTypes
import Hummingbird
import Synchronization

/// Per-key token buckets, in this process: `rate` requests a second on average, `burst` at once. A key over
/// its rate gets 429 with `Retry-After`. (Per gateway: several gateways each allow the rate.)
final class RateLimiter: Sendable {
    struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    let rate: Double
    let burst: Double
    private let buckets = Mutex<[String: Bucket]>([:])

    init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = max(1, burst)
    }

    /// nil when a request of `key` may go now (and it is counted); otherwise the seconds until one may.
    func take(_ key: String, now: ContinuousClock.Instant = .now) -> Double? {
        buckets.withLock { buckets in
            var bucket = buckets[key] ?? Bucket(tokens: burst, updated: now)
            let elapsed = now - bucket.updated
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            bucket.tokens = min(burst, bucket.tokens + max(0, seconds) * rate)
            bucket.updated = now
            defer {
                buckets[key] = bucket
                // Keys idle long enough to be full again need no bucket: bound the table.
                if buckets.count > 10_000 {
                    buckets = buckets.filter { now - $0.value.updated < .seconds(burst / rate) }
                }
            }
            guard bucket.tokens >= 1 else { return (1 - bucket.tokens) / rate }
            bucket.tokens -= 1
            return nil
        }
    }
}

/// CORS for the API's routes, for apps on other origins (an hls.js player fetching playlists, a backend
/// console calling the API from a browser): the allowed origins, or `*`.
struct CORSPolicy: Sendable {
    var origins: [String]

    func allowedOrigin(_ request: Request) -> String? {
        guard !origins.isEmpty, let origin = request.headers[.origin] else { return nil }
        if origins.contains("*") { return "*" }
        return origins.contains(origin) ? origin : nil
    }

    /// Adds the CORS headers a response to `request` carries (an error's too).
    func decorate(_ headers: inout HTTPFields, for request: Request) {
        guard let origin = allowedOrigin(request) else { return }
        headers[.accessControlAllowOrigin] = origin
        if origin != "*" { headers[.vary] = "Origin" }
        headers[.accessControlExposeHeaders] = "Location, Retry-After, X-Request-Id"
    }

    /// The answer to a preflight (`OPTIONS`) for a route.
    func preflight(_ request: Request, methods: String) -> Response {
        var response = Response(status: .noContent)
        guard allowedOrigin(request) != nil else { return response }
        decorate(&response.headers, for: request)
        response.headers[.accessControlAllowMethods] = methods
        response.headers[.accessControlAllowHeaders] = "Authorization, Content-Type, Range"
        response.headers[.accessControlMaxAge] = "600"
        return response
    }
}
