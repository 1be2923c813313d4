import CFFmpeg
import Foundation
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

/// Decodes the source once and encodes every rung (H.264 via libx264; audio carried over when it is
/// already AAC, else encoded to AAC once) into a progressive MP4 with the index first (`+faststart`) and an
/// HLS rendition of fMP4 segments, keyframes aligned across rungs so segments line up for switching.
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

    /// Transcodes the file at `input` into `directory/<rung>.mp4` and `directory/hls/<rung>/` for each rung,
    /// `directory/hls/master.m3u8`, and, with `thumbnails`, the posters and the sprite from the same decoded
    /// frames; `progress` gets 0...1.
    public static func transcode(
        input: String, ladder: [Rung] = Rung.defaultLadder, settings: EncodingSettings = EncodingSettings(),
        thumbnails: ThumbnailSettings? = nil, directory: String,
        progress: @escaping @Sendable (Double) -> Void = { _ in }
    ) async throws(MediaError) -> TranscodeResult {
        try await MediaThread.run { () throws(MediaError) -> TranscodeResult in
            FFmpegLog.start()
            let job = try TranscodeJob(
                input: input, ladder: ladder, settings: settings, thumbnails: thumbnails, directory: directory)
            return try job.run(progress: progress)
        }
    }

    /// Encodes one chunk of the timeline — the frames shown in `chunk.start ..< chunk.end` — for every rung, into
    /// `directory/hls/<rung>/` as fMP4 segments numbered from `chunk.firstSegment`, reading `source` (ranged
    /// reads: it seeks to the keyframe at or before the start and never reads the rest). Every chunk's encoders
    /// start with an IDR and use the same settings, and its fragments carry the video's own timeline, so the
    /// segments of all chunks form one rendition with the first chunk's `init.mp4`. The source's AAC packets
    /// whose time falls in the range are muxed as they are (never re-encoded per chunk: an AAC encoder would
    /// prime every chunk with silence); any other audio is encoded, which only a single-chunk plan may ask for.
    /// With `thumbnails`, the posters and sprite tiles whose times fall in the range.
    ///
    /// Audio that is not carried is encoded once for the whole video (`encodeAudio`); a later chunk then takes
    /// its packets from that M4A (`audio`). The first chunk encodes its own range from the source, going on
    /// past its end by `TranscodeJob.audioLookahead` and keeping only the packets before it, which are the
    /// same packets the whole encode produces: it need not wait for the whole encode.
    public static func transcodeChunk(
        source: any MediaSource, chunk: ChunkRange, ladder: [Rung] = Rung.defaultLadder,
        settings: EncodingSettings = EncodingSettings(), thumbnails: ThumbnailSettings? = nil,
        audio: ChunkAudioSource? = nil,
        directory: String
    ) async throws(MediaError) -> ChunkResult {
        try await MediaThread.run { () throws(MediaError) -> ChunkResult in
            FFmpegLog.start()
            let file = try InputFile(source: source)
            let audioFile = try audio.map { (audio) throws(MediaError) in try InputFile(source: audio.source) }
            let job = try TranscodeJob(
                input: file, ladder: ladder, settings: settings, thumbnails: thumbnails, directory: directory,
                chunk: chunk,
                audio: audioFile.map { ($0, audio!.leadIn) })
            return try job.runChunk()
        }
    }
}

func check(_ code: Int32, _ what: @autoclosure () -> String) throws(MediaError) {
    guard code >= 0 else { throw MediaError(.transcodeFailed, "\(what()): \(FFmpegError.describe(code))") }
}

/// A muxer one rung writes to (its MP4, its HLS playlist), with its video and audio streams.
final class Muxer {
    let format: UnsafeMutablePointer<AVFormatContext>
    var video: UnsafeMutablePointer<AVStream>?
    var audio: UnsafeMutablePointer<AVStream>?

    init(format: UnsafeMutablePointer<AVFormatContext>) { self.format = format }

    deinit {
        if format.pointee.oformat.pointee.flags & AVFMT_NOFILE == 0, format.pointee.pb != nil {
            avio_closep(&format.pointee.pb)
        }
        avformat_free_context(format)
    }

    /// Writes a copy of `packet` (timestamps in `timeBase`) to `stream`.
    func write(
        _ packet: UnsafeMutablePointer<AVPacket>, timeBase: AVRational, to stream: UnsafeMutablePointer<AVStream>,
        _ what: @autoclosure () -> String
    ) throws(MediaError) {
        var copy: UnsafeMutablePointer<AVPacket>? = av_packet_clone(packet)
        guard let owned = copy else { throw MediaError(.transcodeFailed, "out of memory") }
        defer { av_packet_free(&copy) }
        owned.pointee.stream_index = stream.pointee.index
        owned.pointee.pos = -1
        av_packet_rescale_ts(owned, timeBase, stream.pointee.time_base)
        try check(av_interleaved_write_frame(format, owned), what())
    }
}

