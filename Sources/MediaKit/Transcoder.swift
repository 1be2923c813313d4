import CFFmpeg
import Foundation

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

    public init(preset: String = "veryfast", keyframeInterval: Double = 4) {
        self.preset = preset
        self.keyframeInterval = keyframeInterval
    }
}

/// A rendition written by `Transcoder`.
public struct Rendition: Sendable, Hashable, Codable {
    public var rung: Rung
    public var width: Int
    public var height: Int
    public var path: String
    public var size: Int64
    /// Average bit rate of the whole file, bits per second.
    public var bitRate: Int
    public var duration: Double
}

/// What one transcode wrote.
public struct TranscodeResult: Sendable, Hashable {
    public var renditions: [Rendition]
    public var thumbnails: Thumbnails?
}

/// Decodes the source once and encodes every rung (H.264 via libx264, audio carried over when it is
/// already AAC) into progressive MP4s with the index first (`+faststart`), keyframes aligned across rungs.
public enum Transcoder {
    /// The rungs at or below the source's height (the smallest one when the source is smaller than all).
    public static func rungs(for sourceHeight: Int, ladder: [Rung]) -> [Rung] {
        let fitting = ladder.filter { $0.height <= sourceHeight }.sorted { $0.height < $1.height }
        if !fitting.isEmpty { return fitting }
        return ladder.min { $0.height < $1.height }.map { [$0] } ?? []
    }

    /// Even width for `height` keeping `aspect` (display width / height), never above the source's.
    static func size(height: Int, sourceWidth: Int, sourceHeight: Int, aspect: Double) -> (Int, Int) {
        let h = min(height, sourceHeight) & ~1
        var w = Int((Double(h) * aspect).rounded())
        w = max(2, w & ~1)
        return (w, max(2, h))
    }

    /// Transcodes the file at `input` into `directory/<rung>.mp4` for each rung and, with `thumbnails`, the
    /// posters and the sprite from the same decoded frames; `progress` gets 0...1.
    public static func transcode(
        input: String, ladder: [Rung] = Rung.defaultLadder, settings: EncodingSettings = EncodingSettings(),
        thumbnails: ThumbnailSettings? = nil, directory: String, progress: @escaping @Sendable (Double) -> Void = { _ in }
    ) async throws(MediaError) -> TranscodeResult {
        try await MediaThread.run { () throws(MediaError) -> TranscodeResult in
            FFmpegLog.quiet()
            let job = try TranscodeJob(
                input: input, ladder: ladder, settings: settings, thumbnails: thumbnails, directory: directory)
            return try job.run(progress: progress)
        }
    }
}

func check(_ code: Int32, _ what: @autoclosure () -> String) throws(MediaError) {
    guard code >= 0 else { throw MediaError(.transcodeFailed, "\(what()): \(FFmpegError.describe(code))") }
}

/// The state of one transcode; every pointer is freed in deinit.
final class TranscodeJob {
    var input: UnsafeMutablePointer<AVFormatContext>?
    var decoder: UnsafeMutablePointer<AVCodecContext>?
    var videoIndex: Int32 = -1
    var audioIndex: Int32 = -1
    var outputs: [Output] = []
    let duration: Double
    var thumbnails: ThumbnailCollector?
    var startTime: Int64 = 0

    final class Output {
        let rung: Rung
        let width: Int32
        let height: Int32
        let path: String
        var format: UnsafeMutablePointer<AVFormatContext>?
        var encoder: UnsafeMutablePointer<AVCodecContext>?
        var scaler: OpaquePointer?
        var scaled: UnsafeMutablePointer<AVFrame>?
        var videoStream: UnsafeMutablePointer<AVStream>?
        var audioStream: UnsafeMutablePointer<AVStream>?

        init(rung: Rung, width: Int32, height: Int32, path: String) {
            self.rung = rung
            self.width = width
            self.height = height
            self.path = path
        }

        deinit {
            sws_freeContext(scaler)
            av_frame_free(&scaled)
            avcodec_free_context(&encoder)
            if let format {
                if format.pointee.pb != nil { avio_closep(&format.pointee.pb) }
                avformat_free_context(format)
            }
        }
    }

