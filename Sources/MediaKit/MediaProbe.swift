import CFFmpeg
import Foundation

/// Reads a medium's container and stream parameters through FFmpeg (libavformat), from any `MediaSource`:
/// a custom AVIOContext turns FFmpeg's reads and seeks into `source.read(at:into:)` calls, so only the
/// bytes the demuxer needs are fetched (for a faststart MP4: the header and the first packets).
public enum MediaProbe {
    /// Probes on a dedicated thread (FFmpeg's callbacks block while the source fetches).
    public static func probe(_ source: any MediaSource, limits: ProbeLimits = ProbeLimits()) async throws(MediaError)
        -> MediaInfo
    {
        try await MediaThread.run { () throws(MediaError) -> MediaInfo in try probeNow(source, limits: limits) }
    }

    /// Probes on the calling thread, which may block.
    public static func probeNow(_ source: any MediaSource, limits: ProbeLimits = ProbeLimits()) throws(MediaError)
        -> MediaInfo
    {
        FFmpegLog.start()
        let input = try InputFile(source: source)
        let info = input.info()
        try check(info, limits: limits)
        return info
    }

    static func check(_ info: MediaInfo, limits: ProbeLimits) throws(MediaError) {
        guard let video = info.video else {
            let kinds = info.streams.map(\.type)
            throw MediaError(
                .noVideoStream,
                kinds.isEmpty
                    ? "the file has no streams"
                    : "the file has no video stream (streams: \(kinds.joined(separator: ", ")))")
        }
        // A "video stream" without dimensions is what a demuxer guesses from noise (or an unknown codec):
        // the file is not readable as video, which is a different fault from an audio-only upload.
        guard let width = video.width, let height = video.height, width > 0, height > 0 else {
            throw MediaError(
                .unreadableMedia, "the video stream (codec \(video.codec)) could not be decoded: no picture size found")
        }
        // The size first: a hostile header declaring a huge picture is refused for what it declares.
        guard width <= limits.maxWidth, height <= limits.maxHeight else {
            throw MediaError(
                .dimensionsTooLarge,
                "the video is \(width)×\(height); the limit is \(limits.maxWidth)×\(limits.maxHeight)")
        }
        guard info.duration > 0, info.duration.isFinite else {
            throw MediaError(.zeroDuration, "the video has no duration (a still image, or an empty or broken file)")
        }
        guard info.duration <= limits.maxDuration else {
            throw MediaError(
                .durationTooLong,
                "the video lasts \(Int(info.duration)) s; the limit is \(Int(limits.maxDuration)) s")
        }
    }
}

/// An opened input: the AVFormatContext over a custom AVIOContext. Owns both; freed on deinit.
final class InputFile {
    let io: SourceIO
    private(set) var context: UnsafeMutablePointer<AVFormatContext>?
    let size: Int64

    init(source: any MediaSource) throws(MediaError) {
        io = try SourceIO(source: source)
        size = source.size
        guard let allocated = avformat_alloc_context() else { throw MediaError(.unreadableMedia, "out of memory") }
        allocated.pointee.pb = io.context
        allocated.pointee.flags |= AVFMT_FLAG_CUSTOM_IO
        var context: UnsafeMutablePointer<AVFormatContext>? = allocated
        let opened = avformat_open_input(&context, nil, nil, nil)  // frees the context on failure
        guard opened >= 0, let context else {
            throw io.failure
                ?? MediaError(.unreadableMedia, "not a recognised media file (\(FFmpegError.describe(opened)))")
        }
        self.context = context
        let found = avformat_find_stream_info(context, nil)
        guard found >= 0 else {
            throw io.failure
                ?? MediaError(.unreadableMedia, "the streams could not be read (\(FFmpegError.describe(found)))")
        }
    }

    deinit {
        if context != nil { avformat_close_input(&context) }
    }

