import CFFmpeg
import Foundation
import HLS

/// One audio rendition: an audio track of the source as AAC in fMP4 segments of its own under
/// `hls/audio-N/` (N: the track's place among the source's audio streams, from 1). The picture's segments hold
/// no audio, so one set of segments serves HLS (alternate audio) and DASH (an adaptation set per track) alike.
public struct AudioOutput: Sendable, Hashable, Codable {
    /// `audio-2`: the directory under `hls/` and the rendition's name.
    public var name: String
    public var position: Int
    public var language: String?
    public var title: String?
    /// The track the ladder carries: muxed into the MP4 downloads, `DEFAULT=YES` in the master.
    public var isMain: Bool
    public var channels: Int
    public var sampleRate: Int
    /// RFC 6381, e.g. `mp4a.40.2`.
    public var codecs: String
    /// Holds `init.mp4`, the segments and (whole transcodes) `index.m3u8`.
    public var directory: String
    public var segments: [ChunkResult.Segment]

    /// What a player's menu shows: the track's title, else its language, else its place.
    public var label: String { title ?? language ?? "Audio \(position)" }

    /// Peak and average bit rate of the segments (HLS's measure: the peak over segments of a second or more).
    public var bitRates: (peak: Int, average: Int) {
        Playlist.bitRates(segments.map { ($0.duration, $0.size) }) ?? (0, 0)
    }

    public func rendition(uri: String? = nil) -> AudioRendition {
        AudioRendition(
            name: label, language: language, uri: uri ?? "\(name)/index.m3u8", isDefault: isMain, channels: channels)
    }

    public static func name(position: Int) -> String { "audio-\(position)" }
}

/// The source's audio streams: which one the ladder carries, and each one's place and tags.
enum AudioStreams {
    /// `(stream index, place from 1)` of every audio stream, in the file's order.
    static func all(_ context: UnsafeMutablePointer<AVFormatContext>) -> [(index: Int32, position: Int)] {
        var found: [(Int32, Int)] = []
        for index in 0..<Int(context.pointee.nb_streams)
        where context.pointee.streams[index]!.pointee.codecpar.pointee.codec_type == AVMEDIA_TYPE_AUDIO {
            found.append((Int32(index), found.count + 1))
        }
        return found
    }

    /// The stream the ladder carries (FFmpeg's choice: the default-marked one, else the best related to the
    /// video), or nil when there is no audio.
    static func main(_ context: UnsafeMutablePointer<AVFormatContext>, videoIndex: Int32) -> Int32? {
        let index = av_find_best_stream(context, AVMEDIA_TYPE_AUDIO, -1, videoIndex, nil, 0)
        return index >= 0 ? index : nil
    }

    static func position(of index: Int32, in context: UnsafeMutablePointer<AVFormatContext>) -> Int {
        all(context).first { $0.index == index }?.position ?? 1
    }

    static func tags(_ stream: UnsafeMutablePointer<AVStream>) -> (language: String?, title: String?) {
        let language = SubtitleDecoders.tag(stream, "language").flatMap { $0 == "und" ? nil : $0 }
        return (language, SubtitleDecoders.tag(stream, "title"))
    }
}

/// Writes one audio track's packets as an HLS rendition of fMP4 segments (`directory/index.m3u8`, `init.mp4`,
/// `seg-NNNNN.m4s`), cut on the same grid as the picture's (`hls_time`; a chunk's numbering and timeline as
/// its rungs have them).
final class AudioSegmenter {
    let muxer: Muxer
    let stream: UnsafeMutablePointer<AVStream>
    let directory: String
    let timeBase: AVRational
    private(set) var packets = 0
    private var finished = false
    /// Added to every packet's timestamps (the segmenter's time base): see ``TranscodeJob/timelineOffset``.
    var offset: Int64 = 0

