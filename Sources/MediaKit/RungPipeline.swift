import CFFmpeg
import Foundation
import Synchronization

/// What flows from the decoding thread through the rung stages.
enum PipelineItem {
    /// A reference to a picture (owned by the receiver), `pts` in the source video's time base.
    case frame(UnsafeMutablePointer<AVFrame>)
    /// An audio packet (owned by the receiver), timestamps in the audio track's time base.
    case audio(UnsafeMutablePointer<AVPacket>)
    case end
}

/// Raised by the first stage that fails, so the decoding thread stops reading.
final class PipelineFailure: Sendable {
    private let raised = Atomic<Bool>(false)
    func raise() { raised.store(true, ordering: .relaxed) }
    var isRaised: Bool { raised.load(ordering: .relaxed) }
}

/// A blocking queue between two threads, bounded in pictures: the producer waits while `frameCapacity`
/// pictures are pending, so a slow encoder holds back decoding instead of pinning decoded pictures in
/// memory. Audio packets (small, and as many as the demuxer interleaves) never wait.
// @unchecked: its state is guarded by `condition` (NSCondition, which Swift cannot see as a lock).
final class PipelineQueue: @unchecked Sendable {
    private let condition = NSCondition()
    private var items: [PipelineItem] = []
    private var head = 0
    private var pendingFrames = 0
    private let frameCapacity: Int

    init(frameCapacity: Int) { self.frameCapacity = frameCapacity }

    func push(_ item: PipelineItem) {
        condition.lock()
        if case .frame = item {
            while pendingFrames >= frameCapacity { condition.wait() }
            pendingFrames += 1
        }
        items.append(item)
        condition.broadcast()
        condition.unlock()
    }

    func pop() -> PipelineItem {
        condition.lock()
        while items.count == head { condition.wait() }
        let item = items[head]
        head += 1
        if head > 64 {
            items.removeFirst(head)
            head = 0
        }
        if case .frame = item { pendingFrames -= 1 }
        condition.broadcast()
        condition.unlock()
        return item
    }
}

/// One rung on a thread of its own: scales each picture it receives to the rung's size, hands the scaled
/// picture on to the smaller rungs that scale from it (in cascade: 360p and 240p from 720p's picture costs
/// less than from the source's), encodes it with libx264 and writes the packets, with the audio, to the
/// rung's muxers (MP4 and HLS). Decoding, scaling and encoding of different rungs overlap on both cores.
// @unchecked: it holds FFmpeg pointers; after `start` only its own thread touches them, and the decoding
// thread reads `failure` only after `join` (the semaphore orders the accesses).
final class RungStage: @unchecked Sendable {
    let rung: Rung
    let width: Int32
    let height: Int32
    let path: String
    let hlsDirectory: String
    var muxers: [Muxer] = []
    var encoder: UnsafeMutablePointer<AVCodecContext>?
    var scaler: OpaquePointer?
    var scaled: UnsafeMutablePointer<AVFrame>?
    /// The source's display matrix (a rotation for players), written into the HLS init section's track header
    /// once the rung is finished: FFmpeg's HLS muxer does not pass it to the fMP4 muxer it writes through.
    var displayMatrix: [Int32]?

    let input = PipelineQueue(frameCapacity: 1)
    /// The smaller rungs scaled from this rung's pictures, fed with them and the audio.
    var children: [RungStage] = []
    private(set) var failure: MediaError?
    private let finished = DispatchSemaphore(value: 0)

    init(rung: Rung, width: Int32, height: Int32, path: String, hlsDirectory: String) {
        self.rung = rung
        self.width = width
        self.height = height
        self.path = path
        self.hlsDirectory = hlsDirectory
    }

    deinit {
        sws_freeContext(scaler)
        av_frame_free(&scaled)
        avcodec_free_context(&encoder)
        muxers.removeAll()
    }

    /// Starts the stage's thread; it raises `failed` when it fails, so the decoder can stop early.
    func start(sourceTimeBase: AVRational, audioTimeBase: AVRational, failed: PipelineFailure) {
        // The closure holds the stage until the thread ends; the stage must not hold the Thread (it keeps its
        // closure after it ends: a cycle that leaked every stage — its encoder, scaler and pictures, ~340 MiB
        // per four-rung 1080p chunk — in a worker that runs chunk after chunk).
        let thread = Thread { [self] in
            run(sourceTimeBase: sourceTimeBase, audioTimeBase: audioTimeBase, failed: failed)
            finished.signal()
        }
        thread.stackSize = 8 << 20
        thread.name = "cinescale-\(rung.name)"
        thread.start()
    }

    /// Waits until the stage has flushed its encoder and written its trailers (after `.end`).
    func join() { finished.wait() }

