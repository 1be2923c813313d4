import CFFmpeg

/// Deinterlaces decoded pictures with libavfilter's `bwdif` (the motion-adaptive deinterlacer FFmpeg recommends
/// over yadif), one picture out per picture in, so the frame rate and every timestamp stay the source's: H.264
/// renditions for the web are progressive, and an interlaced source (broadcast, camcorders, DVD) would
/// otherwise show combing on every moving edge. Only pictures flagged interlaced are touched
/// (`deint=interlaced`); the filter holds one picture back (it looks at the next), which ``flush()`` releases.
final class Deinterlacer {
    private var graph: UnsafeMutablePointer<AVFilterGraph>?
    private var source: UnsafeMutablePointer<AVFilterContext>?
    private var sink: UnsafeMutablePointer<AVFilterContext>?
    /// The source's time base: bwdif doubles its output's (to have room for field rate), pictures come back in it.
    private let timeBase: AVRational

    /// A graph for pictures like `frame` (size, pixel format, aspect), timestamps in `timeBase`.
    init(like frame: UnsafeMutablePointer<AVFrame>, timeBase: AVRational) throws(MediaError) {
        self.timeBase = timeBase
        graph = avfilter_graph_alloc()
        guard let graph else { throw MediaError(.transcodeFailed, "out of memory") }
        let aspect = frame.pointee.sample_aspect_ratio
        let arguments =
            "video_size=\(frame.pointee.width)x\(frame.pointee.height):pix_fmt=\(frame.pointee.format)"
            + ":time_base=\(timeBase.num)/\(max(1, timeBase.den))"
            + ":pixel_aspect=\(max(0, aspect.num))/\(max(1, aspect.den))"
        try check(
            avfilter_graph_create_filter(&source, avfilter_get_by_name("buffer"), "in", arguments, nil, graph),
            "the deinterlacer's input")
        try check(
            avfilter_graph_create_filter(&sink, avfilter_get_by_name("buffersink"), "out", nil, nil, graph),
            "the deinterlacer's output")
        // The parser links these to the graph and sets them to what it left unlinked (nothing); the defer frees that.
        var outputs = avfilter_inout_alloc()
        var inputs = avfilter_inout_alloc()
        defer {
            avfilter_inout_free(&outputs)
            avfilter_inout_free(&inputs)
        }
        guard let output = outputs, let input = inputs else { throw MediaError(.transcodeFailed, "out of memory") }
        output.pointee.name = av_strdup("in")
        output.pointee.filter_ctx = source
        output.pointee.pad_idx = 0
        output.pointee.next = nil
        input.pointee.name = av_strdup("out")
        input.pointee.filter_ctx = sink
        input.pointee.pad_idx = 0
        input.pointee.next = nil
        try check(
            avfilter_graph_parse_ptr(
                graph, "bwdif=mode=send_frame:parity=auto:deint=interlaced", &inputs, &outputs, nil),
            "the deinterlacer")
        try check(avfilter_graph_config(graph, nil), "configuring the deinterlacer")
    }

    deinit {
        avfilter_graph_free(&graph)
    }

    /// Gives the filter a picture (it keeps its own reference).
    func push(_ frame: UnsafeMutablePointer<AVFrame>) throws(MediaError) {
        try check(av_buffersrc_add_frame_flags(source, frame, Int32(AV_BUFFERSRC_FLAG_KEEP_REF)), "deinterlacing")
    }

    /// Marks the end of the pictures: the one held back comes out.
    func flush() throws(MediaError) {
        try check(av_buffersrc_add_frame_flags(source, nil, 0), "finishing the deinterlacer")
    }

    /// The next deinterlaced picture into `frame`, or false when none is ready.
    func pull(into frame: UnsafeMutablePointer<AVFrame>) -> Bool {
        guard av_buffersink_get_frame(sink, frame) >= 0 else { return false }
        if frame.pointee.pts != cinescale_nopts_value() {
            frame.pointee.pts = av_rescale_q(frame.pointee.pts, av_buffersink_get_time_base(sink), timeBase)
        }
        return true
    }
}