    func info() -> MediaInfo {
        let ctx = context!
        var streams: [MediaInfo.Stream] = []
        for i in 0..<Int(ctx.pointee.nb_streams) {
            guard let stream = ctx.pointee.streams[i] else { continue }
            streams.append(describe(stream, in: ctx))
        }
        var duration = 0.0
        if ctx.pointee.duration != cinescale_nopts_value(), ctx.pointee.duration > 0 {
            duration = Double(ctx.pointee.duration) / Double(AV_TIME_BASE)
        } else {
            for i in 0..<Int(ctx.pointee.nb_streams) {
                guard let stream = ctx.pointee.streams[i], stream.pointee.duration != cinescale_nopts_value() else {
                    continue
                }
                duration = max(duration, Double(stream.pointee.duration) * av_q2d(stream.pointee.time_base))
            }
        }
        let bitRate = ctx.pointee.bit_rate > 0 ? Int(ctx.pointee.bit_rate) : nil
        return MediaInfo(
            container: String(cString: ctx.pointee.iformat.pointee.name), duration: duration, bitRate: bitRate,
            size: size, streams: streams)
    }

    private func describe(_ stream: UnsafeMutablePointer<AVStream>, in ctx: UnsafeMutablePointer<AVFormatContext>)
        -> MediaInfo.Stream
    {
        let par = stream.pointee.codecpar.pointee
        let attachedPicture = stream.pointee.disposition & AV_DISPOSITION_ATTACHED_PIC != 0
        var type = av_get_media_type_string(par.codec_type).map { String(cString: $0) } ?? "data"
        if attachedPicture { type = "attachment" }
        var s = MediaInfo.Stream(
            index: Int(stream.pointee.index), type: type, codec: String(cString: avcodec_get_name(par.codec_id)),
            profile: avcodec_profile_name(par.codec_id, par.profile).map { String(cString: $0) },
            bitRate: par.bit_rate > 0 ? Int(par.bit_rate) : nil)
        if let language = av_dict_get(stream.pointee.metadata, "language", nil, 0) {
            s.language = String(cString: language.pointee.value)
        }
        switch par.codec_type {
        case AVMEDIA_TYPE_VIDEO:
            s.width = Int(par.width)
            s.height = Int(par.height)
            let sar = av_guess_sample_aspect_ratio(ctx, stream, nil)
            let sarNum = sar.num > 0 && sar.den > 0 ? Int64(sar.num) : 1
            let sarDen = sar.num > 0 && sar.den > 0 ? Int64(sar.den) : 1
            if par.width > 0, par.height > 0 {
                var num: Int32 = 0
                var den: Int32 = 0
                av_reduce(&num, &den, Int64(par.width) * sarNum, Int64(par.height) * sarDen, 1 << 30)
                s.displayAspectRatio = "\(num):\(den)"
            }
            s.rotation = Self.rotation(of: stream)
            let rate = av_guess_frame_rate(ctx, stream, nil)
            if rate.num > 0, rate.den > 0 { s.frameRate = (av_q2d(rate) * 1000).rounded() / 1000 }
            if par.format >= 0, let name = av_get_pix_fmt_name(AVPixelFormat(rawValue: par.format)) {
                s.pixelFormat = String(cString: name)
            }
        case AVMEDIA_TYPE_AUDIO:
            s.sampleRate = Int(par.sample_rate)
            s.channels = Int(par.ch_layout.nb_channels)
        default:
            break
        }
        return s
    }

    /// The display matrix's rotation in degrees, counter-clockwise, as ffprobe reports it (`rotation` in the
    /// stream's side data): 90 and -90 are quarter turns, 0 when the matrix is absent or upright.
    static func rotation(of stream: UnsafeMutablePointer<AVStream>) -> Int {
        guard let matrix = av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, nil) else { return 0 }
        let theta = av_display_rotation_get(UnsafeRawPointer(matrix).assumingMemoryBound(to: Int32.self))
        return theta.isFinite ? Int(theta.rounded()) : 0
    }
}

