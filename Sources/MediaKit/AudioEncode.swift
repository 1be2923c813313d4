import CFFmpeg
import Foundation

/// The source's audio encoded once, for a chunked transcode of a source whose audio is not AAC: one AAC
/// encoder over the whole timeline (an encoder per chunk would prime every chunk with silence and click at
/// every boundary), whose packets each chunk then muxes for its own range.
public struct EncodedAudio: Sendable, Hashable, Codable {
    /// AAC packets written.
    public var packets: Int
    public var sampleRate: Int
    /// Seconds from the video's first frame to the first packet's presentation time (negative: the encoder's
    /// priming, which every chunk's edit list removes).
    public var leadIn: Double
    /// Seconds of audio (the packets' total duration).
    public var duration: Double
    /// RFC 6381 codec string, `mp4a.40.2`.
    public var codecs: String
    /// Bytes of the M4A written.
    public var size: Int64

    public init(packets: Int, sampleRate: Int, leadIn: Double, duration: Double, codecs: String, size: Int64) {
        self.packets = packets
        self.sampleRate = sampleRate
        self.leadIn = leadIn
        self.duration = duration
        self.codecs = codecs
        self.size = size
    }
}

/// An encoded audio track a chunk reads instead of the source's audio: the M4A `Transcoder.encodeAudio` wrote,
/// and its `leadIn`.
public struct ChunkAudioSource: Sendable {
    public var source: any MediaSource
    public var leadIn: Double

    public init(source: any MediaSource, leadIn: Double) {
        self.source = source
        self.leadIn = leadIn
    }
}

extension Transcoder {
    /// Decodes the audio the ladder would carry (the same stream, decoder, resampler and AAC encoder as
    /// `transcode` and `transcodeChunk`) and writes it once as a faststart M4A at `output`. The timestamps are
    /// the video's (its first frame is 0), as a chunk encodes them; the first chunk, which encodes its own audio
    /// from the source so it need not wait for this, emits the very same packets for its range (the encoder is
    /// deterministic and looks ahead less than `TranscodeJob.audioLookahead`). Reads the whole source: demuxing
    /// cannot skip the video's bytes in general.
    public static func encodeAudio(source: any MediaSource, output: String) async throws(MediaError) -> EncodedAudio {
        try await MediaThread.run { () throws(MediaError) -> EncodedAudio in
            FFmpegLog.start()
            let file = try InputFile(source: source)
            return try AudioEncodeJob(file: file, output: output).run()
        }
    }
}

/// One `encodeAudio`; every pointer is owned and freed in deinit.
private final class AudioEncodeJob {
    let file: InputFile
    let audio: AudioTrack
    let muxer: Muxer
    let stream: UnsafeMutablePointer<AVStream>
    /// The video's first frame, in the source audio's time base (0 without video).
    let origin: Int64
    let output: String

    init(file: InputFile, output: String) throws(MediaError) {
        self.file = file
        self.output = output
        let context = file.context!
        let videoIndex = av_find_best_stream(context, AVMEDIA_TYPE_VIDEO, -1, -1, nil, 0)
        let audioIndex = av_find_best_stream(context, AVMEDIA_TYPE_AUDIO, -1, videoIndex, nil, 0)
        guard audioIndex >= 0 else { throw MediaError(.unreadableMedia, "the source has no audio stream") }
        audio = try AudioTrack(input: context, index: audioIndex)
        var start: Int64 = 0
        if videoIndex >= 0, let video = context.pointee.streams[Int(videoIndex)],
            video.pointee.start_time != cinescale_nopts_value()
        {
            start = av_rescale_q(video.pointee.start_time, video.pointee.time_base, audio.sourceTimeBase)
        }
        origin = start
        // Only the audio's packets are wanted: the demuxer skips the others' payloads where it can.
        for index in 0..<Int(context.pointee.nb_streams) where index != Int(audioIndex) {
            context.pointee.streams[index]!.pointee.discard = AVDISCARD_ALL
        }

        var allocated: UnsafeMutablePointer<AVFormatContext>?
        try check(avformat_alloc_output_context2(&allocated, nil, "mp4", output), "creating \(output)")
        guard let format = allocated else { throw MediaError(.transcodeFailed, "creating \(output)") }
        muxer = Muxer(format: format)
        guard let stream = avformat_new_stream(format, nil) else { throw MediaError(.transcodeFailed, "out of memory") }
        try check(avcodec_parameters_copy(stream.pointee.codecpar, audio.parameters), "audio parameters")
        stream.pointee.time_base = audio.timeBase
        self.stream = stream
        muxer.audio = stream
        try check(avio_open(&format.pointee.pb, output, AVIO_FLAG_WRITE), "creating \(output)")
        var options: OpaquePointer?
        av_dict_set(&options, "movflags", "+faststart", 0)
        let written = avformat_write_header(format, &options)
        av_dict_free(&options)
        try check(written, "writing the header of \(output)")
    }

    func run() throws(MediaError) -> EncodedAudio {
        var packet = av_packet_alloc()
        defer { av_packet_free(&packet) }
        guard let packet else { throw MediaError(.transcodeFailed, "out of memory") }
        var first: Int64?
        var last: Int64 = 0
        var count = 0
        let timeBase = audio.timeBase
        let write = { [muxer, stream] (encoded: UnsafeMutablePointer<AVPacket>) throws(MediaError) in
            if first == nil { first = encoded.pointee.pts }
            last = max(last, encoded.pointee.pts + encoded.pointee.duration)
            count += 1
            try muxer.write(encoded, timeBase: timeBase, to: stream, "writing the audio")
        }
        while true {
            let read = av_read_frame(file.context, packet)
            if read == cinescale_averror_eof() { break }
            if read < 0 {
                if let failure = file.io.failure { throw failure }
                if count > 0 { break }  // a damaged tail: what was read is kept, as the video's chunks do
                throw MediaError(.corruptMedia, "the source's audio could not be read (\(FFmpegError.describe(read)))")
            }
            defer { av_packet_unref(packet) }
            guard packet.pointee.stream_index == audio.sourceIndex else { continue }
            // The video's timeline, as a chunk shifts the packets it encodes.
            if packet.pointee.pts != cinescale_nopts_value() { packet.pointee.pts -= origin }
            if packet.pointee.dts != cinescale_nopts_value() { packet.pointee.dts -= origin }
            try audio.process(packet, emit: write)
        }
        try audio.finish(emit: write)
        try check(av_write_trailer(muxer.format), "finishing the audio")
        guard let first, count > 0 else { throw MediaError(.unreadableMedia, "the source's audio holds no sound") }
        return EncodedAudio(
            packets: count, sampleRate: Int(audio.parameters!.pointee.sample_rate),
            leadIn: Double(first) * av_q2d(timeBase),
            duration: Double(last - first) * av_q2d(timeBase), codecs: audio.codecs,
            size: TranscodeJob.fileSize(output) ?? 0)
    }
}
