import Foundation

/// Who may stream a video: anyone with its (unguessable) id, or only holders of a playback token.
public enum PlaybackPolicy: String, Codable, Sendable, CaseIterable {
    case `public`
    case signed
}

/// Where a video is, from the objects the pipeline wrote; the API keeps no state of its own.
public enum VideoState: String, Codable, Sendable {
    case awaitingUpload = "awaiting-upload"
    case probing
    case transcoding
    case ready
    case failed
}

/// `GET /videos/{id}` answer: written by the product API, read by the CLI (`cinescale upload`, `demo`).
public struct VideoView: Codable, Sendable {
    public var playbackPolicy: PlaybackPolicy = .public
    public var allowedOrigins: [String]?
    public struct Failure: Codable, Sendable {
        public var code: String
        public var message: String
        public var stage: String?

        public init(code: String, message: String, stage: String? = nil) {
            self.code = code
            self.message = message
            self.stage = stage
        }
    }

    public struct Rendition: Codable, Sendable {
        public var name: String
        public var width: Int
        public var height: Int
        public var bitRate: Int
        public var size: Int64
        public var codecs: String?
        /// A signed GET URL of the progressive MP4 (answers Range requests).
        public var url: String
        /// The API path that redirects to a fresh signed URL.
        public var stream: String

        public init(
            name: String, width: Int, height: Int, bitRate: Int, size: Int64, codecs: String? = nil, url: String,
            stream: String
        ) {
            self.name = name
            self.width = width
            self.height = height
            self.bitRate = bitRate
            self.size = size
            self.codecs = codecs
            self.url = url
            self.stream = stream
        }
    }

    public struct Caption: Codable, Sendable {
        /// The subtitle rendition's name (`subs-1`).
        public var name: String
        public var language: String?
        public var label: String
        /// `source` or `upload`.
        public var origin: String
        /// A signed GET URL of the WebVTT file.
        public var url: String
        /// The API path that redirects to a fresh signed URL of it.
        public var stream: String

        public init(
            name: String, language: String? = nil, label: String, origin: String, url: String, stream: String
        ) {
            self.name = name
            self.language = language
            self.label = label
            self.origin = origin
            self.url = url
            self.stream = stream
        }
    }

    public struct Poster: Codable, Sendable {
        public var url: String
        public var time: Double
        public var width: Int
        public var height: Int

        public init(url: String, time: Double, width: Int, height: Int) {
            self.url = url
            self.time = time
            self.width = width
            self.height = height
        }
    }

    public struct Sprite: Codable, Sendable {
        public var url: String
        public var interval: Double
        public var columns: Int
        public var rows: Int
        public var count: Int
        public var tileWidth: Int
        public var tileHeight: Int

        public init(
            url: String, interval: Double, columns: Int, rows: Int, count: Int, tileWidth: Int, tileHeight: Int
        ) {
            self.url = url
            self.interval = interval
            self.columns = columns
            self.rows = rows
            self.count = count
            self.tileWidth = tileWidth
            self.tileHeight = tileHeight
        }
    }

    public struct Thumbnails: Codable, Sendable {
        public var posters: [Poster]
        public var sprite: Sprite?
        /// The API path of the WebVTT storyboard (cues pointing into the sprite with `#xywh=`), for players'
        /// seek-bar previews.
        public var storyboard: String?

        public init(posters: [Poster], sprite: Sprite? = nil, storyboard: String? = nil) {
            self.posters = posters
            self.sprite = sprite
            self.storyboard = storyboard
        }
    }

    public var videoId: String
    public var state: VideoState
    public var percent: Int?
    /// True once the HLS master playlist can be played from the start (a chunked transcode's first chunk is up),
    /// which may be well before `ready`.
    public var playable: Bool?
    public var error: Failure?
    public var fileName: String?
    public var source: SourceObject?
    /// The probe's description of the source (container, duration, streams), as metadata.json has it.
    public var metadata: JSONValue?
    public var renditions: [Rendition]?
    /// The API path of the HLS master playlist (every URI in it signed).
    public var hls: String?
    public var thumbnails: Thumbnails?
    /// Caption tracks (subtitle streams of the source and caption files added since), also in the master playlist.
    public var captions: [Caption]?
    /// Every audio track of the source, each an audio rendition of the master playlist and the DASH manifest.
    public var audio: [AudioTrack]?
    /// The default audio track as a progressive M4A.
    public var audioDownload: Download?
    /// The API path of the DASH manifest (the same segments as the HLS renditions, every URL signed).
    public var dash: String?

    public struct AudioTrack: Codable, Sendable {
        /// The rendition's name (`audio-2`: the source's second audio track).
        public var name: String
        public var language: String?
        public var label: String
        /// The track players start with, and the one in the MP4 downloads.
        public var isDefault: Bool
        public var channels: Int
        public var codecs: String

        public init(
            name: String, language: String? = nil, label: String, isDefault: Bool, channels: Int, codecs: String
        ) {
            self.name = name
            self.language = language
            self.label = label
            self.isDefault = isDefault
            self.channels = channels
            self.codecs = codecs
        }
    }

    public struct Download: Codable, Sendable {
        public var url: String
        public var stream: String

        public init(url: String, stream: String) {
            self.url = url
            self.stream = stream
        }
    }
    /// When the signed URLs in this answer stop working.
    public var urlsExpireAt: String?
    /// For `awaiting-upload`: when the upload URL expires.
    public var uploadExpiresAt: String?

    public init(
        playbackPolicy: PlaybackPolicy = .public, allowedOrigins: [String]? = nil, videoId: String, state: VideoState,
        percent: Int? = nil, playable: Bool? = nil, error: Failure? = nil, fileName: String? = nil,
        source: SourceObject? = nil, metadata: JSONValue? = nil, renditions: [Rendition]? = nil, hls: String? = nil,
        thumbnails: Thumbnails? = nil, captions: [Caption]? = nil, audio: [AudioTrack]? = nil,
        audioDownload: Download? = nil, dash: String? = nil, urlsExpireAt: String? = nil, uploadExpiresAt: String? = nil
    ) {
        self.playbackPolicy = playbackPolicy
        self.allowedOrigins = allowedOrigins
        self.videoId = videoId
        self.state = state
        self.percent = percent
        self.playable = playable
        self.error = error
        self.fileName = fileName
        self.source = source
        self.metadata = metadata
        self.renditions = renditions
        self.hls = hls
        self.thumbnails = thumbnails
        self.captions = captions
        self.audio = audio
        self.audioDownload = audioDownload
        self.dash = dash
        self.urlsExpireAt = urlsExpireAt
        self.uploadExpiresAt = uploadExpiresAt
    }
}
