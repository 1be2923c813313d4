import CFFmpeg
import Foundation

/// Poster frames and a scrubbing sprite, taken from the frames the transcoder decodes anyway.
public struct ThumbnailSettings: Sendable, Hashable {
    /// Posters at these fractions of the duration (10 %, 50 %, 90 %).
    public var posterFractions: [Double]
    /// Poster height (never above the source's).
    public var posterHeight: Int
    /// Sprite tile height; the width follows the display aspect ratio.
    public var tileHeight: Int
    public var columns: Int
    /// At most this many tiles; the interval between them is the duration divided by it (at least 1 s).
    public var maxTiles: Int

    public init(
        posterFractions: [Double] = [0.1, 0.5, 0.9], posterHeight: Int = 720, tileHeight: Int = 90, columns: Int = 10,
        maxTiles: Int = 100
    ) {
        self.posterFractions = posterFractions
        self.posterHeight = posterHeight
        self.tileHeight = tileHeight
        self.columns = columns
        self.maxTiles = maxTiles
    }
}

/// What `ThumbnailCollector` wrote.
public struct Thumbnails: Sendable, Hashable, Codable {
    public struct Poster: Sendable, Hashable, Codable {
        /// Seconds into the video.
        public var time: Double
        public var width: Int
        public var height: Int
        public var path: String
    }

    public struct Sprite: Sendable, Hashable, Codable {
        public var path: String
        /// Seconds between tiles; tile `i` shows the frame at `i × interval`.
        public var interval: Double
        public var columns: Int
        public var rows: Int
        public var count: Int
        /// The first tile drawn (a chunk draws only the tiles whose times fall in its range; the rest stay black).
        public var firstTile: Int
        public var tileWidth: Int
        public var tileHeight: Int
    }

    public var posters: [Poster]
    public var sprite: Sprite?
}

/// Collects posters and sprite tiles from decoded frames (in presentation order) and writes JPEGs.
final class ThumbnailCollector {
    let settings: ThumbnailSettings
    let directory: String
    let duration: Double
    let posterSize: (Int32, Int32)
    let tileSize: (Int32, Int32)
    let interval: Double
    let tileCount: Int
    private var posterTargets: [Double]
    private var posters: [Thumbnails.Poster] = []
    private var nextTile = 0
    private var posterScaler: OpaquePointer?
    private var tileScaler: OpaquePointer?
    private var posterFrame: UnsafeMutablePointer<AVFrame>?
    private var sprite: UnsafeMutablePointer<AVFrame>?

    private let firstTile: Int

    /// `from`: where a chunk's share begins — just after the previous chunk's last frame (its start less a frame):
    /// posters and tiles before it are taken by the chunk before, from its own frames.
    init(
        settings: ThumbnailSettings, directory: String, duration: Double, sourceHeight: Int, aspect: Double,
        from start: Double = 0
    ) throws(MediaError) {
        self.settings = settings
        self.directory = directory
        self.duration = duration
        let (pw, ph) = Transcoder.size(
            height: settings.posterHeight, sourceWidth: Int(Double(sourceHeight) * aspect), sourceHeight: sourceHeight,
            aspect: aspect)
        posterSize = (Int32(pw), Int32(ph))
        let (tw, th) = Transcoder.size(
            height: settings.tileHeight, sourceWidth: Int(Double(sourceHeight) * aspect), sourceHeight: sourceHeight,
            aspect: aspect)
        tileSize = (Int32(tw), Int32(th))
        interval = max(1, duration / Double(max(1, settings.maxTiles)))
        tileCount = max(1, min(settings.maxTiles, Int((duration / interval).rounded(.up))))
        posterTargets = settings.posterFractions.sorted().map { $0 * duration }.filter { start <= 0 || $0 >= start }
        firstTile = start <= 0 ? 0 : max(0, Int((start / interval).rounded(.up)))
        nextTile = firstTile
        posterFrame = try Self.frame(width: posterSize.0, height: posterSize.1)
        let rows = (tileCount + settings.columns - 1) / settings.columns
        sprite = try Self.frame(
            width: tileSize.0 * Int32(min(settings.columns, tileCount)), height: tileSize.1 * Int32(rows))
    }

    deinit {
        sws_freeContext(posterScaler)
        sws_freeContext(tileScaler)
        av_frame_free(&posterFrame)
        av_frame_free(&sprite)
    }

    /// A black full-range 4:2:0 frame.
    static func frame(width: Int32, height: Int32) throws(MediaError) -> UnsafeMutablePointer<AVFrame> {
        guard let frame = av_frame_alloc() else { throw MediaError(.transcodeFailed, "out of memory") }
        frame.pointee.format = AV_PIX_FMT_YUVJ420P.rawValue
        frame.pointee.width = width
        frame.pointee.height = height
        var owned: UnsafeMutablePointer<AVFrame>? = frame
        guard av_frame_get_buffer(frame, 0) >= 0 else {
            av_frame_free(&owned)
            throw MediaError(.transcodeFailed, "out of memory")
        }
        let planes = [
            (frame.pointee.data.0, frame.pointee.linesize.0, height, UInt8(0)),
            (frame.pointee.data.1, frame.pointee.linesize.1, (height + 1) / 2, UInt8(128)),
            (frame.pointee.data.2, frame.pointee.linesize.2, (height + 1) / 2, UInt8(128)),
        ]
        for (data, linesize, rows, value) in planes { memset(data!, Int32(value), Int(linesize) * Int(rows)) }
        return frame
    }

