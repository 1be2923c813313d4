import CFFmpeg
import Foundation

/// Joins what chunk invocations wrote into what a finished video offers: a progressive MP4 per rung from
/// its HLS segments (stream copy, never a re-encode) and one sprite from the chunks' partial sprites.
public enum Assembly {
    /// Writes a progressive MP4 with its index first (`+faststart`) at `output` from an fMP4 init section and
    /// media segments in order (the init section and segments, concatenated, are one fragmented MP4), and, with
    /// `audio`, an audio rendition's init section and segments beside them (the picture's segments hold no
    /// audio), remuxed packet by packet and interleaved. Returns the file's size and duration.
    public static func progressiveMP4(
        initSection: String, segments: [String], audio: (initSection: String, segments: [String])? = nil, output: String
    ) async throws(MediaError) -> (size: Int64, duration: Double) {
        try await MediaThread.run { () throws(MediaError) -> (size: Int64, duration: Double) in
            FFmpegLog.start()
            var parts = [(output + ".fragmented.mp4", [initSection] + segments)]
            if let audio { parts.append((output + ".audio.mp4", [audio.initSection] + audio.segments)) }
            defer { for part in parts { try? FileManager.default.removeItem(atPath: part.0) } }
            for part in parts { try concatenate(part.1, into: part.0) }
            let duration = try remux(parts.map(\.0), to: output)
            return (TranscodeJob.fileSize(output) ?? 0, duration)
        }
    }

    static func concatenate(_ paths: [String], into target: String) throws(MediaError) {
        guard FileManager.default.createFile(atPath: target, contents: nil),
            let out = FileHandle(forWritingAtPath: target)
        else {
            throw MediaError(.transcodeFailed, "cannot create \(target)")
        }
        defer { try? out.close() }
        for path in paths {
            guard let input = FileHandle(forReadingAtPath: path) else {
                throw MediaError(.transcodeFailed, "cannot read \(path)")
            }
            defer { try? input.close() }
            do {
                while let data = try input.read(upToCount: 4 << 20), !data.isEmpty { try out.write(contentsOf: data) }
            } catch {
                throw MediaError(.transcodeFailed, "joining \(path): \(error)")
            }
        }
    }

    /// One fragmented input of `remux`, with its next packet read ahead (for interleaving by time).
    private final class RemuxInput {
        var context: UnsafeMutablePointer<AVFormatContext>?
        var streams: [UnsafeMutablePointer<AVStream>?] = []
        var packet: UnsafeMutablePointer<AVPacket>? = av_packet_alloc()
        var pending = false
        var ended = false

        init(_ path: String) throws(MediaError) {
            try check(avformat_open_input(&context, path, nil, nil), "opening the joined segments")
            try check(avformat_find_stream_info(context, nil), "reading the joined segments")
        }

        deinit {
            av_packet_free(&packet)
            avformat_close_input(&context)
        }

        /// Reads the next packet unless one is waiting; false at the end.
        func fill() throws(MediaError) -> Bool {
            if pending { return true }
            if ended { return false }
            let read = av_read_frame(context, packet)
            if read == cinescale_averror_eof() {
                ended = true
                return false
            }
            try check(read, "reading the joined segments")
            pending = true
            return true
        }

        /// The waiting packet's decode time, seconds.
        var time: Double {
            let p = packet!.pointee
            let ts = p.dts != cinescale_nopts_value() ? p.dts : p.pts
            return ts == cinescale_nopts_value()
                ? 0 : Double(ts) * av_q2d(context!.pointee.streams[Int(p.stream_index)]!.pointee.time_base)
        }
    }