/// The custom AVIOContext over a `MediaSource`. FFmpeg calls back with `opaque` = this object.
final class SourceIO {
    let source: any MediaSource
    private(set) var context: UnsafeMutablePointer<AVIOContext>?
    var position: Int64 = 0
    /// The first error the source threw (FFmpeg only sees "I/O error").
    var failure: MediaError?

    static let bufferSize: Int32 = 64 * 1024

    init(source: any MediaSource) throws(MediaError) {
        self.source = source
        guard let buffer = av_malloc(Int(Self.bufferSize)) else {
            throw MediaError(.sourceUnavailable, "out of memory")
        }
        context = avio_alloc_context(
            buffer.assumingMemoryBound(to: UInt8.self), Self.bufferSize, 0,
            Unmanaged.passUnretained(self).toOpaque(), SourceIO.readPacket, nil, SourceIO.seek)
        guard context != nil else {
            av_free(buffer)
            throw MediaError(.sourceUnavailable, "out of memory")
        }
    }

    deinit {
        if let context {
            av_freep(&context.pointee.buffer)
        }
        avio_context_free(&context)
    }

    static let readPacket: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutablePointer<UInt8>?, Int32) -> Int32 = {
        opaque, buffer, size in
        let io = Unmanaged<SourceIO>.fromOpaque(opaque!).takeUnretainedValue()
        guard let buffer, size > 0 else { return 0 }
        do {
            let n = try io.source.read(
                at: io.position, into: UnsafeMutableRawBufferPointer(start: buffer, count: Int(size)))
            if n == 0 { return cinescale_averror_eof() }
            io.position += Int64(n)
            return Int32(n)
        } catch {
            io.failure = io.failure ?? (error as? MediaError) ?? MediaError(.sourceUnavailable, "\(error)")
            return cinescale_averror(EIO)
        }
    }

    static let seek: @convention(c) (UnsafeMutableRawPointer?, Int64, Int32) -> Int64 = { opaque, offset, whence in
        let io = Unmanaged<SourceIO>.fromOpaque(opaque!).takeUnretainedValue()
        let size = io.source.size
        let mode = whence & ~cinescale_avseek_force()
        if mode == cinescale_avseek_size() { return size }
        let target: Int64
        switch mode {
        case SEEK_SET: target = offset
        case SEEK_CUR: target = io.position + offset
        case SEEK_END: target = size + offset
        default: return Int64(cinescale_averror(EINVAL))
        }
        guard target >= 0 else { return Int64(cinescale_averror(EINVAL)) }
        io.position = target
        return target
    }
}

enum FFmpegError {
    /// The error code's text, with FFmpeg's last error message on this thread when there is one (which it
    /// consumes): "moov atom not found (Invalid data found when processing input)".
    static func describe(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        av_make_error_string(&buffer, buffer.count, code)
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let said = FFmpegLog.take()
        return said.isEmpty ? text : "\(said) (\(text))"
    }
}

/// FFmpeg's log, captured per thread (error level and worse) instead of printed.
enum FFmpegLog {
    private static let once: Void = { cinescale_log_capture() }()

    /// Installs the capture (once per process) and forgets this thread's last message.
    static func start() {
        _ = once
        cinescale_log_clear()
    }

    /// This thread's last message, trimmed, then forgotten.
    static func take() -> String {
        let line = String(cString: cinescale_log_last()).trimmingCharacters(in: .whitespacesAndNewlines)
        cinescale_log_clear()
        return line
    }
}

/// Runs blocking FFmpeg work on a thread of its own, off the Swift concurrency pool.
enum MediaThread {
    static func run<T: Sendable>(_ work: @escaping @Sendable () throws(MediaError) -> T) async throws(MediaError) -> T {
        let result: Result<T, MediaError> = await withCheckedContinuation { continuation in
            let thread = Thread {
                continuation.resume(returning: Result { () throws(MediaError) -> T in try work() })
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        return try result.get()
    }
}