    /// Offers a decoded frame shown at `time` seconds.
    func offer(_ frame: UnsafeMutablePointer<AVFrame>, time: Double) throws(MediaError) {
        while let target = posterTargets.first, time + 1e-6 >= target {
            posterTargets.removeFirst()
            try scale(frame, with: &posterScaler, into: posterFrame!, x: 0, y: 0, size: posterSize)
            let path = "\(directory)/poster-\(posters.count + 1).jpg"
            try Self.writeJPEG(posterFrame!, to: path)
            posters.append(.init(time: time, width: Int(posterSize.0), height: Int(posterSize.1), path: path))
        }
        while nextTile < tileCount, time + 1e-6 >= Double(nextTile) * interval {
            let column = nextTile % settings.columns
            let row = nextTile / settings.columns
            try scale(
                frame, with: &tileScaler, into: sprite!, x: Int32(column) * tileSize.0, y: Int32(row) * tileSize.1,
                size: tileSize)
            nextTile += 1
        }
    }

    /// Writes the sprite; returns everything written.
    func finish() throws(MediaError) -> Thumbnails {
        var spriteInfo: Thumbnails.Sprite?
        if nextTile > firstTile {
            let path = "\(directory)/sprite.jpg"
            try Self.writeJPEG(sprite!, to: path)
            let columns = min(settings.columns, tileCount)
            spriteInfo = .init(
                path: path, interval: interval, columns: columns,
                rows: (tileCount + settings.columns - 1) / settings.columns,
                count: nextTile - firstTile, firstTile: firstTile, tileWidth: Int(tileSize.0),
                tileHeight: Int(tileSize.1))
        }
        return Thumbnails(posters: posters, sprite: spriteInfo)
    }

    /// Scales `frame` into the rectangle at (x, y) of `target` (x and y even).
    private func scale(
        _ frame: UnsafeMutablePointer<AVFrame>, with scaler: inout OpaquePointer?,
        into target: UnsafeMutablePointer<AVFrame>,
        x: Int32, y: Int32, size: (Int32, Int32)
    ) throws(MediaError) {
        scaler = sws_getCachedContext(
            scaler, frame.pointee.width, frame.pointee.height, AVPixelFormat(rawValue: frame.pointee.format), size.0,
            size.1,
            AV_PIX_FMT_YUVJ420P, SWS_BICUBIC, nil, nil, nil)
        guard let context = scaler else { throw MediaError(.transcodeFailed, "cannot scale a thumbnail") }
        try check(av_frame_make_writable(target), "thumbnail buffer")
        let lines = [target.pointee.linesize.0, target.pointee.linesize.1, target.pointee.linesize.2, 0]
        let planes: [UnsafeMutablePointer<UInt8>?] = [
            target.pointee.data.0! + Int(y * lines[0] + x),
            target.pointee.data.1! + Int((y / 2) * lines[1] + x / 2),
            target.pointee.data.2! + Int((y / 2) * lines[2] + x / 2),
            nil,
        ]
        let result = withUnsafePointer(to: &frame.pointee.data) { sourceData in
            withUnsafePointer(to: &frame.pointee.linesize) { sourceLines in
                sws_scale(
                    context, UnsafeRawPointer(sourceData).assumingMemoryBound(to: UnsafePointer<UInt8>?.self),
                    UnsafeRawPointer(sourceLines).assumingMemoryBound(to: Int32.self), 0, frame.pointee.height, planes,
                    lines)
            }
        }
        try check(result, "scaling a thumbnail")
    }

    /// Encodes one full-range 4:2:0 frame as a baseline JPEG file.
    static func writeJPEG(_ frame: UnsafeMutablePointer<AVFrame>, to path: String) throws(MediaError) {
        guard let codec = avcodec_find_encoder(AV_CODEC_ID_MJPEG), let encoder = avcodec_alloc_context3(codec) else {
            throw MediaError(.transcodeFailed, "the JPEG encoder is not available")
        }
        var owned: UnsafeMutablePointer<AVCodecContext>? = encoder
        defer { avcodec_free_context(&owned) }
        encoder.pointee.width = frame.pointee.width
        encoder.pointee.height = frame.pointee.height
        encoder.pointee.pix_fmt = AV_PIX_FMT_YUVJ420P
        encoder.pointee.time_base = AVRational(num: 1, den: 25)
        encoder.pointee.flags |= AV_CODEC_FLAG_QSCALE
        encoder.pointee.global_quality = 3 * 118  // qscale 3 (FF_QP2LAMBDA = 118)
        try check(avcodec_open2(encoder, codec, nil), "opening the JPEG encoder")
        frame.pointee.pts = 0
        frame.pointee.quality = encoder.pointee.global_quality
        try check(avcodec_send_frame(encoder, frame), "encoding a JPEG")
        try check(avcodec_send_frame(encoder, nil), "encoding a JPEG")
        var packet: UnsafeMutablePointer<AVPacket>? = av_packet_alloc()
        defer { av_packet_free(&packet) }
        try check(avcodec_receive_packet(encoder, packet), "encoding a JPEG")
        let data = Data(bytes: packet!.pointee.data, count: Int(packet!.pointee.size))
        do {
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw MediaError(.transcodeFailed, "cannot write \(path): \(error)")
        }
    }
}