    init(
        directory: String, parameters: UnsafeMutablePointer<AVCodecParameters>, timeBase: AVRational, language: String?,
        segmentSeconds: Double, chunk: ChunkRange?
    ) throws(MediaError) {
        self.directory = directory
        self.timeBase = timeBase
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw MediaError(.transcodeFailed, "creating \(directory): \(error)")
        }
        let path = "\(directory)/index.m3u8"
        var allocated: UnsafeMutablePointer<AVFormatContext>?
        try check(avformat_alloc_output_context2(&allocated, nil, "hls", path), "creating \(path)")
        guard let format = allocated else { throw MediaError(.transcodeFailed, "creating \(path)") }
        muxer = Muxer(format: format)
        guard let stream = avformat_new_stream(format, nil) else { throw MediaError(.transcodeFailed, "out of memory") }
        try check(avcodec_parameters_copy(stream.pointee.codecpar, parameters), "audio parameters")
        stream.pointee.codecpar.pointee.codec_tag = 0
        stream.pointee.time_base = timeBase
        if let language { av_dict_set(&stream.pointee.metadata, "language", language, 0) }
        self.stream = stream
        muxer.audio = stream
        var options = [
            "hls_segment_type": "fmp4", "hls_time": "\(segmentSeconds)", "hls_playlist_type": "vod",
            "hls_flags": "independent_segments", "hls_fmp4_init_filename": "init.mp4",
            "hls_segment_filename": "\(directory)/seg-%05d.m4s",
        ]
        if let chunk {
            options["start_number"] = String(chunk.firstSegment)
            if chunk.index > 0 { options["hls_segment_options"] = "movflags=+frag_discont" }
        }
        var dictionary: OpaquePointer?
        for (key, value) in options { av_dict_set(&dictionary, key, value, 0) }
        let written = avformat_write_header(format, &dictionary)
        av_dict_free(&dictionary)
        try check(written, "writing the header of \(path)")
    }

    /// Writes a copy of `packet` (timestamps in the segmenter's time base).
    func write(_ packet: UnsafeMutablePointer<AVPacket>) throws(MediaError) {
        packets += 1
        let pts = packet.pointee.pts
        let dts = packet.pointee.dts
        if pts != cinescale_nopts_value() { packet.pointee.pts += offset }
        if dts != cinescale_nopts_value() { packet.pointee.dts += offset }
        defer {
            packet.pointee.pts = pts
            packet.pointee.dts = dts
        }
        try muxer.write(packet, timeBase: timeBase, to: stream, "writing the audio segments")
    }

    /// Ends the rendition and lists its segments (none when no packet came).
    func finish() throws(MediaError) -> [ChunkResult.Segment] {
        guard !finished else { return [] }
        finished = true
        try check(av_write_trailer(muxer.format), "finishing the audio segments")
        guard packets > 0 else { return [] }
        let path = "\(directory)/index.m3u8"
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MediaError(.transcodeFailed, "the audio playlist was not written")
        }
        let playlist: MediaPlaylist
        do {
            playlist = try MediaPlaylist(parsing: String(decoding: data, as: UTF8.self))
        } catch {
            throw MediaError(.transcodeFailed, "the audio playlist: \(error.message)")
        }
        var segments: [ChunkResult.Segment] = []
        for segment in playlist.segments {
            guard let size = TranscodeJob.fileSize("\(directory)/\(segment.uri)") else {
                throw MediaError(.transcodeFailed, "the audio segment \(segment.uri) is missing")
            }
            segments.append(.init(name: segment.uri, duration: segment.duration, size: size))
        }
        return segments
    }
}

extension Transcoder {
    /// Writes every audio track of `source` but the one the ladder carries as an AAC rendition under
    /// `hlsDirectory/audio-N/` (AAC up to stereo carried as it is, anything else decoded, downmixed and encoded),
    /// segments of `segmentSeconds`, on the picture's timeline: the video's first frame at `videoDelay` seconds
    /// (the H.264 encoder's reorder delay: ``ChunkResult/videoDelay``, ``TranscodeResult/videoDelay``). A track
    /// that cannot be decoded is left out and named in `skipped`: it costs that track, not the video. Reads the
    /// whole source once.
    public static func audioRenditions(
        source: any MediaSource, hlsDirectory: String, segmentSeconds: Double, videoDelay: Double
    ) async throws(MediaError) -> (outputs: [AudioOutput], skipped: [String]) {
        try await MediaThread.run { () throws(MediaError) -> ([AudioOutput], [String]) in
            FFmpegLog.start()
            return try extraAudio(
                file: try InputFile(source: source), hlsDirectory: hlsDirectory, segmentSeconds: segmentSeconds,
                videoDelay: videoDelay)
        }
    }

