import CFFmpeg
import HLS

/// The audio every rung carries: the source's AAC packets as they are, or, for any other codec, the source
/// decoded, resampled (libswresample) and encoded to AAC once, the same packets going to every rung.
final class AudioTrack {
    let sourceIndex: Int32
    let sourceTimeBase: AVRational
    /// The parameters and time base of the packets `process` emits (for the output streams).
    private(set) var parameters: UnsafeMutablePointer<AVCodecParameters>?
    private(set) var timeBase: AVRational
    /// RFC 6381 codec string, for the HLS master playlist.
    private(set) var codecs: String
    /// Source packets the decoder refused (damaged audio is skipped, not fatal).
    private(set) var damagedPackets = 0
    /// Whether the source's audio is decoded and encoded to AAC (false: its AAC packets are carried).
    var encodes: Bool { encoder != nil }

    private var decoder: UnsafeMutablePointer<AVCodecContext>?
    private var encoder: UnsafeMutablePointer<AVCodecContext>?
    private var resampler: OpaquePointer?
    private var fifo: OpaquePointer?
    private var decoded: UnsafeMutablePointer<AVFrame>?
    private var resampled: UnsafeMutablePointer<AVFrame>?
    private var chunk: UnsafeMutablePointer<AVFrame>?
    private var packet: UnsafeMutablePointer<AVPacket>?
    /// Next output pts, in 1/sample_rate; starts at the first decoded frame's time, so audio stays in sync.
    private var nextPTS: Int64?

