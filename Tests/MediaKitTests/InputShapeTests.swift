import Foundation
import MediaKit
import Testing

/// Inputs of every common shape play through: each generated clip (the ffmpeg CLI makes them) is transcoded,
/// and its rendition keeps every picture (± one frame) and the source's duration, in 8-bit 4:2:0 H.264.
@Suite(.serialized) struct InputShapeTests {
    struct Shape: Sendable, CustomStringConvertible {
        var name: String
        var arguments: [String]
        /// Pictures the rendition must hold.
        var frames: Int
        var seconds: Double
        /// The rendition's display size (width × height), when the shape decides it.
        var size: (Int, Int)? = nil
        var description: String { name }
    }

    static let source = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2"]
    static let tone = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2"]

    static let shapes: [Shape] = [
        Shape(
            name: "vfr.mp4",
            arguments: source + tone + [
                "-vf", "select='lt(mod(n\\,10)\\,6)'", "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast",
                "-c:a", "aac", "-shortest",
            ], frames: 30, seconds: 1.856),
        // 50 fields a second woven into 25 frames, top field first, coded interlaced (as broadcast 1080i is).
        Shape(
            name: "interlaced.mp4",
            arguments: ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=50:duration=2"] + tone + [
                "-vf", "tinterlace=interleave_top,fieldorder=tff", "-flags", "+ilme+ildct", "-c:v", "libx264",
                "-preset",
                "ultrafast", "-c:a", "aac", "-shortest",
            ], frames: 50, seconds: 2),
        Shape(
            name: "10-bit.mp4",
            arguments: source + ["-pix_fmt", "yuv420p10le", "-c:v", "libx264", "-preset", "ultrafast"],
            frames: 50, seconds: 2),
        Shape(
            name: "444.mp4", arguments: source + ["-pix_fmt", "yuv444p", "-c:v", "libx264", "-preset", "ultrafast"],
            frames: 50, seconds: 2),
        // Rotated 90° as phones store portrait video (the track header's matrix is set below: FFmpeg 5.1's CLI
        // has no option that writes one).
        Shape(
            name: "rotated.mp4", arguments: source + ["-c:v", "libx264", "-preset", "ultrafast"],
            frames: 50, seconds: 2, size: (240, 320)),
        Shape(
            name: "odd-size.mp4",
            arguments: [
                "-f", "lavfi", "-i", "testsrc2=size=321x241:rate=25:duration=2", "-c:v", "libx264", "-preset",
                "ultrafast",
                "-pix_fmt", "yuv444p",
            ], frames: 50, seconds: 2),
        Shape(
            name: "surround.mp4",
            arguments: source + [
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2", "-filter_complex",
                "[1:a]pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0[a]", "-map", "0:v", "-map", "[a]", "-c:v", "libx264",
                "-preset", "ultrafast", "-c:a", "aac",
            ], frames: 50, seconds: 2),
        Shape(
            name: "av1.mkv", arguments: source + ["-c:v", "libaom-av1", "-cpu-used", "8", "-b:v", "200k"], frames: 50,
            seconds: 2),
        Shape(
            name: "vp9.webm",
            arguments: source + tone + [
                "-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k", "-c:a", "libopus",
            ], frames: 50, seconds: 2),
        Shape(
            name: "hevc.mp4", arguments: source + ["-c:v", "libx265", "-preset", "ultrafast", "-tag:v", "hvc1"],
            frames: 50, seconds: 2),
        Shape(
            name: "mpeg2.ts", arguments: source + tone + ["-c:v", "mpeg2video", "-b:v", "1M", "-c:a", "mp2"],
            frames: 50, seconds: 2),
        Shape(
            name: "single-frame.mp4",
            arguments: [
                "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", "1", "-c:v", "libx264", "-preset",
                "ultrafast",
            ], frames: 1, seconds: 0.04),
    ]

    /// How combed a video's pictures are: the mean, over pictures, of the luma difference between neighbouring
    /// lines divided by the difference between lines two apart (the same field). Progressive pictures score well
    /// under 1 (about 0.63 for this test pattern); woven interlaced fields of a moving picture about 0.9 and more.
    static func combing(_ path: String, width: Int, height: Int) async throws -> Double {
        let data = try await Clips.run(
            "ffmpeg",
            [
                "-v", "error", "-i", path, "-vf", "scale=\(width):\(height)", "-f", "rawvideo", "-pix_fmt", "gray", "-",
            ])
        let bytes = [UInt8](data)
        let size = width * height
        var total = 0.0
        var frames = 0
        for start in stride(from: 0, to: bytes.count - size + 1, by: size) {
            var neighbours = 0
            var sameField = 0
            for y in 1..<(height - 1) {
                for x in 0..<width {
                    let above = Int(bytes[start + (y - 1) * width + x])
                    let line = Int(bytes[start + y * width + x])
                    let below = Int(bytes[start + (y + 1) * width + x])
                    neighbours += abs(line - below)
                    sameField += abs(above - below)
                }
            }
            total += Double(neighbours) / Double(max(1, sameField))
            frames += 1
        }
        return frames == 0 ? 0 : total / Double(frames)
    }

    /// A copy of an MP4 whose first track header's matrix turns the picture 90° (as an iPhone writes it).
    static func rotated(_ path: String) throws -> String {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        let box = try #require(data.range(of: Data("tkhd".utf8))).lowerBound
        let version = data[box + 4]
        // version/flags, creation, modification, track id, reserved, duration, reserved ×2, layer, group, volume, reserved
        let matrix = box + 4 + 4 + (version == 0 ? 8 : 16) + 4 + 4 + (version == 0 ? 4 : 8) + 8 + 8
        let values: [UInt32] = [0, 0x10000, 0, UInt32(bitPattern: -0x10000), 0, 0, 0, 0, 0x4000_0000]
        for (index, value) in values.enumerated() {
            withUnsafeBytes(of: value.bigEndian) {
                data.replaceSubrange((matrix + 4 * index)..<(matrix + 4 * index + 4), with: $0)
            }
        }
        let output = path.replacingOccurrences(of: ".mp4", with: "-rotated.mp4")
        try data.write(to: URL(fileURLWithPath: output))
        return output
    }

    @Test(arguments: shapes)
    func everyShapePlaysThrough(shape: Shape) async throws {
        var source = try await Clips.make("shape-" + shape.name, shape.arguments)
        if shape.name == "rotated.mp4" { source = try Self.rotated(source) }
        let directory = Clips.directory + "/shape-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let result = try await Transcoder.transcode(
            input: source, ladder: [Rung(name: "240p", height: 240, maxBitRate: 400_000)],
            settings: EncodingSettings(preset: "ultrafast", keyframeInterval: 1), directory: directory)
        let rendition = try #require(result.renditions.first)
        let sourceFrames = try await ChunkTests.frames(source, stream: "v:0")
        let sourceTimes = sourceFrames.map { $0.pts - (sourceFrames.first?.pts ?? 0) }
        for path in [rendition.path, rendition.hls.directory + "/index.m3u8"] {
            let frames = try await ChunkTests.frames(path, stream: "v:0")
            #expect(abs(frames.count - shape.frames) <= 1, "\(shape.name) \(path): \(frames.count) pictures")
            // Each picture at its source picture's time: a variable frame rate stays variable, nothing drifts.
            let times = frames.map { $0.pts - (frames.first?.pts ?? 0) }
            let moved = zip(times, sourceTimes).filter { abs($0 - $1) > 0.002 }
            #expect(
                moved.isEmpty, "\(shape.name) \(path): pictures moved, first at \(moved.first.map { "\($0)" } ?? "")")
            let probe = try await Clips.ffprobe(path)
            let video = try #require(
                (probe["streams"] as? [[String: Any]])?.first { $0["codec_type"] as? String == "video" })
            #expect(video["codec_name"] as? String == "h264" && video["pix_fmt"] as? String == "yuv420p", "\(video)")
            if let (width, height) = shape.size {
                let rotation =
                    (video["side_data_list"] as? [[String: Any]])?.compactMap { $0["rotation"] as? Int }.first ?? 0
                let (w, h) = (video["width"] as? Int ?? 0, video["height"] as? Int ?? 0)
                let shown = rotation % 180 == 0 ? (w, h) : (h, w)
                #expect(shown.0 * height == shown.1 * width, "\(shape.name): \(w)×\(h) rotated \(rotation)")
            }
            if let audio = (probe["streams"] as? [[String: Any]])?.first(where: {
                $0["codec_type"] as? String == "audio"
            }) {
                #expect(audio["codec_name"] as? String == "aac" && (audio["channels"] as? Int ?? 0) <= 2, "\(audio)")
            }
        }
        if shape.name.hasPrefix("interlaced") {
            // Woven fields comb every moving edge: neighbouring lines differ more than lines two apart. The source
            // is combed; the rendition must not be.
            let combed = try await Self.combing(source, width: 320, height: 240)
            let rendered = try await Self.combing(rendition.path, width: 320, height: 240)
            #expect(combed > 0.85 && rendered < 0.72, "combing: source \(combed), rendition \(rendered)")
        }
        let seconds = Double(result.renditions[0].duration)
        #expect(abs(seconds - shape.seconds) <= 0.1, "\(shape.name): \(seconds) s")
    }
}