    /// The work of `audioRenditions`, on the thread it runs on.
    static func extraAudio(
        file: InputFile, hlsDirectory: String, segmentSeconds: Double, videoDelay: Double
    ) throws(MediaError) -> ([AudioOutput], [String]) {
        let context = file.context!
        let videoIndex = av_find_best_stream(context, AVMEDIA_TYPE_VIDEO, -1, -1, nil, 0)
        let main = AudioStreams.main(context, videoIndex: videoIndex)
        var tracks: [(track: AudioTrack, segmenter: AudioSegmenter, output: AudioOutput, origin: Int64)] = []
        var skipped: [String] = []
        for (index, position) in AudioStreams.all(context) where index != main {
            let stream = context.pointee.streams[Int(index)]!
            let (language, title) = AudioStreams.tags(stream)
            let name = AudioOutput.name(position: position)
            do throws(MediaError) {
                let track = try AudioTrack(input: context, index: index)
                guard let parameters = track.parameters else { continue }
                let segmenter = try AudioSegmenter(
                    directory: "\(hlsDirectory)/\(name)", parameters: parameters, timeBase: track.timeBase,
                    language: language, segmentSeconds: segmentSeconds, chunk: nil)
                var origin: Int64 = 0
                if videoIndex >= 0, let video = context.pointee.streams[Int(videoIndex)],
                    video.pointee.start_time != cinescale_nopts_value()
                {
                    origin = av_rescale_q(video.pointee.start_time, video.pointee.time_base, track.sourceTimeBase)
                }
                // The video's first frame at `videoDelay`, as the rungs' segments have it.
                origin -= TranscodeJob.ticks(videoDelay, track.sourceTimeBase)
                let output = AudioOutput(
                    name: name, position: position, language: language, title: title, isMain: false,
                    channels: Int(parameters.pointee.ch_layout.nb_channels),
                    sampleRate: Int(parameters.pointee.sample_rate),
                    codecs: track.codecs, directory: "\(hlsDirectory)/\(name)", segments: [])
                tracks.append((track, segmenter, output, origin))
            } catch {
                skipped.append("\(name): \(error.message)")
            }
        }
        guard !tracks.isEmpty else { return ([], skipped) }
        // Only those tracks' packets are wanted: the demuxer skips the others' payloads where it can.
        let wanted = Set(tracks.map(\.track.sourceIndex))
        for index in 0..<Int(context.pointee.nb_streams) where !wanted.contains(Int32(index)) {
            context.pointee.streams[index]!.pointee.discard = AVDISCARD_ALL
        }
        var packet = av_packet_alloc()
        defer { av_packet_free(&packet) }
        guard let packet else { throw MediaError(.transcodeFailed, "out of memory") }
        var read = 0
        while true {
            let result = av_read_frame(context, packet)
            if result == cinescale_averror_eof() { break }
            if result < 0 {
                if let failure = file.io.failure { throw failure }
                if read > 0 { break }  // a damaged tail: what was read is kept
                throw MediaError(
                    .corruptMedia, "the source's audio could not be read (\(FFmpegError.describe(result)))")
            }
            defer { av_packet_unref(packet) }
            guard let entry = tracks.first(where: { $0.track.sourceIndex == packet.pointee.stream_index }) else {
                continue
            }
            read += 1
            if packet.pointee.pts != cinescale_nopts_value() { packet.pointee.pts -= entry.origin }
            if packet.pointee.dts != cinescale_nopts_value() { packet.pointee.dts -= entry.origin }
            let segmenter = entry.segmenter
            try entry.track.process(packet) { (encoded) throws(MediaError) in try segmenter.write(encoded) }
        }
        var outputs: [AudioOutput] = []
        for entry in tracks {
            let segmenter = entry.segmenter
            try entry.track.finish { (encoded) throws(MediaError) in try segmenter.write(encoded) }
            var output = entry.output
            output.segments = try segmenter.finish()
            if output.segments.isEmpty {
                skipped.append("\(output.name): no sound")
                try? FileManager.default.removeItem(atPath: output.directory)
            } else {
                outputs.append(output)
            }
        }
        return (outputs, skipped)
    }
}
