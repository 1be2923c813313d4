import CFFmpeg
import Foundation
import HLS

/// A text subtitle stream of the source, decoded: its tags and its cues on the video's timeline (seconds from
/// the video stream's first picture, so they line up with the renditions).
public struct SubtitleTrack: Sendable, Hashable {
    /// The stream's index in the source.
    public var streamIndex: Int
    /// libavcodec's codec name (`mov_text`, `subrip`, `ass`, `webvtt`).
    public var codec: String
    /// The `language` tag (nil when absent or `und`).
    public var language: String?
    /// The `title` tag.
    public var title: String?
    public var cues: [WebVTT.Cue]

    /// What a player's menu shows: the title, else the language, else the stream's number.
    public var label: String { title ?? language ?? "Subtitles \(streamIndex)" }
}

/// A subtitle track written as WebVTT plus its one-segment media playlist, under the HLS directory.
public struct SubtitleOutput: Sendable, Hashable, Codable {
    /// The directory under `hls/` (`subs-1`), which is also the rendition's name.
    public var name: String
    public var language: String?
    public var label: String
    /// Paths relative to the HLS directory: `subs-1/index.m3u8` and `subs-1/captions.vtt`.
    public var playlist: String
    public var vtt: String
    public var cues: Int

    public var rendition: SubtitleRendition { SubtitleRendition(name: label, language: language, uri: playlist) }
}

/// Decoders of every text subtitle stream of an opened input: packets are handed over as they are demuxed
/// (the whole-video transcode's own read loop, or `Subtitles.extract`'s), cues collected per stream.
/// Bitmap subtitles (PGS, DVB, VobSub) are left out: they would need OCR to become WebVTT.
final class SubtitleDecoders {
    private struct Decoder {
        var index: Int32
        var context: UnsafeMutablePointer<AVCodecContext>
        var timeBase: AVRational
        var track: SubtitleTrack
    }

    private var decoders: [Decoder] = []
    /// The video's first picture, seconds on the source's timeline.
    private let origin: Double

    init(input context: UnsafeMutablePointer<AVFormatContext>) {
        var origin = 0.0
        let video = av_find_best_stream(context, AVMEDIA_TYPE_VIDEO, -1, -1, nil, 0)
        if video >= 0, let stream = context.pointee.streams[Int(video)],
            stream.pointee.start_time != cinescale_nopts_value()
        {
            origin = Double(stream.pointee.start_time) * av_q2d(stream.pointee.time_base)
        }
        self.origin = origin
        for i in 0..<Int(context.pointee.nb_streams) {
            guard let stream = context.pointee.streams[i], let parameters = stream.pointee.codecpar,
                parameters.pointee.codec_type == AVMEDIA_TYPE_SUBTITLE,
                let descriptor = avcodec_descriptor_get(parameters.pointee.codec_id),
                descriptor.pointee.props & AV_CODEC_PROP_TEXT_SUB != 0,
                let codec = avcodec_find_decoder(parameters.pointee.codec_id)
            else { continue }
            guard let decoder = avcodec_alloc_context3(codec) else { continue }
            var owned: UnsafeMutablePointer<AVCodecContext>? = decoder
            guard avcodec_parameters_to_context(decoder, parameters) >= 0 else {
                avcodec_free_context(&owned)
                continue
            }
            // Needed for the decoder to turn a packet's duration into the cue's end (end_display_time).
            decoder.pointee.pkt_timebase = stream.pointee.time_base
            guard avcodec_open2(decoder, codec, nil) >= 0 else {
                _ = FFmpegLog.take()
                avcodec_free_context(&owned)
                continue
            }
            stream.pointee.discard = AVDISCARD_DEFAULT
            let language = Self.tag(stream, "language").flatMap { $0 == "und" ? nil : $0 }
            decoders.append(
                Decoder(
                    index: Int32(i), context: decoder, timeBase: stream.pointee.time_base,
                    track: SubtitleTrack(
                        streamIndex: i, codec: String(cString: avcodec_get_name(parameters.pointee.codec_id)),
                        language: language,
                        title: Self.tag(stream, "title"), cues: [])))
        }
    }

    deinit {
        for decoder in decoders {
            var context: UnsafeMutablePointer<AVCodecContext>? = decoder.context
            avcodec_free_context(&context)
        }
    }

    var isEmpty: Bool { decoders.isEmpty }

    func handles(_ streamIndex: Int32) -> Bool { decoders.contains { $0.index == streamIndex } }

