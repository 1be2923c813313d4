import Foundation
import HLS
import Synchronization
import Testing

@testable import MediaKit

/// Clips made by the `ffmpeg` CLI (the test oracle, installed by scripts/test), compared with `ffprobe`.
enum Clips {
    static let directory: String = {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("mediakit-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    /// Runs `tool` and returns its stdout, waiting on a thread of its own (below).
    static func run(_ tool: String, _ arguments: [String]) async throws -> Data {
        try await offPool { try runBlocking(tool, arguments) }
    }

    private static func runBlocking(_ tool: String, _ arguments: [String]) throws -> Data {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/\(tool)")
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        // Waited for with a semaphore: waitUntilExit polls a run loop, which spins on a thread without one.
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        exited.wait()
        guard process.terminationStatus == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "\(tool) \(arguments) failed"])
        }
        return data
    }

    private static let making = Mutex(())

    /// Makes `name` with ffmpeg once. Tests run in parallel: the lock keeps a second caller from reading a
    /// clip ffmpeg is still writing.
    static func make(_ name: String, _ arguments: [String]) async throws -> String {
        let path = "\(directory)/\(name)"
        try await offPool {
            try making.withLock { _ in
                if !FileManager.default.fileExists(atPath: path) {
                    _ = try runBlocking("ffmpeg", ["-v", "error", "-y"] + arguments + [path])
                }
            }
        }
        return path
    }

    /// Runs blocking work (a child process, or the lock while ffmpeg makes a clip) on a thread of its own:
    /// the test process's cooperative pool has one thread per core, and a test that holds one for seconds
    /// starves every other test running beside it.
    static func offPool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try work() }) }.start()
        }
    }

    static func video() async throws -> String {
        try await make(
            "clip.mp4",
            [
                "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=3",
                "-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "high", "-pix_fmt", "yuv420p",
                "-c:a", "aac", "-ac", "2", "-metadata:s:a:0", "language=eng", "-movflags", "+faststart",
            ])
    }

    static func ffprobe(_ path: String) async throws -> [String: Any] {
        let data = try await run(
            "ffprobe", ["-v", "error", "-print_format", "json", "-show_format", "-show_streams", path])
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }
}

@Suite("MediaProbe")
struct MediaProbeTests {
    @Test func fieldsEqualFFprobes() async throws {
        let path = try await Clips.video()
        let info = try await MediaProbe.probe(try FileSource(path: path))
        let expected = try await Clips.ffprobe(path)
        let format = try #require(expected["format"] as? [String: Any])
        #expect(info.container == format["format_name"] as? String)
        #expect(abs(info.duration - Double(format["duration"] as! String)!) < 0.001)
        #expect(info.bitRate == Int(format["bit_rate"] as! String))
        #expect(info.size == Int64(format["size"] as! String))
        let streams = try #require(expected["streams"] as? [[String: Any]])
        #expect(info.streams.count == streams.count)
        let video = try #require(info.video)
        let v = try #require(streams.first { $0["codec_type"] as? String == "video" })
        #expect(video.codec == v["codec_name"] as? String)
        #expect(video.profile == v["profile"] as? String)
        #expect(video.width == v["width"] as? Int && video.height == v["height"] as? Int)
        #expect(video.displayAspectRatio == v["display_aspect_ratio"] as? String)
        #expect(video.pixelFormat == v["pix_fmt"] as? String)
        #expect(video.frameRate == 25)
        #expect(video.rotation == 0)
        let audio = try #require(info.audio)
        let a = try #require(streams.first { $0["codec_type"] as? String == "audio" })
        #expect(audio.codec == a["codec_name"] as? String)
        #expect(audio.profile == a["profile"] as? String)
        #expect(audio.sampleRate == Int(a["sample_rate"] as! String))
        #expect(audio.channels == a["channels"] as? Int)
        #expect(audio.language == "eng")
    }