    /// Copies every audio and video stream of the fragmented files at `paths` into one MP4 at `output` with
    /// `+faststart`, interleaved by decode time; returns the duration.
    static func remux(_ paths: [String], to output: String) throws(MediaError) -> Double {
        var inputs: [RemuxInput] = []
        for path in paths { inputs.append(try RemuxInput(path)) }
        var allocated: UnsafeMutablePointer<AVFormatContext>?
        try check(avformat_alloc_output_context2(&allocated, nil, "mp4", output), "creating \(output)")
        guard let format = allocated else { throw MediaError(.transcodeFailed, "creating \(output)") }
        let muxer = Muxer(format: format)
        // The fragmented inputs' times are the fragments' decode times, which carry the encoder's delay (the
        // edit list that hides it is not applied to fragments): the video's first picture sets time zero, and
        // every stream moves by the same amount, so A/V sync and the audio's priming stay as they were.
        var origin = 0.0
        for input in inputs {
            let context = input.context!
            for index in 0..<Int(context.pointee.nb_streams) {
                let source = context.pointee.streams[index]!
                let type = source.pointee.codecpar.pointee.codec_type
                guard type == AVMEDIA_TYPE_VIDEO || type == AVMEDIA_TYPE_AUDIO else {
                    input.streams.append(nil)
                    continue
                }
                if type == AVMEDIA_TYPE_VIDEO, source.pointee.start_time != cinescale_nopts_value() {
                    origin = Double(source.pointee.start_time) * av_q2d(source.pointee.time_base)
                }
                let stream = avformat_new_stream(format, nil)!
                try check(
                    avcodec_parameters_copy(stream.pointee.codecpar, source.pointee.codecpar), "stream parameters")
                stream.pointee.codecpar.pointee.codec_tag = 0
                stream.pointee.time_base = source.pointee.time_base
                if let language = av_dict_get(source.pointee.metadata, "language", nil, 0) {
                    av_dict_set(&stream.pointee.metadata, "language", language.pointee.value, 0)
                }
                DisplayMatrix.copy(from: source, to: stream)
                input.streams.append(stream)
            }
        }
        try check(avio_open(&format.pointee.pb, output, AVIO_FLAG_WRITE), "creating \(output)")
        var options: OpaquePointer?
        av_dict_set(&options, "movflags", "+faststart", 0)
        let written = avformat_write_header(format, &options)
        av_dict_free(&options)
        try check(written, "writing the header of \(output)")
        while true {
            // The input whose next packet comes first.
            var next: RemuxInput?
            for input in inputs where try input.fill() {
                if next == nil || input.time < next!.time { next = input }
            }
            guard let input = next, let packet = input.packet else { break }
            defer {
                av_packet_unref(packet)
                input.pending = false
            }
            let index = Int(packet.pointee.stream_index)
            guard index < input.streams.count, let stream = input.streams[index] else { continue }
            let timeBase = input.context!.pointee.streams[index]!.pointee.time_base
            let shift = Int64((origin / av_q2d(timeBase)).rounded())
            if packet.pointee.pts != cinescale_nopts_value() { packet.pointee.pts -= shift }
            if packet.pointee.dts != cinescale_nopts_value() { packet.pointee.dts -= shift }
            try muxer.write(packet, timeBase: timeBase, to: stream, "writing \(output)")
        }
        try check(av_write_trailer(format), "finishing \(output)")
        let durations = inputs.map { $0.context!.pointee.duration }.filter { $0 > 0 }
        return (durations.max()).map { Double($0) / Double(AV_TIME_BASE) } ?? 0
    }

    /// One part of a storyboard: a sprite a chunk wrote, of which it drew tiles `firstTile ..< firstTile + count`.
    public struct SpritePart: Sendable, Hashable {
        public var path: String
        public var firstTile: Int
        public var count: Int

        public init(path: String, firstTile: Int, count: Int) {
            self.path = path
            self.firstTile = firstTile
            self.count = count
        }
    }