    init(
        input path: String, ladder: [Rung], settings: EncodingSettings, thumbnails: ThumbnailSettings?, directory: String
    ) throws(MediaError) {
        var context: UnsafeMutablePointer<AVFormatContext>?
        let opened = avformat_open_input(&context, path, nil, nil)
        guard opened >= 0, let context else {
            throw MediaError(.unreadableMedia, "cannot open the source (\(FFmpegError.describe(opened)))")
        }
        input = context
        let found = avformat_find_stream_info(context, nil)
        guard found >= 0 else { throw MediaError(.unreadableMedia, "the streams could not be read (\(FFmpegError.describe(found)))") }
        duration = context.pointee.duration > 0 ? Double(context.pointee.duration) / Double(AV_TIME_BASE) : 0

        var codec: UnsafePointer<AVCodec>?
        videoIndex = av_find_best_stream(context, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0)
        guard videoIndex >= 0, let codec else { throw MediaError(.noVideoStream, "the source has no decodable video stream") }
        let audio = av_find_best_stream(context, AVMEDIA_TYPE_AUDIO, -1, videoIndex, nil, 0)
        if audio >= 0, context.pointee.streams[Int(audio)]!.pointee.codecpar.pointee.codec_id == AV_CODEC_ID_AAC {
            audioIndex = audio
        }

        let stream = context.pointee.streams[Int(videoIndex)]!
        decoder = avcodec_alloc_context3(codec)
        guard let decoder else { throw MediaError(.transcodeFailed, "out of memory") }
        try check(avcodec_parameters_to_context(decoder, stream.pointee.codecpar), "decoder parameters")
        decoder.pointee.thread_count = 0
        decoder.pointee.pkt_timebase = stream.pointee.time_base
        try check(avcodec_open2(decoder, codec, nil), "opening the decoder")

        let sourceWidth = Int(decoder.pointee.width)
        let sourceHeight = Int(decoder.pointee.height)
        let sar = av_guess_sample_aspect_ratio(context, stream, nil)
        let pixelAspect = sar.num > 0 && sar.den > 0 ? Double(sar.num) / Double(sar.den) : 1
        let aspect = Double(sourceWidth) * pixelAspect / Double(sourceHeight)
        var rate = av_guess_frame_rate(context, stream, nil)
        if rate.num <= 0 || rate.den <= 0 { rate = AVRational(num: 30, den: 1) }
        let gop = max(1, Int32((av_q2d(rate) * settings.keyframeInterval).rounded()))
        if stream.pointee.start_time != cinescale_nopts_value() { startTime = stream.pointee.start_time }
        if let thumbnails, duration > 0 {
            self.thumbnails = try ThumbnailCollector(
                settings: thumbnails, directory: directory, duration: duration, sourceHeight: sourceHeight, aspect: aspect)
        }

        for rung in Transcoder.rungs(for: sourceHeight, ladder: ladder) {
            let (w, h) = Transcoder.size(height: rung.height, sourceWidth: sourceWidth, sourceHeight: sourceHeight, aspect: aspect)
            let output = Output(rung: rung, width: Int32(w), height: Int32(h), path: "\(directory)/\(rung.name).mp4")
            try openOutput(output, rate: rate, gop: gop, settings: settings, source: stream)
            outputs.append(output)
        }
    }

    deinit {
        outputs.removeAll()
        avcodec_free_context(&decoder)
        if input != nil { avformat_close_input(&input) }
    }

