import Foundation
import Synchronization
import NIOCore
import S3Client
import SigV4

/// What the media functions read from their environment, once at start-up — the Lambda variables first, so
/// the same binaries run unchanged on AWS Lambda:
///   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION
///   CINESCALE_S3_ENDPOINT or AWS_ENDPOINT_URL_S3   the S3 endpoint (default: AWS S3 in AWS_REGION)
///   MEDIA_BUCKET                                   where outputs go (default: media)
public struct MediaFunctionEnvironment: Sendable {
    public var s3: S3ClientConfiguration
    public var mediaBucket: String
    public var variables: [String: String]

    public init(_ environment: [String: String] = ProcessInfo.processInfo.environment) throws(MediaFunctionConfigurationError) {
        let region = environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? "us-east-1"
        guard let accessKey = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"] else {
            throw MediaFunctionConfigurationError(message: "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set")
        }
        let endpointText = environment["CINESCALE_S3_ENDPOINT"] ?? environment["AWS_ENDPOINT_URL_S3"]
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

/// Video ids and the keys of their outputs in the media bucket.
public enum VideoKeys {
    /// The id of an uploaded object: its file name without the extension (`uploads/7f3a.mp4` → `7f3a`).
    public static func videoID(forUpload key: String) -> String {
        let name = key.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? key
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return name }
        return String(name[..<dot])
    }

    public static func metadata(_ id: String) -> String { "\(id)/metadata.json" }
    public static func status(_ id: String) -> String { "\(id)/status.json" }
    public static func mp4(_ id: String, rung: String) -> String { "\(id)/mp4/\(rung).mp4" }
    /// The HLS tree: `<id>/hls/master.m3u8`, `<id>/hls/<rung>/index.m3u8`, `init.mp4`, `seg-NNNNN.m4s`.
    public static func hls(_ id: String) -> String { "\(id)/hls/" }
    public static func hlsMaster(_ id: String) -> String { "\(id)/hls/master.m3u8" }
    public static func hlsPlaylist(_ id: String, rung: String) -> String { "\(id)/hls/\(rung)/index.m3u8" }
    /// A caption track's WebVTT file (its playlist is `hlsPlaylist(id, rung: name)`).
    public static func captionVTT(_ id: String, name: String) -> String { "\(id)/hls/\(name)/captions.vtt" }
    /// The audio-only download: the ladder's audio track as a progressive M4A.
    public static func audioDownload(_ id: String) -> String { "\(id)/mp4/audio.m4a" }

    /// The video id of a `<id>/metadata.json` key.
    public static func videoID(forMetadata key: String) -> String? {
        guard key.hasSuffix("/metadata.json") else { return nil }
        let id = String(key.dropLast("/metadata.json".count))
        return id.isEmpty ? nil : id
    }
}

extension S3Client {
    /// Writes `value` as pretty, key-sorted JSON.
    public func putJSON(_ value: some Encodable, bucket: String, key: String) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        _ = try await putObject(
            bucket: bucket, key: key, body: ByteBuffer(bytes: try encoder.encode(value)), contentType: "application/json")
    }

    /// Reads a JSON object.
    public func getJSON<T: Decodable>(_ type: T.Type, bucket: String, key: String) async throws -> T {
        let output = try await getObject(bucket: bucket, key: key)
        return try JSONDecoder().decode(T.self, from: Data(output.body.readableBytesView))
    }
}

/// The object an upload came from.
public struct SourceObject: Codable, Sendable, Hashable {
    public var bucket: String
    public var key: String
    public var eTag: String?
    public var size: Int64?

    public init(bucket: String, key: String, eTag: String? = nil, size: Int64? = nil) {
        self.bucket = bucket
        self.key = key
        self.eTag = eTag
        self.size = size
    }
}

/// `<video-id>/status.json`: where a video is in the pipeline, written by the probe (refusals) and the
/// transcoder (progress, outputs, failures); what the product API reads.
public struct VideoStatus: Codable, Sendable {
    public struct Failure: Codable, Sendable, Hashable {
        public var code: String
        public var message: String

        public init(code: String, message: String) {
            self.code = code
            self.message = message
        }
    }

    public struct Rendition: Codable, Sendable, Hashable {
        public var name: String
        public var width: Int
        public var height: Int
        public var bitRate: Int
        public var size: Int64
        /// The progressive MP4.
        public var key: String
        /// The HLS media playlist of the same encode, and its peak segment bit rate and codecs.
        public var playlist: String?
        public var bandwidth: Int?
        public var codecs: String?