    /// AAC sample rates the native encoder takes; other rates are resampled to 48 kHz.
    private static let aacRates: Set<Int32> = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
    ]

    init(input: UnsafeMutablePointer<AVFormatContext>, index: Int32) throws(MediaError) {
        sourceIndex = index
        let stream = input.pointee.streams[Int(index)]!
        sourceTimeBase = stream.pointee.time_base
        let source = stream.pointee.codecpar!
        parameters = avcodec_parameters_alloc()
        // Mono or stereo AAC with its AudioSpecificConfig is carried as it is; ADTS-framed AAC (from MPEG-TS),
        // surround AAC (downmixed to stereo by the resampler) and every other codec are encoded.
        if source.pointee.codec_id == AV_CODEC_ID_AAC, source.pointee.extradata_size > 0,
            source.pointee.ch_layout.nb_channels <= 2
        {
            try check(avcodec_parameters_copy(parameters, source), "audio parameters")
            parameters!.pointee.codec_tag = 0
            timeBase = stream.pointee.time_base
            codecs = Codecs.mp4a(ffmpegProfile: source.pointee.profile)
            return
        }
        guard let decoderCodec = avcodec_find_decoder(source.pointee.codec_id) else {
            throw MediaError(
                .transcodeFailed,
                "the audio codec \(String(cString: avcodec_get_name(source.pointee.codec_id))) cannot be decoded")
        }
        decoder = avcodec_alloc_context3(decoderCodec)
        try check(avcodec_parameters_to_context(decoder, source), "audio decoder parameters")
        decoder!.pointee.pkt_timebase = stream.pointee.time_base
        try check(avcodec_open2(decoder, decoderCodec, nil), "opening the audio decoder")
        if decoder!.pointee.ch_layout.order == AV_CHANNEL_ORDER_UNSPEC {
            let channels = decoder!.pointee.ch_layout.nb_channels
            av_channel_layout_uninit(&decoder!.pointee.ch_layout)
            av_channel_layout_default(&decoder!.pointee.ch_layout, max(1, channels))
        }

        guard let aac = avcodec_find_encoder(AV_CODEC_ID_AAC) else {
            throw MediaError(.transcodeFailed, "no AAC encoder")
        }
        let encoder = avcodec_alloc_context3(aac)!
        self.encoder = encoder
        let channels: Int32 = decoder!.pointee.ch_layout.nb_channels >= 2 ? 2 : 1
        av_channel_layout_default(&encoder.pointee.ch_layout, channels)
        let rate = decoder!.pointee.sample_rate
        encoder.pointee.sample_rate = Self.aacRates.contains(rate) ? rate : 48000
        encoder.pointee.sample_fmt = AV_SAMPLE_FMT_FLTP
        encoder.pointee.bit_rate = channels == 2 ? 128_000 : 64_000
        encoder.pointee.time_base = AVRational(num: 1, den: encoder.pointee.sample_rate)
        encoder.pointee.flags |= AV_CODEC_FLAG_GLOBAL_HEADER  // MP4 and fMP4 keep the AudioSpecificConfig in the header
        try check(avcodec_open2(encoder, aac, nil), "opening the AAC encoder")
        try check(avcodec_parameters_from_context(parameters, encoder), "audio parameters")
        timeBase = encoder.pointee.time_base
        codecs = Codecs.mp4a(ffmpegProfile: encoder.pointee.profile)

        try check(
            swr_alloc_set_opts2(
                &resampler, &encoder.pointee.ch_layout, encoder.pointee.sample_fmt, encoder.pointee.sample_rate,
                &decoder!.pointee.ch_layout, decoder!.pointee.sample_fmt, decoder!.pointee.sample_rate, 0, nil),
            "configuring the resampler")
        try check(swr_init(resampler), "starting the resampler")
        fifo = av_audio_fifo_alloc(encoder.pointee.sample_fmt, channels, max(encoder.pointee.frame_size, 1024) * 4)
        decoded = av_frame_alloc()
        resampled = av_frame_alloc()
        chunk = av_frame_alloc()
        packet = av_packet_alloc()
        guard fifo != nil, decoded != nil, resampled != nil, chunk != nil, packet != nil else {
            throw MediaError(.transcodeFailed, "out of memory")
        }
    }

    deinit {
        avcodec_parameters_free(&parameters)
        avcodec_free_context(&decoder)
        avcodec_free_context(&encoder)
        swr_free(&resampler)
        if let fifo { av_audio_fifo_free(fifo) }
        av_frame_free(&decoded)
        av_frame_free(&resampled)
        av_frame_free(&chunk)
        av_packet_free(&packet)
    }

    /// Hands `emit` the packets for one source packet (in `timeBase`).
    func process(
        _ source: UnsafeMutablePointer<AVPacket>, emit: (UnsafeMutablePointer<AVPacket>) throws(MediaError) -> Void
    )
        throws(MediaError)
    {
        guard let decoder else {
            let copy = av_packet_clone(source)!
            var owned: UnsafeMutablePointer<AVPacket>? = copy
            defer { av_packet_free(&owned) }
            copy.pointee.pos = -1
            try emit(copy)
            return
        }
        if avcodec_send_packet(decoder, source) < 0 {
            damagedPackets += 1
            return
        }
        try drainDecoder(emit: emit)
    }

    /// Flushes the decoder, the resampler, the last partial frame and the encoder.
    func finish(emit: (UnsafeMutablePointer<AVPacket>) throws(MediaError) -> Void) throws(MediaError) {
        guard let decoder, let encoder else { return }
        avcodec_send_packet(decoder, nil)
        try drainDecoder(emit: emit)
        try resample(nil)
        try encodeFIFO(all: true, emit: emit)
        try check(avcodec_send_frame(encoder, nil), "flushing the AAC encoder")
        try drainEncoder(emit: emit)
    }

    private func drainDecoder(emit: (UnsafeMutablePointer<AVPacket>) throws(MediaError) -> Void) throws(MediaError) {
        while true {
            let received = avcodec_receive_frame(decoder, decoded)
            if received == cinescale_averror(EAGAIN) || received == cinescale_averror_eof() { return }
            if received < 0 {
                damagedPackets += 1
                continue
            }
            defer { av_frame_unref(decoded) }
            if nextPTS == nil {
                let pts = decoded!.pointee.best_effort_timestamp
                nextPTS = pts == cinescale_nopts_value() ? 0 : av_rescale_q(pts, sourceTimeBase, timeBase)
            }
            try resample(decoded)
            try encodeFIFO(all: false, emit: emit)
        }
    }

    /// Converts `frame` (nil: the resampler's delayed samples) and queues the samples.
    private func resample(_ frame: UnsafeMutablePointer<AVFrame>?) throws(MediaError) {
        guard let encoder, let resampled else { return }
        av_frame_unref(resampled)
        resampled.pointee.format = encoder.pointee.sample_fmt.rawValue
        resampled.pointee.sample_rate = encoder.pointee.sample_rate
        try check(av_channel_layout_copy(&resampled.pointee.ch_layout, &encoder.pointee.ch_layout), "channel layout")
        let converted = swr_convert_frame(resampler, resampled, frame)
        if converted < 0 {
            // A frame whose layout or rate changed mid-stream: reconfigure once, then convert again.
            swr_close(resampler)
            try check(
                swr_config_frame(resampler, resampled, frame),
                "reconfiguring the resampler (\(FFmpegError.describe(converted)))")
            try check(swr_convert_frame(resampler, resampled, frame), "resampling")
        }
        guard resampled.pointee.nb_samples > 0 else { return }
        let written = av_audio_fifo_write(fifo, cinescale_frame_planes(resampled), resampled.pointee.nb_samples)
        guard written == resampled.pointee.nb_samples else {
            throw MediaError(.transcodeFailed, "audio buffer: out of memory")
        }
    }

    /// Encodes full encoder frames from the queue (`all`: the last, shorter one too).
    private func encodeFIFO(all: Bool, emit: (UnsafeMutablePointer<AVPacket>) throws(MediaError) -> Void)
        throws(MediaError)
    {
        guard let encoder, let chunk else { return }
        let frameSize = encoder.pointee.frame_size > 0 ? encoder.pointee.frame_size : 1024
        while av_audio_fifo_size(fifo) >= frameSize || (all && av_audio_fifo_size(fifo) > 0) {
            let count = min(frameSize, av_audio_fifo_size(fifo))
            av_frame_unref(chunk)
            chunk.pointee.nb_samples = count
            chunk.pointee.format = encoder.pointee.sample_fmt.rawValue
            chunk.pointee.sample_rate = encoder.pointee.sample_rate
            try check(av_channel_layout_copy(&chunk.pointee.ch_layout, &encoder.pointee.ch_layout), "channel layout")
            try check(av_frame_get_buffer(chunk, 0), "audio frame")
            guard av_audio_fifo_read(fifo, cinescale_frame_planes(chunk), count) == count else {
                throw MediaError(.transcodeFailed, "audio buffer underrun")
            }
            chunk.pointee.pts = nextPTS ?? 0
            nextPTS = (nextPTS ?? 0) + Int64(count)
            try check(avcodec_send_frame(encoder, chunk), "encoding AAC")
            try drainEncoder(emit: emit)
        }
    }

    private func drainEncoder(emit: (UnsafeMutablePointer<AVPacket>) throws(MediaError) -> Void) throws(MediaError) {
        while true {
            let received = avcodec_receive_packet(encoder, packet)
            if received == cinescale_averror(EAGAIN) || received == cinescale_averror_eof() { return }
            try check(received, "encoding AAC")
            defer { av_packet_unref(packet) }
            try emit(packet!)
        }
    }
}
