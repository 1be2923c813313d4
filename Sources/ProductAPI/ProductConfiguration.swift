import Foundation
import VideoContract

/// The product API's settings, read once at start-up.
public struct ProductConfiguration: Sendable {
    /// Where uploads go (the probe's trigger bucket) and under which prefix.
    public var ingestBucket: String
    public var uploadPrefix: String
    /// Where the functions write metadata, status, renditions and thumbnails.
    public var mediaBucket: String
    /// Largest upload `POST /uploads` hands out a URL for, bytes.
    public var maxUploadBytes: Int64
    /// Lifetime of a presigned upload URL, seconds (one PUT's, and each batch of part URLs').
    public var uploadExpiry: Int
    /// Uploads larger than this many bytes get a resumable session (multipart, part by part) instead of one PUT.
    public var resumableThreshold: Int64
    /// The smallest part of a resumable upload, bytes (raised to fit a file in 10 000 parts); 5 MiB–5 GiB.
    public var resumablePartSize: Int64
    /// How long a resumable upload session lives, seconds: after it, its stored parts are aborted.
    public var resumableExpiry: Int
    /// Lifetime of the signed URLs handed to viewers (renditions, thumbnails, playlists), seconds. Segment
    /// URLs in an HLS playlist live at least the video's duration longer, so playback never outlives them.
    public var streamExpiry: Int
    /// Key for the API's own signed stream URLs (media playlists).
    public var signingSecret: [UInt8]
    /// How long a request for a segment not encoded yet (a chunked video that is playable, not ready) is held
    /// before it is answered 503 with Retry-After, seconds.
    public var segmentHoldSeconds: Int
    /// The playback policy of a video whose upload does not choose one (and of videos put into the bucket
    /// without `POST /uploads`).
    public var defaultPlaybackPolicy: PlaybackPolicy
    /// Requests a second each API key may make on average (nil: no limit), and at once.
    public var rateLimit: Double?
    public var rateBurst: Double
    /// Origins whose pages may call the API and fetch its playlists from a browser (CORS); `*` for any.
    public var corsOrigins: [String]
    /// Whether webhook URLs may resolve to loopback, link-local or private addresses (tests, a private network);
    /// off by default, so a tenant cannot make the gateway call internal services.
    public var webhooksMayReachPrivateAddresses: Bool

    public init(
        ingestBucket: String = "ingest", uploadPrefix: String = "uploads/", mediaBucket: String = "media",
        maxUploadBytes: Int64 = 20 << 30, uploadExpiry: Int = 3600,
        resumableThreshold: Int64 = 64 << 20, resumablePartSize: Int64 = 8 << 20, resumableExpiry: Int = 86_400,
        streamExpiry: Int = 900, signingSecret: [UInt8],
        segmentHoldSeconds: Int = 60, defaultPlaybackPolicy: PlaybackPolicy = .public, rateLimit: Double? = nil,
        rateBurst: Double = 100, corsOrigins: [String] = [], webhooksMayReachPrivateAddresses: Bool = false
    ) {
        self.webhooksMayReachPrivateAddresses = webhooksMayReachPrivateAddresses
        self.rateLimit = rateLimit
        self.rateBurst = rateBurst
        self.corsOrigins = corsOrigins
        self.defaultPlaybackPolicy = defaultPlaybackPolicy
        self.segmentHoldSeconds = segmentHoldSeconds
        self.ingestBucket = ingestBucket
        self.uploadPrefix = uploadPrefix
        self.mediaBucket = mediaBucket
        self.maxUploadBytes = maxUploadBytes
        self.uploadExpiry = uploadExpiry
        self.resumableThreshold = resumableThreshold
        self.resumablePartSize = resumablePartSize
        self.resumableExpiry = resumableExpiry
        self.streamExpiry = streamExpiry
        self.signingSecret = signingSecret
    }
}