/// The state of one transcode; every pointer is freed in deinit.
final class TranscodeJob {
    var input: UnsafeMutablePointer<AVFormatContext>?
    var decoder: UnsafeMutablePointer<AVCodecContext>?
    var videoIndex: Int32 = -1
    var audio: AudioTrack?
    var outputs: [RungStage] = []
    var rungCount = 1
    let cascade: Bool
    let duration: Double
    let directory: String
    let frameRate: AVRational
    var thumbnails: ThumbnailCollector?
    var startTime: Int64 = 0
    /// In chunk mode, the part of the timeline this job encodes; `file` owns the ranged input then.
    let chunk: ChunkRange?
    let file: InputFile?
    /// Chunk mode with audio encoded once: the M4A the audio's packets come from, and the time of its first
    /// packet from the video's first frame.
    let audioFile: InputFile?
    let audioLeadIn: Double
    /// How far past its end the first chunk feeds its own AAC encoder: the encoder's packets before the end are
    /// then final (FFmpeg's AAC encoder looks one frame of 1024 samples ahead; the resampler a few more).
    static let audioLookahead = 1.0
    /// Chunk mode: the range in the video stream's time base, and whether the video and audio of the range
    /// have all been seen.
    var rangeStart: Int64 = 0
    var rangeEnd: Int64 = .max
    var videoDone = false
    var audioDone = false
    var audioPackets = 0
    /// Video packets read, packets or frames the decoder refused, frames decoded, and the latest frame time.
    var videoPackets = 0
    var damagedPackets = 0
    var decodedFrames = 0
    var lastFrameTime = 0.0
    /// The end of the last source audio packet read, on the video's timeline (seconds from its start): a file
    /// whose audio runs on past its last picture is intact, not truncated.
    var lastAudioTime = 0.0
    /// Set at the first interlaced picture (see ``Deinterlacer``).
    var deinterlacer: Deinterlacer?
    var deinterlacerFlushed = false
    /// The whole-video job's subtitle decoders, fed from its own read loop (a chunk reads only its range, so
    /// the chunked transcode extracts subtitles apart, once: `Subtitles.extract`).
    var subtitles: SubtitleDecoders?
    /// The ladder's audio as a rendition of its own (`hls/audio-N/`): the rungs' segments hold the picture only.
    var audioSegmenter: AudioSegmenter?
    var mainAudio: AudioOutput?
    /// The source file of a whole-video job (its other audio tracks are read from it after the ladder).
    var inputPath: String?
    let segmentSeconds: Double
    /// Where the video's first frame is on the segments' timeline, seconds: the H.264 encoder's reorder delay
    /// (B-frames), since the muxer starts the picture's decode times at 0. Every audio rendition is written on
    /// this timeline, so renditions in separate segments stay in sync.
    var videoDelay = 0.0

    convenience init(
        input path: String, ladder: [Rung], settings: EncodingSettings, thumbnails: ThumbnailSettings?,
        directory: String
    ) throws(MediaError) {
        var context: UnsafeMutablePointer<AVFormatContext>?
        let opened = avformat_open_input(&context, path, nil, nil)
        guard opened >= 0, let context else {
            throw MediaError(.unreadableMedia, "cannot open the source (\(FFmpegError.describe(opened)))")
        }
        let found = avformat_find_stream_info(context, nil)
        guard found >= 0 else {
            var owned: UnsafeMutablePointer<AVFormatContext>? = context
            avformat_close_input(&owned)
            throw MediaError(.unreadableMedia, "the streams could not be read (\(FFmpegError.describe(found)))")
        }
        try self.init(
            context: context, file: nil, ladder: ladder, settings: settings, thumbnails: thumbnails,
            directory: directory,
            chunk: nil, audio: nil)
        inputPath = path
    }

    /// A chunk's job over an opened ranged input (which it keeps, and which closes the context).
    convenience init(
        input file: InputFile, ladder: [Rung], settings: EncodingSettings, thumbnails: ThumbnailSettings?,
        directory: String,
        chunk: ChunkRange, audio: (file: InputFile, leadIn: Double)? = nil
    ) throws(MediaError) {
        try self.init(
            context: file.context!, file: file, ladder: ladder, settings: settings, thumbnails: thumbnails,
            directory: directory, chunk: chunk, audio: audio)
    }

