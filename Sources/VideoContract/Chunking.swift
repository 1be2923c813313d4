import Foundation

/// `<id>/audio/audio.json`: the audio encoded once for a chunked video whose source audio is not AAC.
public struct EncodedAudioRecord: Codable, Sendable, Hashable {
    public var key: String
    public var packets: Int
    public var sampleRate: Int
    /// Seconds from the video's first frame to the first packet (negative: the encoder's priming).
    public var leadIn: Double
    public var duration: Double
    public var size: Int64
    /// Wall-clock seconds of the encode (reading the source, decoding and encoding).
    public var seconds: Double

    public init(
        key: String, packets: Int, sampleRate: Int, leadIn: Double, duration: Double, size: Int64, seconds: Double
    ) {
        self.key = key
        self.packets = packets
        self.sampleRate = sampleRate
        self.leadIn = leadIn
        self.duration = duration
        self.size = size
        self.seconds = seconds
    }
}

/// `<id>/plan.json`: how the video's timeline is cut, and the settings every chunk uses (the same for all, so
/// their segments join one rendition).
public struct TranscodePlan: Codable, Sendable, Hashable {
    public struct Rung: Codable, Sendable, Hashable {
        public var name: String
        public var height: Int
        public var crf: Int
        public var maxBitRate: Int

        public init(name: String, height: Int, crf: Int, maxBitRate: Int) {
            self.name = name
            self.height = height
            self.crf = crf
            self.maxBitRate = maxBitRate
        }
    }

    public struct Chunk: Codable, Sendable, Hashable {
        public var index: Int
        /// Seconds from the first frame; `end` nil for the last chunk.
        public var start: Double
        public var end: Double?
        public var firstSegment: Int
        public var segments: Int

        public init(index: Int, start: Double, end: Double?, firstSegment: Int, segments: Int) {
            self.index = index
            self.start = start
            self.end = end
            self.firstSegment = firstSegment
            self.segments = segments
        }
    }

    public var videoId: String
    public var source: SourceObject
    public var duration: Double
    public var keyframeInterval: Double
    /// The planned segments' durations (the keyframe interval, the last one shorter): the VOD playlists a
    /// player gets before the last chunk is done.
    public var segmentDurations: [Double]
    public var chunks: [Chunk]
    /// The rungs at or below the source's height.
    public var rungs: [Rung]
    public var preset: String
    /// How many chunks after the first are queued at once (0: all); each chunk that ends queues the next, so
    /// the videos being chunked share the workers instead of queueing behind each other.
    public var window: Int
    public var createdAt: String
    /// True when the source's audio is not carried packet by packet (not AAC, or AAC in a container whose
    /// timestamps are not trusted): the plan encodes it once (`ChunkKeys.encodedAudio`) before it queues the
    /// chunks after the first, which mux that encode's packets; the first chunk encodes its own range. nil in
    /// plans written before this existed (their such videos are one chunk).
    public var encodedAudio: Bool?
    /// True when the source has subtitle streams: the finish step reads them (once, the whole source's packets
    /// demuxed, none decoded but the subtitles') into WebVTT renditions. nil in plans written before this existed.
    public var subtitles: Bool?
    /// True when the source has more than one audio stream: the finish step writes the tracks the chunks did
    /// not carry as renditions of their own (the whole source's packets demuxed once, only theirs decoded).
    public var extraAudio: Bool?

    public init(
        videoId: String, source: SourceObject, duration: Double, keyframeInterval: Double, segmentDurations: [Double],
        chunks: [Chunk], rungs: [Rung], preset: String, window: Int, createdAt: String, encodedAudio: Bool? = nil,
        subtitles: Bool? = nil, extraAudio: Bool? = nil
    ) {
        self.subtitles = subtitles
        self.extraAudio = extraAudio
        self.videoId = videoId
        self.source = source
        self.duration = duration
        self.keyframeInterval = keyframeInterval
        self.segmentDurations = segmentDurations
        self.chunks = chunks
        self.rungs = rungs
        self.preset = preset
        self.window = window
        self.createdAt = createdAt
        self.encodedAudio = encodedAudio
    }

