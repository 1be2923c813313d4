import CFFmpeg
import Foundation
import HLS

// A chunk of the timeline: what `Transcoder.transcodeChunk` encodes and returns, and the job's read loop for
// it (beside `TranscodeJob.run`, the whole video's, in Transcoder.swift).

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