    private init(
        context: UnsafeMutablePointer<AVFormatContext>, file: InputFile?, ladder: [Rung], settings: EncodingSettings,
        thumbnails: ThumbnailSettings?, directory: String, chunk: ChunkRange?,
        audio external: (file: InputFile, leadIn: Double)?
    ) throws(MediaError) {
        self.directory = directory
        self.chunk = chunk
        self.file = file
        audioFile = external?.file
        audioLeadIn = external?.leadIn ?? 0
        cascade = settings.cascade
        segmentSeconds = settings.keyframeInterval
        input = context
        duration = context.pointee.duration > 0 ? Double(context.pointee.duration) / Double(AV_TIME_BASE) : 0

        var codec: UnsafePointer<AVCodec>?
        videoIndex = av_find_best_stream(context, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0)
        guard videoIndex >= 0, let codec else {
            throw MediaError(.noVideoStream, "the source has no decodable video stream")
        }
        if let external {
            let encoded = external.file.context!
            let audioIndex = av_find_best_stream(encoded, AVMEDIA_TYPE_AUDIO, -1, -1, nil, 0)
            guard audioIndex >= 0 else { throw MediaError(.transcodeFailed, "the encoded audio has no audio stream") }
            audio = try AudioTrack(input: encoded, index: audioIndex)
        } else {
            if let audioIndex = AudioStreams.main(context, videoIndex: videoIndex) {
                audio = try AudioTrack(input: context, index: audioIndex)
            }
        }
        if let audio, let parameters = audio.parameters,
            let sourceIndex = AudioStreams.main(context, videoIndex: videoIndex)
        {
            // Named by the source's track (an encoded M4A stands in for it in later chunks).
            let position = AudioStreams.position(of: sourceIndex, in: context)
            let (language, title) = AudioStreams.tags(context.pointee.streams[Int(sourceIndex)]!)
            let name = AudioOutput.name(position: position)
            // The muxer cuts a segment `hls_time` after the first packet's time; the first chunk's first packet
            // is the AAC priming before 0, so a cut would fall one frame before the picture's boundary. That chunk
            // is one segment by construction (`TranscodePlan.cut`): it is never cut. A later chunk's first packet
            // is at or after its start, so its cuts never come before the picture's.
            audioSegmenter = try AudioSegmenter(
                directory: "\(directory)/hls/\(name)", parameters: parameters, timeBase: audio.timeBase,
                language: language,
                segmentSeconds: chunk?.index == 0 ? 1_000_000 : settings.keyframeInterval, chunk: chunk)
            mainAudio = AudioOutput(
                name: name, position: position, language: language, title: title, isMain: true,
                channels: Int(parameters.pointee.ch_layout.nb_channels),
                sampleRate: Int(parameters.pointee.sample_rate),
                codecs: audio.codecs, directory: "\(directory)/hls/\(name)", segments: [])
        }

        if chunk == nil {
            let decoders = SubtitleDecoders(input: context)
            if !decoders.isEmpty { subtitles = decoders }
        }
        let stream = context.pointee.streams[Int(videoIndex)]!
        decoder = avcodec_alloc_context3(codec)
        guard let decoder else { throw MediaError(.transcodeFailed, "out of memory") }
        try check(avcodec_parameters_to_context(decoder, stream.pointee.codecpar), "decoder parameters")
        // One frame thread per core (FFmpeg's automatic choice is one more): the rung stages keep the cores
        // busy anyway, and every frame thread holds a picture and its context (≈ 4 MB each at 1080p).
        decoder.pointee.thread_count = Int32(max(2, ProcessInfo.processInfo.activeProcessorCount))
        decoder.pointee.pkt_timebase = stream.pointee.time_base
        try check(avcodec_open2(decoder, codec, nil), "opening the decoder")

        let sourceWidth = Int(decoder.pointee.width)
        let sourceHeight = Int(decoder.pointee.height)
        guard sourceWidth > 0, sourceHeight > 0 else {
            throw MediaError(.unreadableMedia, "the video stream has no picture size")
        }
        let sar = av_guess_sample_aspect_ratio(context, stream, nil)
        let pixelAspect = sar.num > 0 && sar.den > 0 ? Double(sar.num) / Double(sar.den) : 1
        let aspect = Double(sourceWidth) * pixelAspect / Double(sourceHeight)
        var rate = av_guess_frame_rate(context, stream, nil)
        if rate.num <= 0 || rate.den <= 0 { rate = AVRational(num: 30, den: 1) }
        frameRate = rate
        let gop = max(1, Int32((av_q2d(rate) * settings.keyframeInterval).rounded()))
        if stream.pointee.start_time != cinescale_nopts_value() { startTime = stream.pointee.start_time }
        if let thumbnails, duration > 0 {
            self.thumbnails = try ThumbnailCollector(
                settings: thumbnails, directory: directory, duration: duration, sourceHeight: sourceHeight,
                aspect: aspect,
                from: chunk.map { $0.start - 1 / max(av_q2d(rate), 1) + 2e-6 } ?? 0)
        }

        let rungs = Transcoder.rungs(for: sourceHeight, ladder: ladder)
        rungCount = rungs.count
        for rung in rungs {
            let (w, h) = Transcoder.size(
                height: rung.height, sourceWidth: sourceWidth, sourceHeight: sourceHeight, aspect: aspect)
            let output = RungStage(
                rung: rung, width: Int32(w), height: Int32(h), path: "\(directory)/\(rung.name).mp4",
                hlsDirectory: "\(directory)/hls/\(rung.name)")
            outputs.append(output)
            try openEncoder(output, rate: rate, gop: gop, settings: settings)
            if chunk == nil {
                try openMuxer(output, format: "mp4", path: output.path, options: ["movflags": "+faststart"])
            }
            do {
                try FileManager.default.createDirectory(atPath: output.hlsDirectory, withIntermediateDirectories: true)
            } catch {
                throw MediaError(.transcodeFailed, "creating \(output.hlsDirectory): \(error)")
            }
            var hlsOptions = [
                "hls_segment_type": "fmp4", "hls_time": "\(settings.keyframeInterval)", "hls_playlist_type": "vod",
                "hls_flags": "independent_segments", "hls_fmp4_init_filename": "init.mp4",
                "hls_segment_filename": "\(output.hlsDirectory)/seg-%05d.m4s",
            ]
            if let chunk {
                hlsOptions["start_number"] = String(chunk.firstSegment)
                // A later chunk's fragments start where the timeline is (tfdt = the first packet's pts, and the
                // decode delay kept as the first chunk's), not at 0; the first chunk's init.mp4 serves them all.
                if chunk.index > 0 { hlsOptions["hls_segment_options"] = "movflags=+frag_discont" }
            }
            try openMuxer(output, format: "hls", path: "\(output.hlsDirectory)/index.m3u8", options: hlsOptions)
        }
        // The audio rendition on the picture's timeline (see `videoDelay`): the picture's segments start their
        // decode times at 0, so its first frame is at the encoder's reorder delay; the audio's samples are
        // written at their time from that frame plus the same delay (the AAC priming before it then stays
        // positive, and the muxer keeps the first packet's time as the init section's start). The first chunk
        // comes to `hand` on the video's timeline; a later chunk's fragments (frag_discont) are written relative
        // to the audio's first packet (see `runChunk`), which that start then places (measured: ChunkTests).
        if let audio, let audioSegmenter, let encoder = outputs.first?.encoder {
            videoDelay = Double(encoder.pointee.has_b_frames) / max(av_q2d(rate), 1)
            let delay = Self.ticks(videoDelay, audio.timeBase)
            switch chunk?.index {
            case nil: audioSegmenter.offset = delay - av_rescale_q(startTime, stream.pointee.time_base, audio.timeBase)
            case 0: audioSegmenter.offset = delay
            default: audioSegmenter.offset = 0
            }
        }
        if let chunk {
            let timeBase = stream.pointee.time_base
            rangeStart = startTime + Self.ticks(chunk.start, timeBase)
            if let end = chunk.end { rangeEnd = startTime + Self.ticks(end, timeBase) }
        }
    }

