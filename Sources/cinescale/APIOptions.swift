import APIKeys
import ArgumentParser
import Foundation
import Logging
import ProductAPI
import S3Client
import SigV4
import VideoContract

/// The product API's options, shared by `cinescale dev` (always on) and `cinescale gateway` (on when
/// `--api-store` names the S3 endpoint the API reads: MinIO, Ceph RGW, AWS S3 or the embedded store).
struct APIOptions: ParsableArguments {
    @Option(
        help:
            "Seconds the signed URLs handed to viewers stay valid (renditions, thumbnails, playlists; HLS segments also get twice the video's duration)."
    )
    var streamExpiry: Int = 900

    @Option(help: "Seconds a presigned upload URL stays valid.")
    var uploadExpiry: Int = 3600

    @Option(help: "Largest upload accepted, bytes.")
    var maxUploadBytes: Int64 = 20 << 30

    @Option(
        help:
            "Uploads larger than this (bytes) get a resumable session (multipart, presigned part URLs) instead of one PUT."
    )
    var resumableThreshold: Int64 = 64 << 20

    @Option(help: "Smallest part of a resumable upload, bytes (raised to fit a file in 10 000 parts); 5 MiB to 5 GiB.")
    var resumablePartSize: Int64 = 8 << 20

    @Option(help: "Seconds a resumable upload session lives; then its stored parts are aborted.")
    var uploadSessionExpiry: Int = 86_400

    @Option(help: "Bucket uploads go to (the probe's trigger bucket).")
    var ingestBucket: String = "ingest"

    @Option(help: "Bucket the functions write to.")
    var mediaBucket: String = "media"

    @Option(help: "Requests a second each API key may make on average (0: no limit); over it: 429 with Retry-After.")
    var apiRateLimit: Double = 50

    @Option(help: "Requests an API key may make at once (the rate limit's burst).")
    var apiRateBurst: Double = 100

    @Option(
        help:
            "An origin whose pages may call the API and fetch its playlists from a browser (CORS); repeat it; * for any."
    )
    var apiCorsOrigin: [String] = []

    @Flag(
        help:
            "Let webhook URLs resolve to loopback, link-local or private addresses (off: a tenant cannot make the gateway call internal services)."
    )
    var webhooksMayReachPrivateAddresses = false

    @Option(
        help:
            "Playback policy of a video whose upload chooses none: public, or signed (a playback token on every stream route)."
    )
    var defaultPlaybackPolicy: String = "public"

    func validate() throws {
        guard (1...604_800).contains(streamExpiry), (1...604_800).contains(uploadExpiry) else {
            throw ValidationError("--stream-expiry and --upload-expiry must be 1...604800 seconds")
        }
        guard maxUploadBytes > 0 else { throw ValidationError("--max-upload-bytes must be positive") }
        guard resumableThreshold >= 0, ((5 << 20)...(5 << 30)).contains(resumablePartSize) else {
            throw ValidationError("--resumable-threshold must be 0 or more and --resumable-part-size 5 MiB to 5 GiB")
        }
        guard (1...30 * 86_400).contains(uploadSessionExpiry) else {
            throw ValidationError("--upload-session-expiry must be 1 s to 30 days")
        }
        guard apiRateLimit >= 0, apiRateBurst >= 1 else {
            throw ValidationError("--api-rate-limit must be 0 or more and --api-rate-burst 1 or more")
        }
        guard PlaybackPolicy(rawValue: defaultPlaybackPolicy) != nil else {
            throw ValidationError("--default-playback-policy is public or signed")
        }
    }

    /// The API over `store` (read and written by the API) presigning for `publicStore` (as clients reach it).
    /// The API signs its own stream URLs with a key derived from `signingSecret` (default: the store secret).
    func makeAPI(
        store: String, publicStore: String, region: String, credentials: Credentials,
        keys: any APIKeyStore & PlaybackKeyStore & WebhookStore, signingSecret: String? = nil, logger: Logger
    ) throws -> ProductAPI {
        guard let storeURL = URL(string: store), let publicURL = URL(string: publicStore) else {
            throw ValidationError("the API's store URLs must be URLs: \(store), \(publicStore)")
        }
        let s3 = S3Client(
            configuration: S3ClientConfiguration(endpoint: storeURL, region: region, credentials: credentials))
        let presigner = S3Client(
            configuration: S3ClientConfiguration(endpoint: publicURL, region: region, credentials: credentials))
        return ProductAPI(
            configuration: ProductConfiguration(
                ingestBucket: ingestBucket, mediaBucket: mediaBucket, maxUploadBytes: maxUploadBytes,
                uploadExpiry: uploadExpiry, resumableThreshold: resumableThreshold,
                resumablePartSize: resumablePartSize,
                resumableExpiry: uploadSessionExpiry, streamExpiry: streamExpiry,
                signingSecret: Array((signingSecret ?? credentials.secretAccessKey).utf8),
                defaultPlaybackPolicy: PlaybackPolicy(rawValue: defaultPlaybackPolicy) ?? .public,
                rateLimit: apiRateLimit > 0 ? apiRateLimit : nil, rateBurst: apiRateBurst, corsOrigins: apiCorsOrigin,
                webhooksMayReachPrivateAddresses: webhooksMayReachPrivateAddresses),
            s3: s3, presigner: presigner, keys: keys, logger: logger)
    }
}