    /// Decodes `packet` if it belongs to a subtitle stream; a packet the decoder refuses is skipped (a damaged
    /// cue should not cost the video).
    func process(_ packet: UnsafeMutablePointer<AVPacket>) {
        guard let position = decoders.firstIndex(where: { $0.index == packet.pointee.stream_index }) else { return }
        let decoder = decoders[position]
        var subtitle = AVSubtitle()
        var got: Int32 = 0
        guard avcodec_decode_subtitle2(decoder.context, &subtitle, &got, packet) >= 0, got != 0 else {
            _ = FFmpegLog.take()
            return
        }
        defer { avsubtitle_free(&subtitle) }
        guard packet.pointee.pts != cinescale_nopts_value() else { return }
        let time = Double(packet.pointee.pts) * av_q2d(decoder.timeBase) - origin
        let start = time + Double(subtitle.start_display_time) / 1000
        var end = time + Double(subtitle.end_display_time) / 1000
        if subtitle.end_display_time == 0 || subtitle.end_display_time == UInt32.max || end <= start {
            end = start + max(0, Double(packet.pointee.duration) * av_q2d(decoder.timeBase))
        }
        var lines: [String] = []
        for r in 0..<Int(subtitle.num_rects) {
            guard let rect = subtitle.rects[r] else { continue }
            if let ass = rect.pointee.ass {
                lines.append(WebVTT.textOfASSDialogue(String(cString: ass)))
            } else if let text = rect.pointee.text {
                lines.append(String(cString: text))
            }
        }
        let text = lines.filter { !$0.isEmpty }.joined(separator: "\n")
        guard !text.isEmpty, end > 0 else { return }
        decoders[position].track.cues.append(WebVTT.Cue(start: max(0, start), end: end, text: text))
    }

    /// The tracks with their cues, in stream order.
    func finish() -> [SubtitleTrack] {
        decoders.map { decoder in
            var track = decoder.track
            track.cues.sort { $0.start < $1.start }
            return track
        }
    }

    static func tag(_ stream: UnsafeMutablePointer<AVStream>, _ key: String) -> String? {
        guard let entry = av_dict_get(stream.pointee.metadata, key, nil, 0), let value = entry.pointee.value else {
            return nil
        }
        let text = String(cString: value)
        return text.isEmpty ? nil : text
    }
}

public enum Subtitles {
    /// Reads `source` to its end (every packet demuxed, only subtitle packets decoded — no picture is decoded)
    /// and returns its text subtitle tracks: what the chunked transcode does once, in its finish step.
    public static func extract(source: any MediaSource) async throws(MediaError) -> [SubtitleTrack] {
        try await MediaThread.run { () throws(MediaError) -> [SubtitleTrack] in
            FFmpegLog.start()
            let file = try InputFile(source: source)
            let context = file.context!
            let decoders = SubtitleDecoders(input: context)
            if decoders.isEmpty { return [] }
            // Only the subtitle streams' packets are wanted: the demuxer skips handing over the rest.
            for i in 0..<Int(context.pointee.nb_streams) where !decoders.handles(Int32(i)) {
                context.pointee.streams[i]!.pointee.discard = AVDISCARD_ALL
            }
            guard let packet = av_packet_alloc() else { throw MediaError(.transcodeFailed, "out of memory") }
            var owned: UnsafeMutablePointer<AVPacket>? = packet
            defer { av_packet_free(&owned) }
            while true {
                let read = av_read_frame(context, packet)
                if read == cinescale_averror_eof() { break }
                if read < 0 {
                    if let failure = file.io.failure { throw failure }
                    break  // a damaged tail: the cues read so far stand
                }
                decoders.process(packet)
                av_packet_unref(packet)
            }
            return decoders.finish()
        }
    }

    /// Writes each track as `hlsDirectory/subs-N/captions.vtt` and its one-segment media playlist
    /// `subs-N/index.m3u8` (N from `firstNumber`), covering `duration` seconds.
    public static func write(
        _ tracks: [SubtitleTrack], hlsDirectory: String, duration: Double, firstNumber: Int = 1
    ) throws(MediaError) -> [SubtitleOutput] {
        var outputs: [SubtitleOutput] = []
        for (offset, track) in tracks.enumerated() {
            let name = "subs-\(firstNumber + offset)"
            let directory = "\(hlsDirectory)/\(name)"
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                try Data(WebVTT.document(track.cues).utf8).write(to: URL(fileURLWithPath: "\(directory)/captions.vtt"))
                try Data(Playlist.subtitleMedia(uri: "captions.vtt", duration: duration).utf8)
                    .write(to: URL(fileURLWithPath: "\(directory)/index.m3u8"))
            } catch {
                throw MediaError(.transcodeFailed, "writing the subtitles in \(directory): \(error)")
            }
            outputs.append(
                SubtitleOutput(
                    name: name, language: track.language, label: track.label, playlist: "\(name)/index.m3u8",
                    vtt: "\(name)/captions.vtt", cues: track.cues.count))
        }
        return outputs
    }
}