    /// Writes one sprite at `output` holding every part's tiles (all parts share the layout: `columns` tiles a
    /// row of `tileWidth`×`tileHeight`).
    public static func sprite(
        parts: [SpritePart], columns: Int, tileWidth: Int, tileHeight: Int, output: String
    ) async throws(MediaError) {
        try await MediaThread.run { () throws(MediaError) in
            FFmpegLog.start()
            guard let first = parts.first else { throw MediaError(.transcodeFailed, "no sprite to join") }
            var target: UnsafeMutablePointer<AVFrame>? = try decodeJPEG(first.path)
            defer { av_frame_free(&target) }
            try check(av_frame_make_writable(target), "sprite buffer")
            for part in parts.dropFirst() {
                var picture: UnsafeMutablePointer<AVFrame>? = try decodeJPEG(part.path)
                defer { av_frame_free(&picture) }
                guard picture!.pointee.width == target!.pointee.width,
                    picture!.pointee.height == target!.pointee.height,
                    picture!.pointee.format == target!.pointee.format
                else { throw MediaError(.transcodeFailed, "the chunks' sprites differ in size") }
                for tile in part.firstTile..<(part.firstTile + part.count) {
                    copyTile(
                        from: picture!, to: target!, x: (tile % columns) * tileWidth, y: (tile / columns) * tileHeight,
                        width: tileWidth, height: tileHeight)
                }
            }
            try ThumbnailCollector.writeJPEG(target!, to: output)
        }
    }

    static func decodeJPEG(_ path: String) throws(MediaError) -> UnsafeMutablePointer<AVFrame> {
        var input: UnsafeMutablePointer<AVFormatContext>?
        try check(avformat_open_input(&input, path, nil, nil), "opening \(path)")
        defer { avformat_close_input(&input) }
        guard input!.pointee.nb_streams > 0, let parameters = input!.pointee.streams[0]!.pointee.codecpar,
            let codec = avcodec_find_decoder(parameters.pointee.codec_id)
        else { throw MediaError(.transcodeFailed, "\(path) is not an image") }
        var decoder: UnsafeMutablePointer<AVCodecContext>? = avcodec_alloc_context3(codec)
        defer { avcodec_free_context(&decoder) }
        try check(avcodec_parameters_to_context(decoder, parameters), "decoder parameters")
        try check(avcodec_open2(decoder, codec, nil), "opening the JPEG decoder")
        var packet: UnsafeMutablePointer<AVPacket>? = av_packet_alloc()
        defer { av_packet_free(&packet) }
        try check(av_read_frame(input, packet), "reading \(path)")
        try check(avcodec_send_packet(decoder, packet), "decoding \(path)")
        av_packet_unref(packet)
        avcodec_send_packet(decoder, nil)
        var frame: UnsafeMutablePointer<AVFrame>? = av_frame_alloc()
        let received = avcodec_receive_frame(decoder, frame)
        guard received >= 0, AVPixelFormat(rawValue: frame!.pointee.format) == AV_PIX_FMT_YUVJ420P else {
            av_frame_free(&frame)
            throw MediaError(.transcodeFailed, "\(path) did not decode as a 4:2:0 JPEG")
        }
        return frame!
    }

    /// Copies the rectangle at (x, y) (even) of a 4:2:0 picture into the same place of another.
    static func copyTile(
        from source: UnsafeMutablePointer<AVFrame>, to target: UnsafeMutablePointer<AVFrame>, x: Int, y: Int,
        width: Int, height: Int
    ) {
        let sourcePlanes = [source.pointee.data.0, source.pointee.data.1, source.pointee.data.2]
        let targetPlanes = [target.pointee.data.0, target.pointee.data.1, target.pointee.data.2]
        let sourceLines = [source.pointee.linesize.0, source.pointee.linesize.1, source.pointee.linesize.2].map(
            Int.init)
        let targetLines = [target.pointee.linesize.0, target.pointee.linesize.1, target.pointee.linesize.2].map(
            Int.init)
        let pictureWidth = Int(target.pointee.width)
        let pictureHeight = Int(target.pointee.height)
        for plane in 0..<3 {
            let shift = plane == 0 ? 0 : 1
            let px = x >> shift
            let py = y >> shift
            let w = min(width >> shift, ((pictureWidth + shift) >> shift) - px)
            let h = min(height >> shift, ((pictureHeight + shift) >> shift) - py)
            guard w > 0, h > 0, let from = sourcePlanes[plane], let to = targetPlanes[plane] else { continue }
            for row in 0..<h {
                memcpy(to + (py + row) * targetLines[plane] + px, from + (py + row) * sourceLines[plane] + px, w)
            }
        }
    }
}
