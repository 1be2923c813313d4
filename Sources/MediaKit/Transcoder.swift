import CFFmpeg
import Foundation
import HLS

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

    /// A variant's CODECS: its picture's (the first of `video`'s) and every audio rendition's (RFC 8216
    /// 4.3.4.2: every format of every rendition a variant may play), each once.
    public static func variantCodecs(video: String, audio: [String]) -> String {
        var codecs = [String(video.split(separator: ",").first ?? Substring(video))]
        for track in audio where !codecs.contains(track) { codecs.append(track) }
        return codecs.joined(separator: ",")
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

}
