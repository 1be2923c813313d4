import HLS

/// One rung of the ladder: the output height (the width follows the source's display aspect ratio, even,
/// never upscaled) and the encoder's rate control.
public struct Rung: Sendable, Hashable, Codable {
    public var name: String
    public var height: Int
    /// libx264 constant rate factor.
    public var crf: Int
    /// Peak video bit rate, bits per second (`maxrate`; `bufsize` is twice it).
    public var maxBitRate: Int

    public init(name: String, height: Int, crf: Int = 23, maxBitRate: Int) {
        self.name = name
        self.height = height
        self.crf = crf
        self.maxBitRate = maxBitRate
    }

    public static let defaultLadder = [
        Rung(name: "240p", height: 240, maxBitRate: 400_000),
        Rung(name: "360p", height: 360, maxBitRate: 800_000),
        Rung(name: "720p", height: 720, maxBitRate: 2_800_000),
        Rung(name: "1080p", height: 1080, maxBitRate: 5_000_000),
    ]
}

/// Encoder settings shared by every rung.
public struct EncodingSettings: Sendable, Hashable {
    /// libx264 preset.
    public var preset: String
    /// Seconds between keyframes (the same frames in every rung, so renditions switch cleanly).
    public var keyframeInterval: Double
    /// Scale each rung from the next larger one (1080 → 720 → 360 → 240) instead of each from the source:
    /// about a third less scaling work, at a quality difference of a few hundredths of a dB.
    public var cascade: Bool

    public init(preset: String = "veryfast", keyframeInterval: Double = 4, cascade: Bool = true) {
        self.preset = preset
        self.keyframeInterval = keyframeInterval
        self.cascade = cascade
    }
}

/// A rendition written by `Transcoder`: a progressive MP4 and an HLS media playlist of the same encode.
public struct Rendition: Sendable, Hashable, Codable {
    public var rung: Rung
    public var width: Int
    public var height: Int
    public var path: String
    public var size: Int64
    /// Average bit rate of the whole file, bits per second.
    public var bitRate: Int
    public var duration: Double
    public var hls: HLSRendition
}

/// One rung's HLS output: `directory` holds `index.m3u8`, `init.mp4` and the fMP4 segments.
public struct HLSRendition: Sendable, Hashable, Codable {
    public var directory: String
    public var segments: Int
    /// Peak segment bit rate (the master playlist's BANDWIDTH), bits per second.
    public var bandwidth: Int
    public var averageBandwidth: Int
    /// RFC 6381 codecs, e.g. `avc1.64001e,mp4a.40.2`.
    public var codecs: String
    public var frameRate: Double?
}

/// What one transcode wrote.
public struct TranscodeResult: Sendable, Hashable {
    public var renditions: [Rendition]
    public var thumbnails: Thumbnails?
    /// `hls/` under the output directory: `master.m3u8` and one directory per rung.
    public var hlsDirectory: String
    /// Video packets the decoder could not decode and skipped (damaged input that was still usable).
    public var damagedPackets: Int
    /// The source's text subtitle tracks, as WebVTT renditions under `hlsDirectory` (named in the master).
    public var subtitles: [SubtitleOutput] = []
    /// Every audio track of the source as a rendition of its own under `hlsDirectory`, the ladder's first.
    public var audio: [AudioOutput] = []
    /// Audio tracks left out (undecodable), each with its reason.
    public var skippedAudio: [String] = []
    /// Where the video's first frame is on the segments' timeline, seconds: see ``TranscodeJob/videoDelay``.
    public var videoDelay: Double = 0
}