    private func run(sourceTimeBase: AVRational, audioTimeBase: AVRational, failed: PipelineFailure) {
        FFmpegLog.start()
        while true {
            switch input.pop() {
            case .frame(let picture):
                var owned: UnsafeMutablePointer<AVFrame>? = picture
                if failure == nil {
                    do throws(MediaError) { try self.picture(picture, sourceTimeBase: sourceTimeBase) } catch {
                        fail(error, failed)
                    }
                }
                av_frame_free(&owned)
            case .audio(let packet):
                if failure == nil {
                    do throws(MediaError) {
                        for muxer in muxers {
                            guard let stream = muxer.audio else { continue }
                            try muxer.write(
                                packet, timeBase: audioTimeBase, to: stream, "writing audio to \(rung.name)")
                        }
                    } catch { fail(error, failed) }
                }
                if failure == nil {
                    for child in children {
                        guard let copy = av_packet_clone(packet) else { continue }
                        child.input.push(.audio(copy))
                    }
                }
                var owned: UnsafeMutablePointer<AVPacket>? = packet
                av_packet_free(&owned)
            case .end:
                if failure == nil {
                    do throws(MediaError) { try finish() } catch { fail(error, failed) }
                }
                for child in children { child.input.push(.end) }
                return
            }
        }
    }

    private func fail(_ error: MediaError, _ failed: PipelineFailure) {
        failure = error
        failed.raise()
    }

    private func picture(_ frame: UnsafeMutablePointer<AVFrame>, sourceTimeBase: AVRational) throws(MediaError) {
        try scale(frame)
        let pts = frame.pointee.pts
        for child in children {
            scaled!.pointee.pts = pts
            guard let forwarded = av_frame_clone(scaled) else { throw MediaError(.transcodeFailed, "out of memory") }
            child.input.push(.frame(forwarded))
        }
        scaled!.pointee.pts =
            pts == cinescale_nopts_value()
            ? cinescale_nopts_value() : av_rescale_q(pts, sourceTimeBase, encoder!.pointee.time_base)
        scaled!.pointee.pict_type = AV_PICTURE_TYPE_NONE
        try encode(scaled)
    }

    private func finish() throws(MediaError) {
        try encode(nil)
        for muxer in muxers {
            try check(av_write_trailer(muxer.format), "finishing \(rung.name)")
        }
        muxers.removeAll()  // closes the files
        if let displayMatrix {
            do {
                try DisplayMatrix.write(displayMatrix, intoTrackHeaderOf: hlsDirectory + "/init.mp4")
            } catch {
                throw MediaError(.transcodeFailed, "writing the rotation of \(rung.name): \(error)")
            }
        }
    }

    private func scale(_ frame: UnsafeMutablePointer<AVFrame>) throws(MediaError) {
        scaler = sws_getCachedContext(
            scaler, frame.pointee.width, frame.pointee.height, AVPixelFormat(rawValue: frame.pointee.format),
            width, height, AV_PIX_FMT_YUV420P, SWS_BICUBIC, nil, nil, nil)
        guard scaler != nil else { throw MediaError(.transcodeFailed, "cannot scale to \(rung.name)") }
        // The previous picture may still be referenced by the encoder or the next stage: then this allocates.
        try check(av_frame_make_writable(scaled), "frame buffer")
        let scaled = scaled!
        let result = withUnsafePointer(to: &frame.pointee.data) { sourceData in
            withUnsafePointer(to: &frame.pointee.linesize) { sourceLines in
                withUnsafePointer(to: &scaled.pointee.data) { targetData in
                    withUnsafePointer(to: &scaled.pointee.linesize) { targetLines in
                        sws_scale(
                            scaler,
                            UnsafeRawPointer(sourceData).assumingMemoryBound(to: UnsafePointer<UInt8>?.self),
                            UnsafeRawPointer(sourceLines).assumingMemoryBound(to: Int32.self), 0, frame.pointee.height,
                            UnsafeRawPointer(targetData).assumingMemoryBound(to: UnsafeMutablePointer<UInt8>?.self),
                            UnsafeRawPointer(targetLines).assumingMemoryBound(to: Int32.self))
                    }
                }
            }
        }
        try check(result, "scaling to \(rung.name)")
    }

    private func encode(_ frame: UnsafeMutablePointer<AVFrame>?) throws(MediaError) {
        try check(avcodec_send_frame(encoder, frame), "encoding \(rung.name)")
        var packet: UnsafeMutablePointer<AVPacket>? = av_packet_alloc()
        defer { av_packet_free(&packet) }
        while true {
            let received = avcodec_receive_packet(encoder, packet)
            if received == cinescale_averror(EAGAIN) || received == cinescale_averror_eof() { return }
            try check(received, "encoding \(rung.name)")
            defer { av_packet_unref(packet) }
            for muxer in muxers {
                try muxer.write(packet!, timeBase: encoder!.pointee.time_base, to: muxer.video!, "writing \(rung.name)")
            }
        }
    }
}