    @Test func rotationAndAspectRatioComeFromTheContainer() async throws {
        let encoded = try await Clips.make(
            "aspect.mp4",
            [
                "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=1", "-c:v", "libx264", "-preset",
                "ultrafast",
                "-aspect", "16:9",
            ])
        // A rotation tag is written as a display matrix when the stream is copied.
        let rotated = try await Clips.make(
            "rotated.mp4", ["-i", encoded, "-c", "copy", "-metadata:s:v:0", "rotate=90"])
        let info = try await MediaProbe.probe(try FileSource(path: rotated))
        let data = try await Clips.run("ffprobe", ["-v", "error", "-print_format", "json", "-show_streams", rotated])
        let stream = ((try JSONSerialization.jsonObject(with: data) as? [String: Any])?["streams"] as? [[String: Any]])?
            .first
        let sideData = (stream?["side_data_list"] as? [[String: Any]])?.first
        #expect(info.video?.rotation == sideData?["rotation"] as? Int)
        #expect(info.video?.rotation != 0)
        #expect(info.video?.displayAspectRatio == "16:9")
        #expect(info.video?.displayAspectRatio == stream?["display_aspect_ratio"] as? String)
    }

    @Test func rangedReadsFetchLittleOfAFaststartFile() async throws {
        let path = try await Clips.make(
            "big.mp4",
            [
                "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=10", "-c:v", "libx264", "-preset",
                "ultrafast",
                "-b:v", "20M", "-movflags", "+faststart",
            ])
        let file = try FileSource(path: path)
        let source = ChunkedRangeSource(size: file.size, chunkSize: 128 * 1024) { range in
            var bytes = [UInt8](repeating: 0, count: range.count)
            let n = try bytes.withUnsafeMutableBytes { try file.read(at: range.lowerBound, into: $0) }
            return Array(bytes.prefix(n))
        }
        let info = try await MediaProbe.probe(source)
        #expect(info.video?.width == 1280)
        #expect(file.size > 20_000_000)
        #expect(source.bytesFetched < file.size / 50, "fetched \(source.bytesFetched) of \(file.size)")
    }

    @Test(arguments: [
        ("empty.mp4", MediaError.Code.unreadableMedia),
        ("garbage.mp4", .unreadableMedia),
        ("truncated.mp4", .unreadableMedia),
        ("image.mp4", .zeroDuration),
        ("audio.mp4", .noVideoStream),
        ("huge-header.mp4", .unreadableMedia),
    ])
    func hostileInputIsRefusedWithAReason(name: String, code: MediaError.Code) async throws {
        let path = Clips.directory + "/" + name
        switch name {
        case "empty.mp4": _ = FileManager.default.createFile(atPath: path, contents: Data())
        case "garbage.mp4":
            _ = FileManager.default.createFile(
                atPath: path, contents: Data((0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7919) }))
        case "truncated.mp4":
            // The header of a file whose moov is at the end, cut before it.
            let full = try await Clips.make(
                "moov-at-end.mp4",
                [
                    "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-c:v", "libx264", "-preset",
                    "ultrafast",
                ])
            let data = try Data(contentsOf: URL(fileURLWithPath: full))
            _ = FileManager.default.createFile(atPath: path, contents: data.prefix(data.count / 2))
        case "huge-header.mp4":
            // A raw-video header declaring 16384×16384 in front of a few bytes: FFmpeg itself refuses the size
            // (above its image limit) before anything allocates a 400 MB frame, and the error says so.
            let header = "YUV4MPEG2 W16384 H16384 F25:1 Ip A1:1 C420jpeg\nFRAME\n"
            _ = FileManager.default.createFile(atPath: path, contents: Data(header.utf8) + Data(count: 4096))
        case "image.mp4":
            let png = try await Clips.make(
                "still.png", ["-f", "lavfi", "-i", "testsrc2=size=320x240", "-frames:v", "1"])
            try? FileManager.default.removeItem(atPath: path)
            try FileManager.default.copyItem(atPath: png, toPath: path)
        default:
            _ = try await Clips.make(name, ["-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac"])
        }
        do {
            let info = try await MediaProbe.probe(try FileSource(path: path))
            Issue.record("\(name) was accepted: \(info)")
        } catch {
            #expect(error.code == code, "\(name): \(error)")
            #expect(!error.message.isEmpty)
            if name == "huge-header.mp4" { #expect(error.message.contains("16384x16384"), "\(error)") }
        }
    }

    @Test func limitsAreEnforced() async throws {
        let path = try await Clips.video()
        await #expect(throws: MediaError.self) {
            try await MediaProbe.probe(try FileSource(path: path), limits: ProbeLimits(maxWidth: 100, maxHeight: 100))
        }
        do {
            _ = try await MediaProbe.probe(try FileSource(path: path), limits: ProbeLimits(maxDuration: 1))
        } catch {
            #expect(error.code == .durationTooLong)
        }
    }
}

