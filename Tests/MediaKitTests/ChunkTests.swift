import Foundation
import HLS
import Testing

@testable import MediaKit

/// Chunked encoding checked with ffprobe: the chunks' segments, joined under the first chunk's init.mp4,
/// are one rendition equal to the unchunked one in what a player sees.
@Suite("Chunks")
struct ChunkTests {
    static func frames(_ path: String, stream: String) async throws -> [(pts: Double, key: Bool)] {
        let data = try await Clips.run(
            "ffprobe",
            [
                "-v", "error", "-select_streams", stream, "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0",
                path,
            ])
        return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ",")
            guard let pts = fields.first.flatMap({ Double($0) }) else { return nil }
            return (pts, fields.count > 1 && fields[1].contains("K"))
        }.sorted { $0.pts < $1.pts }
    }

    /// The PSNR (dB) of `path`'s video against `source` scaled to its size, from the mean of the per-frame
    /// MSEs (as ffmpeg's own summary line computes it).
    static func psnr(_ path: String, against source: String, width: Int, height: Int) async throws -> Double {
        let data = try await Clips.run(
            "ffmpeg",
            [
                "-v", "error", "-i", path, "-i", source, "-lavfi",
                "[1:v]scale=\(width):\(height):flags=bicubic[ref];[0:v][ref]psnr=stats_file=-", "-f", "null", "-",
            ])
        let mses = String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { line in
            line.split(separator: " ").first { $0.hasPrefix("mse_avg:") }.flatMap { Double($0.dropFirst(8)) }
        }
        guard !mses.isEmpty else { throw CocoaError(.fileReadCorruptFile) }
        return 10 * log10(255 * 255 / (mses.reduce(0, +) / Double(mses.count)))
    }

    /// 10 s of 640x360 H.264 with AAC, its keyframes every 1.5 s (off the chunks' 2 s grid); made once.
    static func tenSecondSource() async throws -> String {
        try await Clips.make(
            "chunk-source.mp4",
            [
                "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=10",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=10",
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "45", "-c:a", "aac", "-shortest",
            ])
    }

    @Test func chunksJoinIntoOneRenditionWithEveryFrameAndPacket() async throws {
        let source = try await Self.tenSecondSource()
        let directory = Clips.directory + "/chunks-\(UUID().uuidString)"
        let settings = EncodingSettings(preset: "ultrafast", keyframeInterval: 2)
        let ladder = [
            Rung(name: "240p", height: 240, maxBitRate: 400_000), Rung(name: "360p", height: 360, maxBitRate: 800_000),
        ]
        let thumbnails = ThumbnailSettings(posterHeight: 180, tileHeight: 36, columns: 4, maxTiles: 10)
        // A short first chunk (one segment), then longer ones; the source's own keyframes (every 1.5 s) are not
        // on the 2 s grid, so later chunks start by decoding from an earlier keyframe and dropping frames.
        let ranges = [
            ChunkRange(index: 0, start: 0, end: 2, firstSegment: 0),
            ChunkRange(index: 1, start: 2, end: 6, firstSegment: 1),
            ChunkRange(index: 2, start: 6, end: nil, firstSegment: 3),
        ]
        var results: [ChunkResult] = []
        for range in ranges {
            let file = try FileSource(path: source)
            results.append(
                try await Transcoder.transcodeChunk(
                    source: file, chunk: range, ladder: ladder, settings: settings, thumbnails: thumbnails,
                    directory: "\(directory)/\(range.index)"))
        }
        #expect(results.map(\.frames) == [60, 120, 120])
        try FileManager.default.createDirectory(atPath: directory + "/whole", withIntermediateDirectories: true)
        let unchunked = try await Transcoder.transcode(
            input: source, ladder: ladder, settings: settings, directory: directory + "/whole")
        let audioPackets = try await Self.frames(unchunked.renditions[0].path, stream: "a:0").count
        #expect(results.map(\.audioPackets).reduce(0, +) == audioPackets)
        // Posters at 1, 5 and 9 s come from the chunks holding those times; the sprite's 10 tiles are shared.
        #expect(results.map { $0.thumbnails?.posters.count ?? 0 } == [1, 1, 1])
        #expect(results.map { $0.thumbnails?.sprite?.firstTile ?? -1 } == [0, 2, 6])
        #expect(results.map { $0.thumbnails?.sprite?.count ?? 0 } == [2, 4, 4])

        // The audio: a rendition of its own, its segments numbered and cut as the picture's, packet for packet as
        // unchunked (no gap, no overlap at the boundaries).
        let joinedAudio = "\(directory)/joined/audio-1"
        try FileManager.default.createDirectory(atPath: joinedAudio, withIntermediateDirectories: true)
        let firstAudio = try #require(results[0].audio)
        try FileManager.default.copyItem(atPath: firstAudio.directory + "/init.mp4", toPath: joinedAudio + "/init.mp4")
        var audioPlaylist =
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init.mp4\"\n"
        var audioSegments: [String] = []
        for result in results {
            let output = try #require(result.audio)
            for segment in output.segments {
                try FileManager.default.copyItem(
                    atPath: output.directory + "/" + segment.name, toPath: joinedAudio + "/" + segment.name)
                audioPlaylist += "#EXTINF:\(segment.duration),\n\(segment.name)\n"
                audioSegments.append(joinedAudio + "/" + segment.name)
            }
        }
        try (audioPlaylist + "#EXT-X-ENDLIST\n").write(
            toFile: joinedAudio + "/index.m3u8", atomically: true, encoding: .utf8)
        #expect(
            audioSegments.map { ($0 as NSString).lastPathComponent }
                == (0..<5).map { String(format: "seg-%05d.m4s", $0) })
        let audio = try await Self.frames(joinedAudio + "/index.m3u8", stream: "a:0")
        let wholeAudioHLS = try await Self.frames(unchunked.hlsDirectory + "/audio-1/index.m3u8", stream: "a:0")
        #expect(audio.count == audioPackets && wholeAudioHLS.count == audioPackets)
        let moved = zip(audio, wholeAudioHLS).filter { abs($0.pts - $1.pts) > 0.0005 }
        #expect(moved.isEmpty, "\(moved.prefix(3).map(\.0.pts))")

        for (rungIndex, rung) in ladder.enumerated() {
            let joined = "\(directory)/joined/\(rung.name)"
            try FileManager.default.createDirectory(atPath: joined, withIntermediateDirectories: true)
            try FileManager.default.copyItem(
                atPath: results[0].rungs[rungIndex].directory + "/init.mp4", toPath: joined + "/init.mp4")
            var playlist =
                "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MAP:URI=\"init.mp4\"\n"
            var segments: [String] = []
            for result in results {
                let output = result.rungs[rungIndex]
                for segment in output.segments {
                    try FileManager.default.copyItem(
                        atPath: output.directory + "/" + segment.name, toPath: joined + "/" + segment.name)
                    playlist += "#EXTINF:\(segment.duration),\n\(segment.name)\n"
                    segments.append(joined + "/" + segment.name)
                }
            }
            playlist += "#EXT-X-ENDLIST\n"
            #expect(
                segments.map { ($0 as NSString).lastPathComponent }
                    == (0..<5).map { String(format: "seg-%05d.m4s", $0) })
            try playlist.write(toFile: joined + "/index.m3u8", atomically: true, encoding: .utf8)
            // Every frame once, at the unchunked rendition's times, with a keyframe exactly every 2 s.
            let whole = unchunked.renditions[rungIndex].hls.directory + "/index.m3u8"
            let video = try await Self.frames(joined + "/index.m3u8", stream: "v:0")
            let wholeVideo = try await Self.frames(whole, stream: "v:0")
            #expect(video.count == 300 && wholeVideo.count == 300)
            let offGrid = zip(video, wholeVideo).filter { abs($0.pts - $1.pts) > 0.001 || $0.key != $1.key }
            #expect(offGrid.isEmpty, "\(offGrid.prefix(3).map(\.0.pts))")
            let origin = video.first?.pts ?? 0
            #expect(video.filter(\.key).map { (($0.pts - origin) * 10).rounded() / 10 } == [0, 2, 4, 6, 8])
            #expect(
                try await Self.frames(joined + "/index.m3u8", stream: "a").isEmpty, "the rung's segments hold no audio")
            // The progressive MP4 from the same segments and the audio's, by stream copy: faststart, every frame
            // and packet.
            let mp4 = "\(directory)/joined/\(rung.name).mp4"
            let (size, duration) = try await Assembly.progressiveMP4(
                initSection: joined + "/init.mp4", segments: segments,
                audio: (joinedAudio + "/init.mp4", audioSegments), output: mp4)
            #expect(size > 10_000 && abs(duration - 10) < 0.1)
            let mp4Video = try await Self.frames(mp4, stream: "v:0")
            let wholeMP4Video = try await Self.frames(unchunked.renditions[rungIndex].path, stream: "v:0")
            #expect(mp4Video.count == 300 && abs((mp4Video.first?.pts ?? 1) - (wholeMP4Video.first?.pts ?? 0)) < 0.001)
            let wholeAudio = try await Self.frames(unchunked.renditions[rungIndex].path, stream: "a:0")
            let mp4Audio = try await Self.frames(mp4, stream: "a:0")
            #expect(mp4Audio.count == wholeAudio.count)
            #expect(abs((mp4Audio.first?.pts ?? 1) - (wholeAudio.first?.pts ?? 0)) < 0.001)
            let head = try FileHandle(forReadingFrom: URL(fileURLWithPath: mp4)).read(upToCount: 64 * 1024) ?? Data()
            let moov = head.range(of: Data("moov".utf8))
            let mdat = head.range(of: Data("mdat".utf8))
            #expect(moov != nil && (mdat == nil || moov!.lowerBound < mdat!.lowerBound))
        }

        // One sprite from the three partial ones.
        let parts = results.compactMap(\.thumbnails?.sprite).map {
            Assembly.SpritePart(path: $0.path, firstTile: $0.firstTile, count: $0.count)
        }
        let sprite = results[0].thumbnails!.sprite!
        try await Assembly.sprite(
            parts: parts, columns: sprite.columns, tileWidth: sprite.tileWidth, tileHeight: sprite.tileHeight,
            output: directory + "/sprite.jpg")
        let probe = try #require(
            (try await Clips.ffprobe(directory + "/sprite.jpg")["streams"] as? [[String: Any]])?.first)
        #expect(probe["width"] as? Int == 4 * sprite.tileWidth && probe["height"] as? Int == 3 * 36)
    }

    /// Audio that runs 2 s past the picture: the last chunk encodes the last pictures and carries the audio to
    /// its end, and the chunks together hold every picture and every audio packet of the unchunked encode.
    @Test func audioPastThePictureStaysWithTheLastChunk() async throws {
        let source = try await Clips.make(
            "chunk-audio-longer.mp4",
            [
                "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=6",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=8",
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac",
            ])
        let directory = Clips.directory + "/chunks-longer-\(UUID().uuidString)"
        let settings = EncodingSettings(preset: "ultrafast", keyframeInterval: 2)
        let ladder = [Rung(name: "240p", height: 240, maxBitRate: 400_000)]
        var results: [ChunkResult] = []
        for range in [
            ChunkRange(index: 0, start: 0, end: 2, firstSegment: 0),
            ChunkRange(index: 1, start: 2, end: nil, firstSegment: 1),
        ] {
            results.append(
                try await Transcoder.transcodeChunk(
                    source: try FileSource(path: source), chunk: range, ladder: ladder, settings: settings,
                    thumbnails: nil, directory: "\(directory)/\(range.index)"))
        }
        #expect(results.map(\.frames) == [50, 100])
        try FileManager.default.createDirectory(atPath: directory + "/whole", withIntermediateDirectories: true)
        let unchunked = try await Transcoder.transcode(
            input: source, ladder: ladder, settings: settings, directory: directory + "/whole")
        let wholeAudio = try await Self.frames(unchunked.renditions[0].path, stream: "a:0")
        #expect(results.map(\.audioPackets).reduce(0, +) == wholeAudio.count)
        #expect(abs((wholeAudio.last?.pts ?? 0) - 8) < 0.1, "the audio ends at \(wholeAudio.last?.pts ?? 0) s")
    }

    /// Audio that is not AAC (Opus in Matroska, as WebM uploads carry) is encoded to AAC once for the whole
    /// video; the first chunk encodes its own range from the source (so it need not wait for that encode) and
    /// the later chunks mux the encode's packets. Joined, the rendition's audio is the single encode, packet
    /// for packet and byte for byte: no priming, gap or click at a chunk boundary.
    @Test func audioEncodedOnceIsTheJoinedRenditionsAudioByteForByte() async throws {
        let source = try await Clips.make(
            "chunk-opus-source.mkv",
            [
                "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=10",
                "-f", "lavfi", "-i",
                "aevalsrc=0.4*sin(2*PI*440*t)*sin(2*PI*0.7*t)+0.05*sin(2*PI*3000*t)+0.02*sin(2*PI*97*t*t):s=48000:d=10",
                "-c:v", "libx264", "-preset", "ultrafast", "-g", "45", "-c:a", "libopus", "-shortest",
            ])
        let directory = Clips.directory + "/chunks-opus-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let m4a = directory + "/audio.m4a"
        let encoded = try await Transcoder.encodeAudio(source: try FileSource(path: source), output: m4a)
        #expect(encoded.sampleRate == 48000 && abs(encoded.duration - 10) < 0.1 && encoded.codecs.hasPrefix("mp4a.40"))
        #expect(
            encoded.size
                == Int64((try FileManager.default.attributesOfItem(atPath: m4a)[.size] as? NSNumber)?.intValue ?? -1))
        let single = try await Self.packets(m4a)
        #expect(single.count == encoded.packets)

        let settings = EncodingSettings(preset: "ultrafast", keyframeInterval: 2)
        let ladder = [Rung(name: "240p", height: 240, maxBitRate: 400_000)]
        let ranges = [
            ChunkRange(index: 0, start: 0, end: 2, firstSegment: 0),
            ChunkRange(index: 1, start: 2, end: 6, firstSegment: 1),
            ChunkRange(index: 2, start: 6, end: nil, firstSegment: 3),
        ]
        var results: [ChunkResult] = []
        for range in ranges {
            let audio =
                range.index == 0 ? nil : ChunkAudioSource(source: try FileSource(path: m4a), leadIn: encoded.leadIn)
            results.append(
                try await Transcoder.transcodeChunk(
                    source: try FileSource(path: source), chunk: range, ladder: ladder, settings: settings,
                    audio: audio,
                    directory: "\(directory)/\(range.index)"))
        }
        #expect(results.map(\.frames) == [60, 120, 120])
        #expect(results.map(\.audioPackets).reduce(0, +) == encoded.packets)
        let segments = results.flatMap { result in
            result.rungs[0].segments.map { result.rungs[0].directory + "/" + $0.name }
        }
        let audioSegments = results.flatMap { result in
            (result.audio?.segments ?? []).map { result.audio!.directory + "/" + $0.name }
        }
        let mp4 = directory + "/joined.mp4"
        _ = try await Assembly.progressiveMP4(
            initSection: results[0].rungs[0].directory + "/init.mp4", segments: segments,
            audio: (results[0].audio!.directory + "/init.mp4", audioSegments), output: mp4)
        let joined = try await Self.packets(mp4)
        #expect(joined.count == single.count)
        let differing = zip(joined, single).enumerated().filter { $0.element.0.hash != $0.element.1.hash }.map(\.offset)
        #expect(differing.isEmpty, "packets \(differing.prefix(5)) differ from the single encode's")
        // Evenly spaced (1024 samples) from first to last, the first at the single encode's time.
        let steps = zip(joined.dropFirst(), joined).map { $0.pts - $1.pts }
        #expect(
            steps.allSatisfy { abs($0 - 1024.0 / 48000) < 0.0005 },
            "\(steps.filter { abs($0 - 1024.0 / 48000) >= 0.0005 })")
        #expect(abs((joined.first?.pts ?? 1) - (single.first?.pts ?? 0)) < 0.001)
        let video = try await Self.frames(mp4, stream: "v:0")
        #expect(video.count == 300)
    }

    /// The audio packets of `path`: presentation time and an MD5 of the payload.
    static func packets(_ path: String) async throws -> [(pts: Double, hash: String)] {
        let data = try await Clips.run(
            "ffprobe",
            [
                "-v", "error", "-select_streams", "a:0", "-show_data_hash", "MD5", "-show_entries",
                "packet=pts_time,data_hash",
                "-of", "json", path,
            ])
        // JSON, not CSV: the first packet's side data (the priming to skip) would add a line of its own.
        let packets =
            (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["packets"] as? [[String: Any]] ?? []
        return packets.compactMap { packet in
            guard let pts = (packet["pts_time"] as? String).flatMap(Double.init),
                let hash = packet["data_hash"] as? String
            else { return nil }
            return (pts, hash)
        }
    }

    /// Quality and size per rung as unchunked, with the chunk lengths `cinescale dev` uses (a 2 s first
    /// chunk, then 32 s) on a source x264 cannot fit under the rungs' maxrate (testsrc2's noise): the case
    /// where restarting the encoders (rate control, the VBV buffer) costs most.
    @Test func chunkedQualityAndBitRateMatchUnchunked() async throws {
        let source = try await Clips.make(
            "chunk-quality-source.mp4",
            [
                "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=70",
                "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-g", "60",
            ])
        let directory = Clips.directory + "/chunk-quality-\(UUID().uuidString)"
        let settings = EncodingSettings(preset: "veryfast", keyframeInterval: 4)
        let ladder = [
            Rung(name: "240p", height: 240, maxBitRate: 400_000), Rung(name: "360p", height: 360, maxBitRate: 800_000),
        ]
        let ranges = [
            ChunkRange(index: 0, start: 0, end: 2, firstSegment: 0),
            ChunkRange(index: 1, start: 2, end: 34, firstSegment: 1),
            ChunkRange(index: 2, start: 34, end: 66, firstSegment: 9),
            ChunkRange(index: 3, start: 66, end: nil, firstSegment: 17),
        ]
        var results: [ChunkResult] = []
        for range in ranges {
            results.append(
                try await Transcoder.transcodeChunk(
                    source: try FileSource(path: source), chunk: range, ladder: ladder, settings: settings,
                    thumbnails: nil,
                    directory: "\(directory)/\(range.index)"))
        }
        try FileManager.default.createDirectory(atPath: directory + "/whole", withIntermediateDirectories: true)
        let unchunked = try await Transcoder.transcode(
            input: source, ladder: ladder, settings: settings, directory: directory + "/whole")
        for (rungIndex, rung) in ladder.enumerated() {
            let segments = results.flatMap { result in
                result.rungs[rungIndex].segments.map { result.rungs[rungIndex].directory + "/" + $0.name }
            }
            let mp4 = "\(directory)/\(rung.name).mp4"
            let (size, _) = try await Assembly.progressiveMP4(
                initSection: results[0].rungs[rungIndex].directory + "/init.mp4", segments: segments, output: mp4)
            let whole = unchunked.renditions[rungIndex]
            let chunkedPSNR = try await Self.psnr(mp4, against: source, width: whole.width, height: whole.height)
            let wholePSNR = try await Self.psnr(whole.path, against: source, width: whole.width, height: whole.height)
            let wholeSize = try FileManager.default.attributesOfItem(atPath: whole.path)[.size] as? Int ?? 0
            print("\(rung.name): chunked \(chunkedPSNR) dB \(size) B, whole \(wholePSNR) dB \(wholeSize) B")
            #expect(
                abs(chunkedPSNR - wholePSNR) <= 0.1 && wholePSNR > 25,
                "\(rung.name): \(chunkedPSNR) dB vs \(wholePSNR) dB")
            #expect(abs(Double(size) / Double(wholeSize) - 1) <= 0.03, "\(rung.name): \(size) B vs \(wholeSize) B")
        }
    }

    /// A worker runs chunk after chunk in one process: every rung stage (its encoder, scaler and pictures) must
    /// be freed once its job is done. A stage that held its own Thread (which keeps its closure, which holds
    /// the stage) leaked ~340 MiB per four-rung 1080p chunk.
    @Test func everyRungStageIsFreedOnceItsChunkIsDone() async throws {
        let source = try await Self.tenSecondSource()
        let directory = Clips.directory + "/chunk-lifetime-\(UUID().uuidString)"
        let stages = try await MediaThread.run { () throws(MediaError) -> [Weak<RungStage>] in
            let job = try TranscodeJob(
                input: try InputFile(source: try FileSource(path: source)),
                ladder: [
                    Rung(name: "240p", height: 240, maxBitRate: 400_000),
                    Rung(name: "360p", height: 360, maxBitRate: 800_000),
                ],
                settings: EncodingSettings(preset: "ultrafast", keyframeInterval: 2), thumbnails: nil,
                directory: directory,
                chunk: ChunkRange(index: 1, start: 2, end: 6, firstSegment: 1))
            let result = try job.runChunk()
            guard result.frames == 120 else { throw MediaError(.transcodeFailed, "\(result.frames) frames") }
            return job.outputs.map { Weak($0) }
        }
        #expect(stages.count == 2)
        // The stages' threads release them as they end, just after the job returned: wait for that.
        let deadline = ContinuousClock.now + .seconds(120)
        while stages.contains(where: { $0.value != nil }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(stages.allSatisfy { $0.value == nil })
    }
}

/// `@unchecked Sendable`: `value` is set once in init; the runtime loads and zeroes weak references atomically.
final class Weak<T: AnyObject>: @unchecked Sendable {
    weak var value: T?
    init(_ value: T) { self.value = value }
}