    static func ticks(_ seconds: Double, _ timeBase: AVRational) -> Int64 {
        Int64((seconds * Double(timeBase.den) / Double(timeBase.num)).rounded())
    }

    deinit {
        outputs.removeAll()
        audio = nil
        avcodec_free_context(&decoder)
        if file == nil, input != nil { avformat_close_input(&input) }
    }

    /// libx264 frame threads per rung: its automatic choice (1.5 per core) for each of several encoders
    /// oversubscribes the cores and holds more pictures in memory; the rungs together still get 1.5 per core.
    private var encoderThreads: Int32 {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        return Int32(max(2, (cores * 3 + 2 * rungCount - 1) / (2 * max(1, rungCount))))
    }

    private func openEncoder(_ output: RungStage, rate: AVRational, gop: Int32, settings: EncodingSettings)
        throws(MediaError)
    {
        guard let x264 = avcodec_find_encoder_by_name("libx264") else {
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
        encoder.pointee.thread_count = encoderThreads
        // MP4 and fMP4 both keep SPS/PPS in the header (avcC).
        encoder.pointee.flags |= AV_CODEC_FLAG_GLOBAL_HEADER
        var options: OpaquePointer?
        av_dict_set(&options, "preset", settings.preset, 0)
        av_dict_set(&options, "crf", String(output.rung.crf), 0)
        av_dict_set(&options, "x264-params", "scenecut=0:open-gop=0", 0)
        let opened = avcodec_open2(encoder, x264, &options)
        av_dict_free(&options)
        try check(opened, "opening libx264 for \(output.rung.name)")

        output.scaled = av_frame_alloc()
        output.scaled!.pointee.format = AV_PIX_FMT_YUV420P.rawValue
        output.scaled!.pointee.width = output.width
        output.scaled!.pointee.height = output.height
        try check(av_frame_get_buffer(output.scaled, 0), "frame buffer")
    }

    private func openMuxer(_ output: RungStage, format name: String, path: String, options: [String: String])
        throws(MediaError)
    {
        var allocated: UnsafeMutablePointer<AVFormatContext>?
        try check(avformat_alloc_output_context2(&allocated, nil, name, path), "creating \(path)")
        guard let format = allocated else { throw MediaError(.transcodeFailed, "creating \(path)") }
        let muxer = Muxer(format: format)
        output.muxers.append(muxer)
        let video = avformat_new_stream(format, nil)!
        try check(avcodec_parameters_from_context(video.pointee.codecpar, output.encoder), "stream parameters")
        video.pointee.time_base = output.encoder!.pointee.time_base
        video.pointee.avg_frame_rate = output.encoder!.pointee.framerate
        // A phone's portrait video is stored landscape with a rotation for players: the renditions keep it.
        if let input {
            let source = input.pointee.streams[Int(videoIndex)]!
            DisplayMatrix.copy(from: source, to: video)
            output.displayMatrix = DisplayMatrix.read(source)
        }
        muxer.video = video
        // The MP4 download carries the audio; the HLS rung holds the picture only (the audio has its own).
        if name != "hls", let audio, let parameters = audio.parameters {
            let stream = avformat_new_stream(format, nil)!
            try check(avcodec_parameters_copy(stream.pointee.codecpar, parameters), "audio parameters")
            stream.pointee.time_base = audio.timeBase
            if let language = mainAudio?.language { av_dict_set(&stream.pointee.metadata, "language", language, 0) }
            muxer.audio = stream
        }
        if format.pointee.oformat.pointee.flags & AVFMT_NOFILE == 0 {
            try check(avio_open(&format.pointee.pb, path, AVIO_FLAG_WRITE), "creating \(path)")
        }
        var dictionary: OpaquePointer?
        for (key, value) in options { av_dict_set(&dictionary, key, value, 0) }
        let written = avformat_write_header(format, &dictionary)
        av_dict_free(&dictionary)
        try check(written, "writing the header of \(path)")
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

        let failed = PipelineFailure()
        let roots = startStages(sourceTimeBase: videoTimeBase, failed: failed)

        var readError: MediaError?
        do throws(MediaError) {
            var lastReport = -1.0
            while !failed.isRaised {
                let read = av_read_frame(input, packet)
                if read == cinescale_averror_eof() { break }
                if read < 0 {
                    // A read error past a valid header (a cut or damaged file): what was read is judged below.
                    if decodedFrames > 0 { break }
                    throw MediaError(.corruptMedia, "the source could not be read (\(FFmpegError.describe(read)))")
                }
                defer { av_packet_unref(packet) }
                if packet.pointee.stream_index == videoIndex {
                    videoPackets += 1
                    // Damaged packets are skipped (and counted), as the ffmpeg CLI does; too many fail the job.
                    if avcodec_send_packet(decoder, packet) < 0 {
                        damagedPackets += 1
                        _ = FFmpegLog.take()
                    }
                    try drainDecoder(frame, to: roots)
                    if duration > 0, packet.pointee.pts != cinescale_nopts_value() {
                        let done = min(1, Double(packet.pointee.pts - startTime) * av_q2d(videoTimeBase) / duration)
                        if done - lastReport >= 0.01 {
                            lastReport = done
                            progress(done)
                        }
                    }
                } else if let audio, packet.pointee.stream_index == audio.sourceIndex {
                    noteAudio(packet, timeBase: audio.sourceTimeBase, videoTimeBase: videoTimeBase)
                    try audio.process(packet) { (encoded) throws(MediaError) in try hand(encoded, to: roots) }
                } else if let subtitles, subtitles.handles(packet.pointee.stream_index) {
                    subtitles.process(packet)
                }
            }
            if !failed.isRaised {
                avcodec_send_packet(decoder, nil)
                try drainDecoder(frame, to: roots)
                try audio?.finish { (encoded) throws(MediaError) in try hand(encoded, to: roots) }
            }
        } catch {
            readError = error
        }
        endStages(roots)
        if let readError { throw readError }
        try judgeDecoding()
        if let failure = outputs.lazy.compactMap(\.failure).first { throw failure }

        // Every audio track: the ladder's, written beside the rungs, then the others, read again from the file.
        var audioOutputs: [AudioOutput] = []
        if var main = mainAudio, let segmenter = audioSegmenter {
            main.segments = try segmenter.finish()
            if !main.segments.isEmpty { audioOutputs.append(main) }
        }
        var skippedAudio: [String] = []
        if let inputPath, AudioStreams.all(input!).count > 1 {
            let (extra, skipped) = try Transcoder.extraAudio(
                file: try InputFile(source: try FileSource(path: inputPath)), hlsDirectory: "\(directory)/hls",
                segmentSeconds: segmentSeconds, videoDelay: videoDelay)
            audioOutputs += extra
            skippedAudio = skipped
        }
        let audioPeak = audioOutputs.map(\.bitRates.peak).max() ?? 0
        let audioAverage = audioOutputs.first?.bitRates.average ?? 0

        var renditions: [Rendition] = []
        var variants: [Variant] = []
        for output in outputs {
            let size = Self.fileSize(output.path) ?? 0
            var hls = try hlsRendition(output)
            hls.bandwidth += audioPeak
            hls.averageBandwidth += audioAverage
            hls.codecs = Self.variantCodecs(video: hls.codecs, audio: audioOutputs)
            renditions.append(
                Rendition(
                    rung: output.rung, width: Int(output.width), height: Int(output.height), path: output.path,
                    size: size, bitRate: duration > 0 ? Int(Double(size * 8) / duration) : 0, duration: duration,
                    hls: hls))
            variants.append(
                Variant(
                    bandwidth: hls.bandwidth, averageBandwidth: hls.averageBandwidth, width: Int(output.width),
                    height: Int(output.height), codecs: hls.codecs, frameRate: hls.frameRate,
                    uri: "\(output.rung.name)/index.m3u8"))
        }
        let subtitleOutputs = try Subtitles.write(
            subtitles?.finish() ?? [], hlsDirectory: "\(directory)/hls", duration: duration)
        let master = "\(directory)/hls/master.m3u8"
        let masterText = Playlist.master(
            variants, audio: audioOutputs.map { $0.rendition() }, subtitles: subtitleOutputs.map(\.rendition))
        guard FileManager.default.createFile(atPath: master, contents: Data(masterText.utf8)) else {
            throw MediaError(.transcodeFailed, "cannot write \(master)")
        }
        let thumbs = try thumbnails?.finish()
        progress(1)
        return TranscodeResult(
            renditions: renditions, thumbnails: thumbs, hlsDirectory: "\(directory)/hls",
            damagedPackets: damagedPackets,
            subtitles: subtitleOutputs, audio: audioOutputs, skippedAudio: skippedAudio, videoDelay: videoDelay)
    }

    /// Wires the rung stages and starts their threads; returns the stages the decoder feeds.
    func startStages(sourceTimeBase: AVRational, failed: PipelineFailure) -> [RungStage] {
        let roots = Self.arrange(outputs, cascade: cascade)
        for stage in outputs {
            stage.start(
                sourceTimeBase: sourceTimeBase, audioTimeBase: audio?.timeBase ?? AVRational(num: 1, den: 1),
                failed: failed)
        }
        return roots
    }

    /// Ends every stage after the last picture and waits until each has flushed and written its trailers.
    func endStages(_ roots: [RungStage]) {
        for root in roots { root.input.push(.end) }
        for stage in outputs { stage.join() }
    }

    /// Wires the stages and returns the ones fed by the decoder. In cascade, a rung scales from the smallest
    /// larger rung at least twice its height (so the bicubic kernel still sees enough of the picture:
    /// 360p and 240p from 720p; 720p from the source), and from the source when there is none.
    static func arrange(_ stages: [RungStage], cascade: Bool) -> [RungStage] {
        guard cascade else { return stages }
        var roots: [RungStage] = []
        var placed: [RungStage] = []  // largest first
        for stage in stages.sorted(by: { $0.height > $1.height }) {
            if let parent = placed.last(where: { $0.height >= 2 * stage.height }) {
                parent.children.append(stage)
            } else {
                roots.append(stage)
            }
            placed.append(stage)
        }
        return roots
    }

    func hand(_ packet: UnsafeMutablePointer<AVPacket>, to roots: [RungStage]) throws(MediaError) {
        try audioSegmenter?.write(packet)
        // Only a whole transcode's MP4s carry audio; a chunk's rungs write HLS segments of the picture only.
        guard chunk == nil else { return }
        for root in roots {
            guard let copy = av_packet_clone(packet) else { throw MediaError(.transcodeFailed, "out of memory") }
            root.input.push(.audio(copy))
        }
    }

    /// Fails a transcode whose input was mostly undecodable or ends well before its stated duration, rather
    /// than publishing a rendition of grey frames or a cut-off video.
    /// Records how far the source's audio reaches (see ``lastAudioTime``).
    func noteAudio(_ packet: UnsafeMutablePointer<AVPacket>, timeBase: AVRational, videoTimeBase: AVRational) {
        let pts = packet.pointee.pts
        guard pts != cinescale_nopts_value() else { return }
        let end =
            Double(pts + max(0, packet.pointee.duration)) * av_q2d(timeBase) - Double(startTime) * av_q2d(videoTimeBase)
        lastAudioTime = max(lastAudioTime, end)
    }

    func judgeDecoding(until end: Double? = nil) throws(MediaError) {
        let duration = end ?? self.duration
        guard decodedFrames > 0 else {
            throw MediaError(
                .corruptMedia,
                "no picture could be decoded (\(damagedPackets) of \(videoPackets) video packets damaged)")
        }
        if damagedPackets > max(2, videoPackets / 10) {
            throw MediaError(
                .corruptMedia,
                "\(damagedPackets) of \(videoPackets) video packets could not be decoded; the file is damaged")
        }
        let frameDuration = 1 / max(av_q2d(frameRate), 1)
        // Where the file's media stop: the last picture, or the audio when it runs on past it (screen recordings
        // and trailers often have audio past the picture); a truncated file stops short of its duration in both.
        let reached = max(lastFrameTime + frameDuration, lastAudioTime)
        if duration > 0, reached < duration - max(1, duration * 0.05) {
            throw MediaError(
                .corruptMedia,
                "the video stops at \(Int(lastFrameTime)) s of its \(Int(duration.rounded())) s: the file is truncated or damaged"
            )
        }
    }

    func hlsRendition(_ output: RungStage) throws(MediaError) -> HLSRendition {
        let playlist = try readPlaylist(output)
        guard let rates = Playlist.bitRates(of: playlist, size: { Self.fileSize("\(output.hlsDirectory)/\($0)") })
        else {
            throw MediaError(.transcodeFailed, "the HLS segments of \(output.rung.name) are missing")
        }
        return HLSRendition(
            directory: output.hlsDirectory, segments: playlist.segments.count, bandwidth: rates.peak,
            averageBandwidth: rates.average, codecs: codecs(of: output), frameRate: av_q2d(frameRate))
    }

    /// A variant's CODECS: its picture's and every audio rendition's (RFC 8216 4.3.4.2: every format of every
    /// rendition a variant may play), each once.
    public static func variantCodecs(video: String, audio: [AudioOutput]) -> String {
        var codecs = [String(video.split(separator: ",").first ?? Substring(video))]
        for track in audio where !codecs.contains(track.codecs) { codecs.append(track.codecs) }
        return codecs.joined(separator: ",")
    }

    /// RFC 6381 codecs of a rung: `avc1.PPCCLL` from its encoder's SPS, and the audio's.
    func codecs(of output: RungStage) -> String {
        let encoder = output.encoder!.pointee
        let extradata =
            encoder.extradata.map { Array(UnsafeBufferPointer(start: $0, count: Int(encoder.extradata_size))) } ?? []
        var codecs = [Codecs.avc1(extradata: extradata) ?? "avc1.640028"]
        if let audio { codecs.append(audio.codecs) }
        return codecs.joined(separator: ",")
    }

    static func fileSize(_ path: String) -> Int64? {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value
    }

    /// Hands every picture the decoder has ready to the root stages (and the thumbnails).
    func drainDecoder(_ frame: UnsafeMutablePointer<AVFrame>, to roots: [RungStage]) throws(MediaError) {
        let sourceTimeBase = input!.pointee.streams[Int(videoIndex)]!.pointee.time_base
        while true {
            let received = avcodec_receive_frame(decoder, frame)
            if received == cinescale_averror(EAGAIN) { return }
            if received == cinescale_averror_eof() {
                // The decoder is drained: so is the deinterlacer, of the picture it held back.
                if let deinterlacer, !deinterlacerFlushed {
                    deinterlacerFlushed = true
                    try deinterlacer.flush()
                    while deinterlacer.pull(into: frame) {
                        defer { av_frame_unref(frame) }
                        try handleDecoded(frame, pts: frame.pointee.pts, to: roots, sourceTimeBase: sourceTimeBase)
                    }
                }
                return
            }
            if received < 0 {
                damagedPackets += 1
                _ = FFmpegLog.take()
                continue
            }
            // Interlaced pictures (broadcast, camcorders, DVD) are deinterlaced from the first one on.
            if deinterlacer == nil, frame.pointee.interlaced_frame != 0 {
                deinterlacer = try Deinterlacer(like: frame, timeBase: sourceTimeBase)
            }
            guard let deinterlacer else {
                defer { av_frame_unref(frame) }
                try handleDecoded(
                    frame, pts: frame.pointee.best_effort_timestamp, to: roots, sourceTimeBase: sourceTimeBase)
                continue
            }
            frame.pointee.pts = frame.pointee.best_effort_timestamp
            try deinterlacer.push(frame)
            av_frame_unref(frame)
            while deinterlacer.pull(into: frame) {
                defer { av_frame_unref(frame) }
                try handleDecoded(frame, pts: frame.pointee.pts, to: roots, sourceTimeBase: sourceTimeBase)
            }
        }
    }

    /// A decoded (and, if interlaced, deinterlaced) picture at `pts`: dropped outside a chunk's range, else
    /// handed to the rungs and the thumbnails.
    private func handleDecoded(
        _ frame: UnsafeMutablePointer<AVFrame>, pts: Int64, to roots: [RungStage], sourceTimeBase: AVRational
    ) throws(MediaError) {
        if chunk != nil, pts != cinescale_nopts_value() {
            // Frames before the range come from the keyframe the seek landed on; the first one at or past
            // its end means every frame of the range has come out (the decoder gives presentation order).
            if pts < rangeStart { return }
            if pts >= rangeEnd {
                videoDone = true
                return
            }
        }
        decodedFrames += 1
        // Chunk mode: the encoders' timeline starts at the video's first frame in every chunk alike.
        frame.pointee.pts = chunk != nil && pts != cinescale_nopts_value() ? pts - startTime : pts
        if pts != cinescale_nopts_value() {
            lastFrameTime = max(lastFrameTime, Double(pts - startTime) * av_q2d(sourceTimeBase))
        }
        for root in roots {
            guard let reference = av_frame_clone(frame) else { throw MediaError(.transcodeFailed, "out of memory") }
            root.input.push(.frame(reference))
        }
        if let thumbnails, pts != cinescale_nopts_value() {
            try thumbnails.offer(frame, time: Double(pts - startTime) * av_q2d(sourceTimeBase))
        }
    }
}

/// The part of a video's timeline one chunk invocation encodes: seconds from the first frame, on the keyframe
/// grid (a chunk boundary is a segment boundary), and the global number of its first segment.
public struct ChunkRange: Sendable, Hashable, Codable {
    public var index: Int
    public var start: Double
    /// nil: to the end of the video.
    public var end: Double?
    public var firstSegment: Int