    /// Cuts `duration` seconds on a grid of `keyframeInterval`. The first chunk is one segment of
    /// `firstSeconds` (at most the keyframe interval: shorter, the video is playable sooner, since every rung of
    /// the first chunk must be encoded before anything plays) and the grid runs on from there; the other chunks
    /// are `chunkSeconds` rounded to whole segments. A boundary needs a frame after it: one within
    /// `frameDuration` of the end (a container whose audio ends a few milliseconds after the last picture, as
    /// Opus's padding does) would make a segment, and a chunk, without a picture.
    public static func cut(
        duration: Double, keyframeInterval: Double, firstSeconds: Double, chunkSeconds: Double,
        frameDuration: Double = 0.001
    ) -> (segments: [Double], chunks: [Chunk]) {
        let first = min(max(firstSeconds, 0.5), keyframeInterval)
        // Segment boundaries: 0, first, first + interval, ... while a frame follows them.
        var bounds: [Double] = [0]
        var next = first
        while next < duration - max(frameDuration, 1e-3) {
            bounds.append(next)
            next += keyframeInterval
        }
        let count = bounds.count
        let segments = (0..<count).map { index in
            max(0.001, (index + 1 < count ? bounds[index + 1] : duration) - bounds[index])
        }
        let perChunk = max(1, Int((chunkSeconds / keyframeInterval).rounded()))
        var chunks: [Chunk] = []
        var index = 0
        while index < count {
            let end = min(count, index + (chunks.isEmpty ? 1 : perChunk))
            chunks.append(
                Chunk(
                    index: chunks.count, start: bounds[index], end: end == count ? nil : bounds[end],
                    firstSegment: index, segments: end - index))
            index = end
        }
        return (segments, chunks)
    }
}

/// The body of a chunk's job object.
public struct ChunkJob: Codable, Sendable, Hashable {
    public var videoId: String
    public var index: Int

    public init(videoId: String, index: Int) {
        self.videoId = videoId
        self.index = index
    }
}

/// `<id>/chunks/NNNNN.json`: what one chunk wrote.
public struct ChunkRecord: Codable, Sendable, Hashable {
    public struct Segment: Codable, Sendable, Hashable {
        public var name: String
        public var duration: Double
        public var size: Int64

        public init(name: String, duration: Double, size: Int64) {
            self.name = name
            self.duration = duration
            self.size = size
        }
    }

    public struct Rung: Codable, Sendable, Hashable {
        public var name: String
        public var width: Int
        public var height: Int
        public var codecs: String
        public var segments: [Segment]

        public init(name: String, width: Int, height: Int, codecs: String, segments: [Segment]) {
            self.name = name
            self.width = width
            self.height = height
            self.codecs = codecs
            self.segments = segments
        }
    }

    public struct Audio: Codable, Sendable, Hashable {
        /// The rendition's directory under `hls/` (`audio-1`).
        public var name: String
        public var language: String?
        public var label: String
        public var channels: Int
        public var sampleRate: Int
        public var codecs: String
        public var segments: [Segment]

        public init(
            name: String, language: String?, label: String, channels: Int, sampleRate: Int, codecs: String,
            segments: [Segment]
        ) {
            self.name = name
            self.language = language
            self.label = label
            self.channels = channels
            self.sampleRate = sampleRate
            self.codecs = codecs
            self.segments = segments
        }
    }

    public struct SpritePart: Codable, Sendable, Hashable {
        public var key: String
        public var firstTile: Int
        public var count: Int
        public var interval: Double
        public var columns: Int
        public var rows: Int
        public var tileWidth: Int
        public var tileHeight: Int

        public init(
            key: String, firstTile: Int, count: Int, interval: Double, columns: Int, rows: Int, tileWidth: Int,
            tileHeight: Int
        ) {
            self.key = key
            self.firstTile = firstTile
            self.count = count
            self.interval = interval
            self.columns = columns
            self.rows = rows
            self.tileWidth = tileWidth
            self.tileHeight = tileHeight
        }
    }

    public var videoId: String
    public var index: Int
    public var start: Double
    public var end: Double?
    public var frames: Int
    public var audioPackets: Int
    public var frameRate: Double
    public var rungs: [Rung]
    /// The chunk's range of the ladder's audio track, in segments of its own (nil: the source has no audio).
    public var audio: Audio?
    /// Where the video's first frame is on the segments' timeline, seconds (the encoder's reorder delay): the
    /// audio tracks written at the finish go on the same timeline. nil in records written before it existed.
    public var videoDelay: Double?
    public var posters: [VideoStatus.Poster]
    public var sprite: SpritePart?
    /// Wall-clock seconds the chunk took (download, encode, upload), and its encode alone.
    public var seconds: Double
    public var encodeSeconds: Double

    public init(
        videoId: String, index: Int, start: Double, end: Double?, frames: Int, audioPackets: Int, frameRate: Double,
        rungs: [Rung], audio: Audio? = nil, posters: [VideoStatus.Poster], sprite: SpritePart?,
        videoDelay: Double? = nil,
        seconds: Double, encodeSeconds: Double
    ) {
        self.audio = audio
        self.videoDelay = videoDelay
        self.videoId = videoId
        self.index = index
        self.start = start
        self.end = end
        self.frames = frames
        self.audioPackets = audioPackets
        self.frameRate = frameRate
        self.rungs = rungs
        self.posters = posters
        self.sprite = sprite
        self.seconds = seconds
        self.encodeSeconds = encodeSeconds
    }
}
