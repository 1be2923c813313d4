import CFFmpeg
import Foundation
import HLS

// The whole video's read loop (`TranscodeJob.run`), the rung stages' wiring, decoding and the judgement of
// damaged input; the job's set-up is in Transcoder.swift, a chunk's loop in TranscodeChunk.swift.

extension TranscodeJob {
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
            hls.codecs = Transcoder.variantCodecs(video: hls.codecs, audio: audioOutputs.map(\.codecs))
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
