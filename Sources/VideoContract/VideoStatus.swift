import Foundation

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

        public init(key: String, interval: Double, columns: Int, rows: Int, count: Int, tileWidth: Int, tileHeight: Int)
        {
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
            name: String, language: String?, label: String, isDefault: Bool, channels: Int, sampleRate: Int,
            codecs: String,
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