    private func openOutput(
        _ output: Output, rate: AVRational, gop: Int32, settings: EncodingSettings, source: UnsafeMutablePointer<AVStream>
    ) throws(MediaError) {
        var format: UnsafeMutablePointer<AVFormatContext>?
        try check(avformat_alloc_output_context2(&format, nil, "mp4", output.path), "creating \(output.path)")
        output.format = format
        guard let format, let x264 = avcodec_find_encoder_by_name("libx264") else {
            throw MediaError(.transcodeFailed, "libx264 is not available")
        }
        let encoder = avcodec_alloc_context3(x264)!
        output.encoder = encoder
        encoder.pointee.width = output.width
        encoder.pointee.height = output.height
        encoder.pointee.pix_fmt = AV_PIX_FMT_YUV420P
        encoder.pointee.sample_aspect_ratio = AVRational(num: 1, den: 1)
        encoder.pointee.time_base = av_inv_q(rate)
        encoder.pointee.framerate = rate
        encoder.pointee.gop_size = gop
        encoder.pointee.keyint_min = gop
        encoder.pointee.max_b_frames = 2
        encoder.pointee.rc_max_rate = Int64(output.rung.maxBitRate)
        encoder.pointee.rc_buffer_size = Int32(output.rung.maxBitRate * 2)
        encoder.pointee.thread_count = 0
        if format.pointee.oformat.pointee.flags & AVFMT_GLOBALHEADER != 0 {
            encoder.pointee.flags |= AV_CODEC_FLAG_GLOBAL_HEADER
        }
        var options: OpaquePointer?
        av_dict_set(&options, "preset", settings.preset, 0)
        av_dict_set(&options, "crf", String(output.rung.crf), 0)
        av_dict_set(&options, "x264-params", "scenecut=0:open-gop=0", 0)
        let opened = avcodec_open2(encoder, x264, &options)
        av_dict_free(&options)
        try check(opened, "opening libx264 for \(output.rung.name)")

        let video = avformat_new_stream(format, nil)!
        try check(avcodec_parameters_from_context(video.pointee.codecpar, encoder), "stream parameters")
        video.pointee.time_base = encoder.pointee.time_base
        output.videoStream = video
        if audioIndex >= 0 {
            let audio = avformat_new_stream(format, nil)!
            try check(
                avcodec_parameters_copy(audio.pointee.codecpar, input!.pointee.streams[Int(audioIndex)]!.pointee.codecpar),
                "audio parameters")
            audio.pointee.codecpar.pointee.codec_tag = 0
            audio.pointee.time_base = input!.pointee.streams[Int(audioIndex)]!.pointee.time_base
            output.audioStream = audio
        }
        try check(avio_open(&format.pointee.pb, output.path, AVIO_FLAG_WRITE), "creating \(output.path)")
        var muxerOptions: OpaquePointer?
        av_dict_set(&muxerOptions, "movflags", "+faststart", 0)
        let written = avformat_write_header(format, &muxerOptions)
        av_dict_free(&muxerOptions)
        try check(written, "writing the header of \(output.path)")

        output.scaled = av_frame_alloc()
        output.scaled!.pointee.format = AV_PIX_FMT_YUV420P.rawValue
        output.scaled!.pointee.width = output.width
        output.scaled!.pointee.height = output.height
        try check(av_frame_get_buffer(output.scaled, 0), "frame buffer")
    }

    func run(progress: @Sendable (Double) -> Void) throws(MediaError) -> TranscodeResult {
        let packet = av_packet_alloc()
        let frame = av_frame_alloc()
        defer {
            var p = packet
            av_packet_free(&p)
            var f = frame
            av_frame_free(&f)
        }
        guard let packet, let frame else { throw MediaError(.transcodeFailed, "out of memory") }
        let videoTimeBase = input!.pointee.streams[Int(videoIndex)]!.pointee.time_base
        var lastReport = -1.0
        while true {
            let read = av_read_frame(input, packet)
            if read == cinescale_averror_eof() { break }
            try check(read, "reading the source")
            defer { av_packet_unref(packet) }
            if packet.pointee.stream_index == videoIndex {
                try check(avcodec_send_packet(decoder, packet), "decoding")
                try drainDecoder(frame)
                if duration > 0, packet.pointee.pts != cinescale_nopts_value() {
                    let done = min(1, Double(packet.pointee.pts) * av_q2d(videoTimeBase) / duration)
                    if done - lastReport >= 0.01 {
                        lastReport = done
                        progress(done)
                    }
                }
            } else if packet.pointee.stream_index == audioIndex {
                for output in outputs {
                    let copy = av_packet_clone(packet)!
                    var owned: UnsafeMutablePointer<AVPacket>? = copy
                    copy.pointee.stream_index = output.audioStream!.pointee.index
                    av_packet_rescale_ts(
                        copy, input!.pointee.streams[Int(audioIndex)]!.pointee.time_base, output.audioStream!.pointee.time_base)
                    copy.pointee.pos = -1
                    let written = av_interleaved_write_frame(output.format, copy)
                    av_packet_free(&owned)
                    try check(written, "writing audio to \(output.rung.name)")
                }
            }
        }
        try check(avcodec_send_packet(decoder, nil), "flushing the decoder")
        try drainDecoder(frame)
        var renditions: [Rendition] = []
        for output in outputs {
            try encode(nil, output)
            try check(av_write_trailer(output.format), "finishing \(output.rung.name)")
            avio_closep(&output.format!.pointee.pb)
            let attributes = try? FileManager.default.attributesOfItem(atPath: output.path)
            let size = (attributes?[.size] as? NSNumber)?.int64Value ?? 0
            renditions.append(
                Rendition(
                    rung: output.rung, width: Int(output.width), height: Int(output.height), path: output.path,
                    size: size, bitRate: duration > 0 ? Int(Double(size * 8) / duration) : 0,
                    duration: duration))
        }
        let thumbs = try thumbnails?.finish()
        progress(1)
        return TranscodeResult(renditions: renditions, thumbnails: thumbs)
    }

