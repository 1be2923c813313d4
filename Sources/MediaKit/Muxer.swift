import CFFmpeg

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