    public init(index: Int, start: Double, end: Double?, firstSegment: Int) {
        self.index = index
        self.start = start
        self.end = end
        self.firstSegment = firstSegment
    }
}

/// What one chunk wrote.
public struct ChunkResult: Sendable, Hashable {
    public struct Segment: Sendable, Hashable, Codable {
        /// `seg-00012.m4s`.
        public var name: String
        public var duration: Double
        public var size: Int64
    }

    public struct RungOutput: Sendable, Hashable {
        public var rung: Rung
        public var width: Int
        public var height: Int
        /// RFC 6381 codecs, e.g. `avc1.64001e,mp4a.40.2`.
        public var codecs: String
        /// Holds `init.mp4` and the segments.
        public var directory: String
        public var segments: [Segment]
    }

    public var rungs: [RungOutput]
    /// The chunk's range of the ladder's audio, as segments of its own (nil: the source has no audio).
    public var audio: AudioOutput?
    public var thumbnails: Thumbnails?
    /// Pictures encoded (per rung) and audio packets muxed.
    public var frames: Int
    public var audioPackets: Int
    public var frameRate: Double
    /// Where the video's first frame is on the segments' timeline, seconds: see ``TranscodeJob/videoDelay``.
    public var videoDelay: Double = 0
}

extension TranscodeJob {
    func runChunk() throws(MediaError) -> ChunkResult {
        guard let chunk else { throw MediaError(.transcodeFailed, "not a chunk job") }
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

        // Audio timestamps: the first chunk writes them as they are (relative to the video's first frame), and
        // its init.mp4 keeps the source's start offset (the AAC priming its first packet carries) in the edit
        // list; a later chunk's fragments start at their first packet's own time (frag_discont), so its packets
        // are written relative to the audio's first packet for that same edit list to place them.
        // `audioOrigin` is the video's first frame in the audio's time base: a packet's time is `ts - audioOrigin`.
        let audioInput = audioFile?.context ?? input
        var audioOrigin: Int64 = 0
        var audioShift: Int64 = 0
        if let audio {
            audioOrigin = av_rescale_q(startTime, videoTimeBase, audio.sourceTimeBase)
            audioShift = audioOrigin
            if chunk.index > 0 {
                guard !audio.encodes else {
                    throw MediaError(
                        .transcodeFailed, "chunk \(chunk.index) needs the audio encoded once for the whole video")
                }
                var first: Int64?
                var reads = 0
                while first == nil, reads < 10_000, av_read_frame(audioInput, packet) >= 0 {
                    if packet.pointee.stream_index == audio.sourceIndex {
                        first = packet.pointee.dts != cinescale_nopts_value() ? packet.pointee.dts : packet.pointee.pts
                    }
                    av_packet_unref(packet)
                    reads += 1
                }
                if let first { audioShift = first }
                // The encoded M4A's first packet is `audioLeadIn` seconds from the video's first frame.
                if audioFile != nil { audioOrigin = audioShift - Self.ticks(audioLeadIn, audio.sourceTimeBase) }
            }
        }
        if chunk.index > 0 || chunk.start > 0 {
            // To the keyframe at or before the range's start.
            let sought = av_seek_frame(input, videoIndex, rangeStart, AVSEEK_FLAG_BACKWARD)
            guard sought >= 0 else {
                throw MediaError(.corruptMedia, "cannot seek to \(chunk.start) s (\(FFmpegError.describe(sought)))")
            }
            avcodec_flush_buffers(decoder)
        }
        if let audio, audioFile != nil {
            // A little before the range (every AAC packet is a keyframe); the packets before it are skipped below.
            let target = audioOrigin + Self.ticks(max(0, chunk.start - 1), audio.sourceTimeBase)
            let sought = av_seek_frame(audioInput, audio.sourceIndex, target, AVSEEK_FLAG_BACKWARD)
            guard sought >= 0 else {
                throw MediaError(
                    .transcodeFailed,
                    "cannot seek the encoded audio to \(chunk.start) s (\(FFmpegError.describe(sought)))")
            }
        }

        let failed = PipelineFailure()
        let roots = startStages(sourceTimeBase: videoTimeBase, failed: failed)
        // The first chunk of audio encoded here runs its encoder past the end and keeps the packets before it.
        let trimmedEnd = audio?.encodes == true ? chunk.end : nil
        let emit = { [self] (encoded: UnsafeMutablePointer<AVPacket>) throws(MediaError) in
            if let trimmedEnd, let audio, Double(encoded.pointee.pts) * av_q2d(audio.timeBase) >= trimmedEnd { return }
            audioPackets += 1
            try hand(encoded, to: roots)
        }
        var audioClock = -Double.infinity
        /// One packet of the audio's input: each belongs to exactly one chunk, the one whose [start, end) holds
        /// its time (the first chunk also takes what precedes the video's first frame).
        func take(_ packet: UnsafeMutablePointer<AVPacket>, of audio: AudioTrack) throws(MediaError) {
            let ts = packet.pointee.pts != cinescale_nopts_value() ? packet.pointee.pts : packet.pointee.dts
            guard ts != cinescale_nopts_value() else { return }
            let time = Double(ts - audioOrigin) * av_q2d(audio.sourceTimeBase)
            audioClock = time
            if let end = chunk.end, time >= end + (trimmedEnd != nil ? Self.audioLookahead : 0) {
                audioDone = true
                return
            }
            if chunk.index > 0, time < chunk.start { return }
            if packet.pointee.pts != cinescale_nopts_value() { packet.pointee.pts -= audioShift }
            if packet.pointee.dts != cinescale_nopts_value() { packet.pointee.dts -= audioShift }
            try audio.process(packet, emit: emit)
        }
        /// With the audio in a file of its own: its packets up to `time`, read beside the video's.
        var audioPacket = audioFile != nil ? av_packet_alloc() : nil
        defer { av_packet_free(&audioPacket) }
        func pumpAudio(until time: Double) throws(MediaError) {
            guard let audio, let audioFile, let audioPacket else { return }
            while !audioDone, audioClock < time {
                let read = av_read_frame(audioInput, audioPacket)
                if read == cinescale_averror_eof() {
                    audioDone = true
                    return
                }
                if read < 0 {
                    throw audioFile.io.failure
                        ?? MediaError(
                            .transcodeFailed, "the encoded audio could not be read (\(FFmpegError.describe(read)))")
                }
                defer { av_packet_unref(audioPacket) }
                if audioPacket.pointee.stream_index == audio.sourceIndex { try take(audioPacket, of: audio) }
            }
        }

        var readError: MediaError?
        do throws(MediaError) {
            var reachedEnd = false
            while !failed.isRaised, !(videoDone && (audio == nil || audioDone || audioFile != nil)) {
                let read = av_read_frame(input, packet)
                if read == cinescale_averror_eof() {
                    reachedEnd = true
                    break
                }
                if read < 0 {
                    if let failure = file?.io.failure { throw failure }
                    if decodedFrames > 0 {
                        reachedEnd = true
                        break
                    }
                    throw MediaError(.corruptMedia, "the source could not be read (\(FFmpegError.describe(read)))")
                }
                defer { av_packet_unref(packet) }
                if packet.pointee.stream_index == videoIndex {
                    guard !videoDone else { continue }
                    if audioFile != nil, packet.pointee.dts != cinescale_nopts_value() {
                        // Keep the audio a second ahead of the video, so the muxers interleave without buffering.
                        try pumpAudio(until: Double(packet.pointee.dts - startTime) * av_q2d(videoTimeBase) + 1)
                    }
                    videoPackets += 1
                    if avcodec_send_packet(decoder, packet) < 0 {
                        damagedPackets += 1
                        _ = FFmpegLog.take()
                    }
                    try drainDecoder(frame, to: roots)
                } else if let audio, packet.pointee.stream_index == audio.sourceIndex {
                    noteAudio(packet, timeBase: audio.sourceTimeBase, videoTimeBase: videoTimeBase)
                    if audioFile == nil, !audioDone { try take(packet, of: audio) }
                }
            }
            if reachedEnd, !failed.isRaised {
                avcodec_send_packet(decoder, nil)
                try drainDecoder(frame, to: roots)
            }
            if !failed.isRaised {
                try pumpAudio(until: .infinity)
                try audio?.finish(emit: emit)
            }
        } catch {
            readError = error
        }
        endStages(roots)
        if let readError { throw readError }
        try judgeDecoding(until: chunk.end.map { min($0, duration) } ?? duration)
        if let failure = outputs.lazy.compactMap(\.failure).first { throw failure }

        var rungs: [ChunkResult.RungOutput] = []
        for output in outputs {
            let playlist = try readPlaylist(output)
            var segments: [ChunkResult.Segment] = []
            for segment in playlist.segments {
                guard let size = Self.fileSize("\(output.hlsDirectory)/\(segment.uri)") else {
                    throw MediaError(.transcodeFailed, "the segment \(segment.uri) of \(output.rung.name) is missing")
                }
                segments.append(.init(name: segment.uri, duration: segment.duration, size: size))
            }
            rungs.append(
                .init(
                    rung: output.rung, width: Int(output.width), height: Int(output.height), codecs: codecs(of: output),
                    directory: output.hlsDirectory, segments: segments))
        }
        var audioOutput = mainAudio
        if let segmenter = audioSegmenter { audioOutput?.segments = try segmenter.finish() }
        return ChunkResult(
            rungs: rungs, audio: audioOutput, thumbnails: try thumbnails?.finish(), frames: decodedFrames,
            audioPackets: audioPackets, frameRate: av_q2d(frameRate), videoDelay: videoDelay)
    }

    func readPlaylist(_ output: RungStage) throws(MediaError) -> MediaPlaylist {
        let path = "\(output.hlsDirectory)/index.m3u8"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MediaError(.transcodeFailed, "the HLS playlist of \(output.rung.name) was not written")
        }
        do {
            return try MediaPlaylist(parsing: String(decoding: data, as: UTF8.self))
        } catch {
            throw MediaError(.transcodeFailed, "the HLS playlist of \(output.rung.name): \(error.message)")
        }
    }
}
