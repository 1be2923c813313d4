/// What `MediaProbe` reports: the container and every stream, in the units players use.
public struct MediaInfo: Sendable, Codable, Equatable {
    /// FFmpeg's demuxer name(s): `mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`...
    public var container: String
    /// Seconds.
    public var duration: Double
    /// Overall bit rate, bits per second (nil when unknown).
    public var bitRate: Int?
    /// Bytes.
    public var size: Int64
    public var streams: [Stream]

    public struct Stream: Sendable, Codable, Equatable {
        public var index: Int
        /// `video`, `audio`, `subtitle`, `data`, `attachment`.
        public var type: String
        /// FFmpeg's codec name: `h264`, `hevc`, `aac`...
        public var codec: String
        /// `High`, `Main`, `LC`... (nil when the codec has none).
        public var profile: String?
        public var bitRate: Int?
        // Video
        public var width: Int?
        public var height: Int?
        /// `16:9`, reduced.
        public var displayAspectRatio: String?
        /// The display matrix's rotation, degrees counter-clockwise, as ffprobe reports it (0, 90, -90, 180).
        public var rotation: Int?
        /// Frames per second.
        public var frameRate: Double?
        /// `yuv420p`...
        public var pixelFormat: String?
        // Audio
        public var sampleRate: Int?
        public var channels: Int?
        /// ISO 639 code from the stream's metadata (`und` when unset).
        public var language: String?
    }

    /// The first video stream.
    public var video: Stream? { streams.first { $0.type == "video" } }
    /// The first audio stream.
    public var audio: Stream? { streams.first { $0.type == "audio" } }
}

/// Bounds a probe enforces.
public struct ProbeLimits: Sendable, Equatable {
    public var maxWidth: Int
    public var maxHeight: Int
    /// Seconds.
    public var maxDuration: Double

    public init(maxWidth: Int = 7680, maxHeight: Int = 4320, maxDuration: Double = 4 * 3600) {
        self.maxWidth = maxWidth
        self.maxHeight = maxHeight
        self.maxDuration = maxDuration
    }
}