    private func drainDecoder(_ frame: UnsafeMutablePointer<AVFrame>) throws(MediaError) {
        while true {
            let received = avcodec_receive_frame(decoder, frame)
            if received == cinescale_averror(EAGAIN) || received == cinescale_averror_eof() { return }
            try check(received, "decoding")
            defer { av_frame_unref(frame) }
            let sourceTimeBase = input!.pointee.streams[Int(videoIndex)]!.pointee.time_base
            for output in outputs {
                try scale(frame, into: output)
                let pts = frame.pointee.best_effort_timestamp
                output.scaled!.pointee.pts = pts == cinescale_nopts_value()
                    ? cinescale_nopts_value() : av_rescale_q(pts, sourceTimeBase, output.encoder!.pointee.time_base)
                output.scaled!.pointee.pict_type = AV_PICTURE_TYPE_NONE
                try encode(output.scaled, output)
            }
            if let thumbnails, frame.pointee.best_effort_timestamp != cinescale_nopts_value() {
                let time = Double(frame.pointee.best_effort_timestamp - startTime) * av_q2d(sourceTimeBase)
                try thumbnails.offer(frame, time: time)
            }
        }
    }

    private func scale(_ frame: UnsafeMutablePointer<AVFrame>, into output: Output) throws(MediaError) {
        output.scaler = sws_getCachedContext(
            output.scaler, frame.pointee.width, frame.pointee.height, AVPixelFormat(rawValue: frame.pointee.format),
            output.width, output.height, AV_PIX_FMT_YUV420P, SWS_BICUBIC, nil, nil, nil)
        guard output.scaler != nil else { throw MediaError(.transcodeFailed, "cannot scale to \(output.rung.name)") }
        try check(av_frame_make_writable(output.scaled), "frame buffer")
        let scaled = output.scaled!
        let result = withUnsafePointer(to: &frame.pointee.data) { sourceData in
            withUnsafePointer(to: &frame.pointee.linesize) { sourceLines in
                withUnsafePointer(to: &scaled.pointee.data) { targetData in
                    withUnsafePointer(to: &scaled.pointee.linesize) { targetLines in
                        sws_scale(
                            output.scaler,
                            UnsafeRawPointer(sourceData).assumingMemoryBound(to: UnsafePointer<UInt8>?.self),
                            UnsafeRawPointer(sourceLines).assumingMemoryBound(to: Int32.self), 0, frame.pointee.height,
                            UnsafeRawPointer(targetData).assumingMemoryBound(to: UnsafeMutablePointer<UInt8>?.self),
                            UnsafeRawPointer(targetLines).assumingMemoryBound(to: Int32.self))
                    }
                }
            }
        }
        try check(result, "scaling to \(output.rung.name)")
    }

    private func encode(_ frame: UnsafeMutablePointer<AVFrame>?, _ output: Output) throws(MediaError) {
        try check(avcodec_send_frame(output.encoder, frame), "encoding \(output.rung.name)")
        var packet: UnsafeMutablePointer<AVPacket>? = av_packet_alloc()
        defer { av_packet_free(&packet) }
        while true {
            let received = avcodec_receive_packet(output.encoder, packet)
            if received == cinescale_averror(EAGAIN) || received == cinescale_averror_eof() { return }
            try check(received, "encoding \(output.rung.name)")
            packet!.pointee.stream_index = output.videoStream!.pointee.index
            av_packet_rescale_ts(packet, output.encoder!.pointee.time_base, output.videoStream!.pointee.time_base)
            try check(av_interleaved_write_frame(output.format, packet), "writing \(output.rung.name)")
        }
    }
}