        public init(
            name: String, width: Int, height: Int, bitRate: Int, size: Int64, key: String, playlist: String? = nil,
            bandwidth: Int? = nil, codecs: String? = nil
        ) {
            self.name = name
            self.width = width
            self.height = height
            self.bitRate = bitRate
            self.size = size
            self.key = key
            self.playlist = playlist
            self.bandwidth = bandwidth
            self.codecs = codecs
        }
    }

    public struct Poster: Codable, Sendable, Hashable {
        public var key: String
        public var time: Double
        public var width: Int
        public var height: Int

        public init(key: String, time: Double, width: Int, height: Int) {
            self.key = key
            self.time = time
            self.width = width
            self.height = height
        }
    }

    public struct Sprite: Codable, Sendable, Hashable {
        public var key: String
        public var interval: Double
        public var columns: Int
        public var rows: Int
        public var count: Int
        public var tileWidth: Int
        public var tileHeight: Int

        public init(key: String, interval: Double, columns: Int, rows: Int, count: Int, tileWidth: Int, tileHeight: Int) {
            self.key = key
            self.interval = interval
            self.columns = columns
            self.rows = rows
            self.count = count
            self.tileWidth = tileWidth
            self.tileHeight = tileHeight
        }
    }

    /// A caption track: a WebVTT rendition of the HLS tree (from a subtitle stream of the source, or a caption
    /// file added later through the API).
    public struct Caption: Codable, Sendable, Hashable {
        /// The rendition's directory under `hls/` (`subs-1`), unique within the video.
        public var name: String
        public var language: String?
        public var label: String
        /// The WebVTT file and its one-segment media playlist.
        public var key: String
        public var playlist: String
        /// `source` (a subtitle stream of the upload) or `upload` (added through the API).
        public var origin: String

        public init(name: String, language: String?, label: String, key: String, playlist: String, origin: String) {
            self.name = name
            self.language = language
            self.label = label
            self.key = key
            self.playlist = playlist
            self.origin = origin
        }
    }

    public struct Thumbnails: Codable, Sendable, Hashable {
        public var posters: [Poster]
        public var sprite: Sprite?

        public init(posters: [Poster] = [], sprite: Sprite? = nil) {
            self.posters = posters
            self.sprite = sprite
        }
    }

    public var videoId: String
    /// `transcoding`, `ready` or `failed`.
    public var state: String
    public var percent: Int?
    /// Where it failed: `probe` or `transcode`.
    public var stage: String?
    public var error: Failure?
    public var source: SourceObject?
    public var renditions: [Rendition]?
    /// The HLS master playlist's key.
    public var hls: String?
    public var thumbnails: Thumbnails?
    public var captions: [Caption]?
    /// Every audio track of the source, each a rendition of its own (`hls/audio-N/`), the ladder's first.
    public var audio: [AudioTrack]?
    /// The ladder's audio as a progressive M4A.
    public var audioDownload: String?

    /// One audio rendition.
    public struct AudioTrack: Codable, Sendable, Hashable {
        /// The rendition's directory under `hls/` (`audio-2`: the source's second audio track).
        public var name: String
        public var language: String?
        public var label: String
        /// The track the ladder carries: muxed into the MP4 downloads and the player's default.
        public var isDefault: Bool
        public var channels: Int
        public var sampleRate: Int
        public var codecs: String
        /// The media playlist, and its peak and average segment bit rates.
        public var playlist: String
        public var bandwidth: Int
        public var averageBandwidth: Int

        public init(
            name: String, language: String?, label: String, isDefault: Bool, channels: Int, sampleRate: Int, codecs: String,
            playlist: String, bandwidth: Int, averageBandwidth: Int
        ) {
            self.name = name
            self.language = language
            self.label = label
            self.isDefault = isDefault
            self.channels = channels
            self.sampleRate = sampleRate
            self.codecs = codecs
            self.playlist = playlist
            self.bandwidth = bandwidth
            self.averageBandwidth = averageBandwidth
        }
    }

    public init(
        videoId: String, state: String, percent: Int? = nil, stage: String? = nil, error: Failure? = nil,
        source: SourceObject? = nil, renditions: [Rendition]? = nil, hls: String? = nil, thumbnails: Thumbnails? = nil,
        captions: [Caption]? = nil, audio: [AudioTrack]? = nil, audioDownload: String? = nil
    ) {
        self.captions = captions
        self.audio = audio
        self.audioDownload = audioDownload
        self.hls = hls
        self.videoId = videoId
        self.state = state
        self.percent = percent
        self.stage = stage
        self.error = error
        self.source = source
        self.renditions = renditions
        self.thumbnails = thumbnails
    }
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
