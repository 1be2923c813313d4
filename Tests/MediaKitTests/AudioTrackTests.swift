import Foundation
import HLS
import MediaKit
import Testing

/// Every audio track of a source becomes an AAC rendition of its own (`hls/audio-N/`), named in the master's
/// `AUDIO` group with its language; the rungs' HLS segments hold the picture only, the MP4 download the
/// ladder's audio.
@Suite("Audio tracks") struct AudioTrackTests {
    /// 6 s of picture, English AAC (the default), French MP3 (encoded to AAC), a mov_text subtitle track.
    static func twoAudioSource() async throws -> String {
        let srt = try SubtitleTests.write(SubtitleTests.srt(SubtitleTests.english), "two-audio.srt")
        return try await Clips.make(
            "two-audio.mkv",
            [
                "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=6",
                "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=6",
                "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=44100:duration=6",
                "-i", srt,
                "-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25",
                "-c:a:0", "aac", "-c:a:1", "libmp3lame", "-c:s", "srt",
                "-metadata:s:a:0", "language=eng", "-metadata:s:a:1", "language=fre", "-metadata:s:a:1",
                "title=Commentaire",
                "-metadata:s:s:0", "language=eng",
            ])
    }

    static func streams(_ path: String, _ extra: [String] = []) async throws -> [[String: Any]] {
        let probe = try await Clips.run(
            "ffprobe",
            [
                "-v", "error", "-allowed_extensions", "ALL",
            ] + extra + [
                "-show_entries", "stream=codec_type,codec_name,duration:stream_tags=language", "-of", "json", path,
            ])
        return (try JSONSerialization.jsonObject(with: probe) as? [String: Any])?["streams"] as? [[String: Any]] ?? []
    }

    @Test func everyAudioTrackBecomesARenditionOfTheWholeTranscode() async throws {
        let source = try await Self.twoAudioSource()
        let directory = "\(Clips.directory)/two-audio-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let result = try await Transcoder.transcode(
            input: source, ladder: [Rung(name: "240p", height: 240, maxBitRate: 400_000)], directory: directory)
        #expect(result.audio.map(\.name) == ["audio-1", "audio-2"])
        #expect(result.audio.map(\.language) == ["eng", "fre"])
        #expect(result.audio.map(\.label) == ["eng", "Commentaire"])
        #expect(result.audio.map(\.isMain) == [true, false])
        #expect(result.skippedAudio.isEmpty)
        let master = try String(contentsOfFile: "\(result.hlsDirectory)/master.m3u8", encoding: .utf8)
        #expect(
            master.contains(
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"eng\",LANGUAGE=\"eng\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"1\",URI=\"audio-1/index.m3u8\""
            ))
        #expect(
            master.contains(
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"Commentaire\",LANGUAGE=\"fre\",DEFAULT=NO,AUTOSELECT=YES,CHANNELS=\"1\",URI=\"audio-2/index.m3u8\""
            ))
        #expect(
            master.contains("AUDIO=\"audio\"") && master.contains("CODECS=\"avc1.") && master.contains(",mp4a.40.2\""))
        #expect(result.subtitles.count == 1)

        // The rung's segments: the picture only. Each audio rendition: its track, 6 s long, its language.
        let rung = try await Self.streams("\(result.hlsDirectory)/240p/index.m3u8")
        #expect(rung.map { $0["codec_type"] as? String } == ["video"])
        for (name, language) in [("audio-1", "eng"), ("audio-2", "fre")] {
            let audio = try await Self.streams("\(result.hlsDirectory)/\(name)/index.m3u8")
            #expect(audio.map { $0["codec_type"] as? String } == ["audio"])
            #expect(audio.first?["codec_name"] as? String == "aac")
            let header = try await Self.streams("\(result.hlsDirectory)/\(name)/init.mp4")
            #expect((header.first?["tags"] as? [String: Any])?["language"] as? String == language)
            let playlist = try MediaPlaylist(
                parsing: try String(contentsOfFile: "\(result.hlsDirectory)/\(name)/index.m3u8", encoding: .utf8))
            #expect(abs(playlist.duration - 6) < 0.1, "\(name): \(playlist.duration) s")
        }
        // The master as a player reads it: the picture and both audio tracks, by language.
        let all = try await Self.streams("\(result.hlsDirectory)/master.m3u8")
        let languages = all.filter { $0["codec_type"] as? String == "audio" }
            .compactMap { ($0["tags"] as? [String: Any])?["language"] as? String }
        #expect(Set(languages) == ["eng", "fre"])
        // The MP4 download carries the ladder's audio, tagged.
        let mp4 = try await Self.streams(result.renditions[0].path)
        #expect(mp4.map { $0["codec_type"] as? String } == ["video", "audio"])
        #expect((mp4.last?["tags"] as? [String: Any])?["language"] as? String == "eng")
    }

    @Test func theOtherTracksAreWrittenApartAsTheChunkedFinishDoes() async throws {
        let source = try await Self.twoAudioSource()
        let directory = "\(Clips.directory)/two-audio-apart-\(UUID().uuidString)"
        let (outputs, skipped) = try await Transcoder.audioRenditions(
            source: try FileSource(path: source), hlsDirectory: directory, segmentSeconds: 4, videoDelay: 0)
        #expect(skipped.isEmpty)
        #expect(outputs.map(\.name) == ["audio-2"])
        #expect(outputs.first?.segments.map(\.name) == ["seg-00000.m4s", "seg-00001.m4s"])
        let total = outputs.first?.segments.reduce(0) { $0 + $1.duration } ?? 0
        #expect(abs(total - 6) < 0.1)
        #expect(outputs.first?.codecs == "mp4a.40.2" && outputs.first?.sampleRate == 44100)
        // A source with one audio track has nothing more to write.
        let one = try await Clips.make("one-audio.mp4", SubtitleTests.videoInputs + SubtitleTests.videoCodecs)
        let none = try await Transcoder.audioRenditions(
            source: try FileSource(path: one), hlsDirectory: directory + "-one", segmentSeconds: 4, videoDelay: 0)
        #expect(none.outputs.isEmpty && none.skipped.isEmpty)
    }
}