@Suite("Transcoder")
struct TranscoderTests {
    @Test func laddersAreNeverUpscaledAndWidthsAreEven() {
        let ladder = Rung.defaultLadder
        #expect(Transcoder.rungs(for: 1080, ladder: ladder).map(\.height) == [240, 360, 720, 1080])
        #expect(Transcoder.rungs(for: 480, ladder: ladder).map(\.height) == [240, 360])
        #expect(Transcoder.rungs(for: 144, ladder: ladder).map(\.height) == [240])
    }

    @Test func aVariantsCodecsAreItsPictureAndEveryAudioRenditionOnce() {
        #expect(
            Transcoder.variantCodecs(video: "avc1.64001f,mp4a.40.2", audio: ["mp4a.40.2", "mp4a.40.5", "mp4a.40.2"])
                == "avc1.64001f,mp4a.40.2,mp4a.40.5")
        #expect(Transcoder.variantCodecs(video: "avc1.640028", audio: []) == "avc1.640028")
    }

    @Test func cascadeScalesEachRungFromALargerRungAtLeastTwiceItsHeight() {
        let stages = [240, 360, 720, 1080].map { height in
            RungStage(
                rung: Rung(name: "\(height)p", height: height, maxBitRate: 1), width: Int32(height * 16 / 9 & ~1),
                height: Int32(height), path: "", hlsDirectory: "")
        }
        let roots = TranscodeJob.arrange(stages, cascade: true)
        #expect(roots.map(\.height) == [1080, 720])  // 1080 is not twice 720: both from the source
        #expect(stages[2].children.map(\.height) == [360, 240])  // 360 is not twice 240: both from 720
        #expect(stages[3].children.isEmpty && stages[0].children.isEmpty)
        #expect(TranscodeJob.arrange(stages, cascade: false).count == 4)
    }

    @Test func decodesOnceAndWritesFaststartMP4sCheckedWithFFprobe() async throws {
        let source = try await Clips.make(
            "ladder-source.mp4",
            [
                "-f", "lavfi", "-i", "testsrc2=size=854x480:rate=30:duration=5",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=5",
                "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest",
            ])
        let directory = Clips.directory + "/ladder-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let seen = ProgressLog()
        let result = try await Transcoder.transcode(
            input: source, ladder: Rung.defaultLadder,
            settings: EncodingSettings(preset: "ultrafast", keyframeInterval: 2),
            thumbnails: ThumbnailSettings(posterHeight: 360, tileHeight: 72, columns: 4, maxTiles: 10),
            directory: directory, progress: { seen.add($0) })
        let renditions = result.renditions
        // Posters at 10/50/90 % of 5 s and a 4-column sprite of 5 tiles (one per second), as JPEGs.
        let thumbnails = try #require(result.thumbnails)
        #expect(thumbnails.posters.map { ($0.time * 10).rounded() / 10 } == [0.5, 2.5, 4.5])
        for poster in thumbnails.posters {
            let probe = try await Clips.ffprobe(poster.path)
            let stream = try #require((probe["streams"] as? [[String: Any]])?.first)
            #expect(stream["codec_name"] as? String == "mjpeg")
            #expect(stream["width"] as? Int == 640 && stream["height"] as? Int == 360)
        }
        let sprite = try #require(thumbnails.sprite)
        #expect(sprite.count == 5 && sprite.columns == 4 && sprite.rows == 2 && sprite.interval == 1)
        let spriteProbe = try #require((try await Clips.ffprobe(sprite.path)["streams"] as? [[String: Any]])?.first)
        #expect(spriteProbe["width"] as? Int == 4 * sprite.tileWidth && spriteProbe["height"] as? Int == 2 * 72)
        #expect(renditions.map(\.rung.name) == ["240p", "360p"])
        #expect(renditions.map { "\($0.width)x\($0.height)" } == ["426x240", "640x360"])
        #expect(seen.last == 1)
        for rendition in renditions {
            let probe = try await Clips.ffprobe(rendition.path)
            let streams = try #require(probe["streams"] as? [[String: Any]])
            let video = try #require(streams.first { $0["codec_type"] as? String == "video" })
            #expect(video["codec_name"] as? String == "h264")
            #expect(video["width"] as? Int == rendition.width && video["height"] as? Int == rendition.height)
            let audio = try #require(streams.first { $0["codec_type"] as? String == "audio" })
            #expect(audio["codec_name"] as? String == "aac")
            let duration = Double((probe["format"] as? [String: Any])?["duration"] as? String ?? "0") ?? 0
            #expect(abs(duration - 5) < 0.2)
            // moov before mdat: the index comes first.
            let head =
                try FileHandle(forReadingFrom: URL(fileURLWithPath: rendition.path)).read(upToCount: 64 * 1024)
                ?? Data()
            let moov = head.range(of: Data("moov".utf8))
            let mdat = head.range(of: Data("mdat".utf8))
            #expect(moov != nil && (mdat == nil || moov!.lowerBound < mdat!.lowerBound))
            // Keyframes every 2 s in every rung (aligned).
            let frames = try await Clips.run(
                "ffprobe",
                [
                    "-v", "error", "-select_streams", "v:0", "-skip_frame", "nokey", "-show_entries", "frame=pts_time",
                    "-of", "csv=p=0", rendition.path,
                ])
            let keyframes = String(decoding: frames, as: UTF8.self).split(separator: "\n").compactMap { line in
                line.split(separator: ",").first.flatMap { Double($0) }
            }
            #expect(keyframes.map { ($0 * 10).rounded() / 10 } == [0, 2, 4])

            // The same encode as HLS: fMP4 segments of 2 s (the keyframe interval), read back by ffprobe.
            let hls = rendition.hls
            let playlist = try MediaPlaylist(
                parsing: String(contentsOfFile: hls.directory + "/index.m3u8", encoding: .utf8))
            #expect(playlist.mapURI == "init.mp4" && playlist.isComplete)
            #expect(playlist.segments.map { ($0.duration * 10).rounded() / 10 } == [2, 2, 1])
            #expect(hls.segments == 3)
            // avc1.PPCCLL with the profile and level ffprobe reports (ultrafast with B-frames: Main, 4d 40).
            let level = try #require(video["level"] as? Int)
            let profile = ["Main": "4d40", "High": "6400", "Constrained Baseline": "42c0"][
                video["profile"] as? String ?? ""]
            #expect(hls.codecs == "avc1.\(profile ?? "?")\(level < 16 ? "0" : "")\(String(level, radix: 16)),mp4a.40.2")
            #expect(hls.bandwidth >= hls.averageBandwidth && hls.averageBandwidth > 10_000)
            let hlsProbe = try await Clips.ffprobe(hls.directory + "/index.m3u8")
            let hlsStreams = try #require(hlsProbe["streams"] as? [[String: Any]])
            #expect(
                hlsStreams.contains {
                    $0["codec_name"] as? String == "h264" && $0["height"] as? Int == rendition.height
                })
            // The picture alone: the audio is a rendition of its own (below).
            #expect(!hlsStreams.contains { $0["codec_type"] as? String == "audio" })
            let hlsDuration = Double((hlsProbe["format"] as? [String: Any])?["duration"] as? String ?? "0") ?? 0
            #expect(abs(hlsDuration - 5) < 0.2)
        }
        let audio = try #require(result.audio.first)
        #expect(result.audio.count == 1 && audio.name == "audio-1" && audio.isMain && audio.codecs == "mp4a.40.2")
        let audioProbe = try await Clips.ffprobe(audio.directory + "/index.m3u8")
        let audioStreams = try #require(audioProbe["streams"] as? [[String: Any]])
        #expect(audioStreams.map { $0["codec_name"] as? String } == ["aac"])
        let master = try String(contentsOfFile: result.hlsDirectory + "/master.m3u8", encoding: .utf8)
        #expect(master.components(separatedBy: "#EXT-X-STREAM-INF:").count == 3)
        #expect(
            master.contains(
                "RESOLUTION=426x240,CODECS=\"\(renditions[0].hls.codecs)\",FRAME-RATE=30.000,AUDIO=\"audio\"\n240p/index.m3u8\n"
            ))
        #expect(master.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\","))
        #expect(master.contains("BANDWIDTH=\(renditions[1].hls.bandwidth),"))
        #expect(result.damagedPackets == 0)
    }

    @Test func audioThatIsNotAACIsEncodedToAACOnce() async throws {
        let source = try await Clips.make(
            "mp3-audio.mkv",
            [
                "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=3",
                "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "libmp3lame", "-ac", "1", "-shortest",
            ])
        let directory = Clips.directory + "/mp3-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let result = try await Transcoder.transcode(
            input: source, ladder: [Rung(name: "240p", height: 240, maxBitRate: 400_000)],
            settings: EncodingSettings(preset: "ultrafast", keyframeInterval: 1), directory: directory)
        let rendition = try #require(result.renditions.first)
        let audioRendition = try #require(result.audio.first)
        for path in [rendition.path, audioRendition.directory + "/index.m3u8"] {
            let probe = try await Clips.ffprobe(path)
            let audio = try #require(
                (probe["streams"] as? [[String: Any]])?.first { $0["codec_type"] as? String == "audio" })
            #expect(audio["codec_name"] as? String == "aac", "\(path)")
            #expect(audio["sample_rate"] as? String == "44100" && audio["channels"] as? Int == 1)
            let seconds =
                Double(audio["duration"] as? String ?? "") ?? Double(
                    (probe["format"] as? [String: Any])?["duration"] as? String ?? "0") ?? 0
            #expect(abs(seconds - 3) < 0.2, "\(path): audio lasts \(seconds) s")
        }
        #expect(rendition.hls.codecs.hasSuffix(",mp4a.40.2"))
    }

    /// Audio that runs on past the last picture (screen recordings, trailers) or stops before it is a valid
    /// file: every picture is encoded, and the audio is kept whole.
    @Test(arguments: [("audio-longer.mp4", 1.0, 4.0), ("audio-longer.mkv", 1.0, 3.0), ("audio-shorter.mp4", 4.0, 1.0)])
    func audioLongerOrShorterThanThePicture(name: String, video: Double, audio: Double) async throws {
        let source = try await Clips.make(
            name,
            [
                "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=\(video)",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=\(audio)",
                "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
            ])
        let directory = Clips.directory + "/shape-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let result = try await Transcoder.transcode(
            input: source, ladder: [Rung(name: "240p", height: 240, maxBitRate: 400_000)],
            settings: EncodingSettings(preset: "ultrafast", keyframeInterval: 1), directory: directory)
        let rendition = try #require(result.renditions.first)
        let probe = try await Clips.ffprobe(rendition.path)
        let streams = try #require(probe["streams"] as? [[String: Any]])
        let videoStream = try #require(streams.first { $0["codec_type"] as? String == "video" })
        let audioStream = try #require(streams.first { $0["codec_type"] as? String == "audio" })
        #expect(Int(videoStream["nb_frames"] as? String ?? "") == Int(video * 25), "\(videoStream)")
        let audioSeconds = Double(audioStream["duration"] as? String ?? "") ?? 0
        #expect(abs(audioSeconds - audio) < 0.1, "audio lasts \(audioSeconds) s")
    }

    /// A faststart MP4 whose header is intact but whose media data is damaged: the probe accepts it (the
    /// header is all it reads); the transcoder must refuse it rather than publish grey frames or a cut video.
    @Test(arguments: ["garbage-after-header", "truncated-media"])
    func damagedMediaDataIsRefused(kind: String) async throws {
        let source = try await Clips.make(
            "damage-source.mp4",
            [
                "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=8", "-c:v", "libx264", "-preset",
                "ultrafast",
                "-movflags", "+faststart",
            ])
        var data = try Data(contentsOf: URL(fileURLWithPath: source))
        let mdat = try #require(data.range(of: Data("mdat".utf8))).upperBound
        switch kind {
        case "garbage-after-header":
            var generator = SystemRandomNumberGenerator()
            for i in (mdat + 64)..<data.count { data[i] = UInt8.random(in: 0...255, using: &generator) }
        default:
            data = data.prefix(mdat + (data.count - mdat) / 3)
        }
        let path = Clips.directory + "/\(kind).mp4"
        try data.write(to: URL(fileURLWithPath: path))
        _ = try await MediaProbe.probe(try FileSource(path: path))
        let directory = Clips.directory + "/\(kind)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        do {
            let result = try await Transcoder.transcode(
                input: path, ladder: [Rung(name: "240p", height: 240, maxBitRate: 400_000)],
                settings: EncodingSettings(preset: "ultrafast"), directory: directory)
            Issue.record("\(kind) was transcoded: \(result)")
        } catch {
            #expect(error.code == .corruptMedia, "\(error)")
        }
    }
}

final class ProgressLog: Sendable {
    private let values = Mutex<[Double]>([])
    func add(_ v: Double) { values.withLock { $0.append(v) } }
    var last: Double? { values.withLock { $0.last } }
}