/// What the extra audio and subtitle tracks cost (the target: at most 5 % of the ladder's time for a
/// source with two audio tracks and one subtitle track). `CINESCALE_MEASURE=1 swift test --filter
/// AudioCostMeasurement`; the sides alternate, and the figures are medians of the pairs.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["CINESCALE_MEASURE"] != nil))
struct AudioCostMeasurement {
    @Test func extraTracksAgainstTheLadder() async throws {
        let cues = (0..<30).map {
            WebVTT.Cue(start: Double($0) * 2 + 0.2, end: Double($0) * 2 + 1.8, text: "Cue number \($0).")
        }
        let srt = try SubtitleTests.write(SubtitleTests.srt(cues), "measure-audio.srt")
        let inputs = [
            "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=60",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=60",
            "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=48000:duration=60", "-i", srt,
        ]
        let codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"]
        let plain = try await Clips.make("measure-one-audio.mkv", inputs + ["-map", "0:v", "-map", "1:a"] + codecs)
        // The second track MP3, so it is decoded and encoded (the costlier case; AAC would be carried).
        let full = try await Clips.make(
            "measure-two-audio.mkv",
            inputs + ["-map", "0:v", "-map", "1:a", "-map", "2:a", "-map", "3:s"] + codecs + [
                "-c:a:1", "libmp3lame", "-c:s", "srt",
            ])
        let ladder = Array(Rung.defaultLadder.prefix(3))
        func timed(_ work: () async throws -> Void) async rethrows -> Double {
            let start = ContinuousClock.now
            try await work()
            let elapsed = ContinuousClock.now - start
            return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }
        var ratios: [Double] = []
        var passes: [Double] = []
        var lines: [String] = []
        for round in 1...3 {
            let base = "\(Clips.directory)/measure-audio-\(round)-\(UUID().uuidString)"
            for path in [base + "/a", base + "/b", base + "/c"] {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            }
            var one = 0.0
            var two = 0.0
            // Alternate which side goes first.
            if round % 2 == 1 {
                one = try await timed {
                    _ = try await Transcoder.transcode(input: plain, ladder: ladder, directory: base + "/a")
                }
                two = try await timed {
                    _ = try await Transcoder.transcode(input: full, ladder: ladder, directory: base + "/b")
                }
            } else {
                two = try await timed {
                    _ = try await Transcoder.transcode(input: full, ladder: ladder, directory: base + "/b")
                }
                one = try await timed {
                    _ = try await Transcoder.transcode(input: plain, ladder: ladder, directory: base + "/a")
                }
            }
            // The chunked finish's separate pass over the same source (the other track only).
            let pass = try await timed {
                let (outputs, _) = try await Transcoder.audioRenditions(
                    source: try FileSource(path: full), hlsDirectory: base + "/c", segmentSeconds: 4, videoDelay: 0)
                #expect(outputs.count == 1)
            }
            ratios.append(two / one)
            passes.append(pass / one)
            lines.append(
                String(
                    format:
                        "round %d: ladder, one audio track %.2f s; two tracks + subtitles %.2f s (%.3f×); separate pass %.3f s (%.2f %% of the ladder)",
                    round, one, two, two / one, pass, pass / one * 100))
            try? FileManager.default.removeItem(atPath: base)
        }
        lines.append(
            String(
                format: "median: whole transcode %.3f× the one-track ladder; the chunked finish's pass %.2f %% of it",
                ratios.sorted()[1], passes.sorted()[1] * 100))
        print(lines.joined(separator: "\n"))
    }
}
