import Foundation
import HLS
import MediaKit
import Testing

/// Text subtitle streams of a source → WebVTT renditions: the cues ffmpeg reads back from the written .vtt
/// must be the ones authored into the source (times within 10 ms, same text).
@Suite("Subtitles") struct SubtitleTests {
    static let english = [
        WebVTT.Cue(start: 0.5, end: 1.75, text: "Hello there."),
        WebVTT.Cue(start: 2.0, end: 3.25, text: "Two lines,\nthe second one."),
        WebVTT.Cue(start: 4.1, end: 5.6, text: "The last cue."),
    ]
    static let french = [
        WebVTT.Cue(start: 1.0, end: 2.5, text: "Bonjour."),
        WebVTT.Cue(start: 3.0, end: 4.0, text: "Gras et\nsur deux lignes."),
    ]

    static func srt(_ cues: [WebVTT.Cue]) -> String {
        cues.enumerated().map { index, cue in
            "\(index + 1)\n\(WebVTT.timestamp(cue.start).replacingOccurrences(of: ".", with: ",")) --> "
                + "\(WebVTT.timestamp(cue.end).replacingOccurrences(of: ".", with: ","))\n\(cue.text)\n"
        }.joined(separator: "\n")
    }

    /// An ASS script whose second event carries override tags (`{\b1}`) and a hard break (`\N`).
    static let ass = """
        [Script Info]
        ScriptType: v4.00+
        PlayResX: 320
        PlayResY: 240

        [V4+ Styles]
        Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
        Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1

        [Events]
        Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
        Dialogue: 0,0:00:01.00,0:00:02.50,Default,,0,0,0,,Bonjour.
        Dialogue: 0,0:00:03.00,0:00:04.00,Default,,0,0,0,,{\\b1}Gras{\\b0} et\\Nsur deux lignes.

        """

    static func write(_ text: String, _ name: String) throws -> String {
        let path = "\(Clips.directory)/\(name)"
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    static let videoInputs = [
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=6",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=6",
    ]
    static let videoCodecs = [
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", "-c:a", "aac",
    ]

    static func mp4WithMovText() async throws -> String {
        let srt = try write(srt(english), "english.srt")
        return try await Clips.make(
            "subtitled.mp4",
            videoInputs + ["-i", srt, "-map", "0:v", "-map", "1:a", "-map", "2:s"]
                + videoCodecs + [
                    "-c:s", "mov_text", "-metadata:s:s:0", "language=eng", "-metadata:s:s:0", "title=English",
                ])
    }

    static func mkvWithSubRipAndASS() async throws -> String {
        let srt = try write(srt(english), "english-mkv.srt")
        let ass = try write(ass, "french.ass")
        return try await Clips.make(
            "subtitled.mkv",
            videoInputs + [
                "-i", srt, "-i", ass,
                "-map", "0:v", "-map", "1:a", "-map", "2:s", "-map", "3:s",
            ] + videoCodecs
                + [
                    "-c:s:0", "srt", "-c:s:1", "ass", "-metadata:s:s:0", "language=eng", "-metadata:s:s:1",
                    "language=fre",
                    "-metadata:s:s:1", "title=Français",
                ])
    }

    /// The cues of a WebVTT file as ffmpeg reads it (its webvtt demuxer, written back out as WebVTT).
    static func cuesAsFFmpegReads(_ vtt: String) async throws -> [WebVTT.Cue] {
        let out = try await Clips.run("ffmpeg", ["-v", "error", "-copyts", "-i", vtt, "-f", "webvtt", "-"])
        return try WebVTT.parse(String(decoding: out, as: UTF8.self)).cues
    }

    static func expectSame(
        _ got: [WebVTT.Cue], _ expected: [WebVTT.Cue], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        #expect(got.map(\.text) == expected.map(\.text), sourceLocation: sourceLocation)
        for (a, b) in zip(got, expected) {
            #expect(
                abs(a.start - b.start) <= 0.010 && abs(a.end - b.end) <= 0.010, "\(a) vs \(b)",
                sourceLocation: sourceLocation)
        }
    }

    @Test func movTextInMP4BecomesAWebVTTRenditionOfTheWholeTranscode() async throws {
        let source = try await Self.mp4WithMovText()
        let directory = "\(Clips.directory)/subs-mp4-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let result = try await Transcoder.transcode(
            input: source, ladder: [Rung(name: "240p", height: 240, maxBitRate: 400_000)], directory: directory)
        try #require(result.subtitles.count == 1)
        let track = result.subtitles[0]
        // MP4 keeps no stream title (FFmpeg's muxer writes only a handler name): the label is the language.
        #expect(track.language == "eng" && track.label == "eng" && track.cues == 3)
        Self.expectSame(try await Self.cuesAsFFmpegReads("\(result.hlsDirectory)/\(track.vtt)"), Self.english)
        let master = try String(contentsOfFile: "\(result.hlsDirectory)/master.m3u8", encoding: .utf8)
        #expect(
            master.contains(
                "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"eng\",LANGUAGE=\"eng\",DEFAULT=NO,AUTOSELECT=YES,URI=\"subs-1/index.m3u8\""
            ))
        #expect(master.contains("SUBTITLES=\"subs\""))
        let playlist = try String(contentsOfFile: "\(result.hlsDirectory)/\(track.playlist)", encoding: .utf8)
        #expect(
            playlist.contains("#EXT-X-TARGETDURATION:6\n") && playlist.contains("captions.vtt")
                && playlist.contains("#EXT-X-ENDLIST"))
        // ffprobe reads the master with its subtitle rendition.
        // FFmpeg 5.1's hls demuxer reads subtitle renditions only with `-strict experimental` (otherwise it logs
        // "Can't support the subtitle" and leaves them out); a local file's .vtt is also outside its default
        // allowed_extensions (URLs over HTTP are not checked).
        let probe = try await Clips.run(
            "ffprobe",
            [
                "-v", "error", "-strict", "experimental", "-allowed_extensions", "ALL", "-show_entries",
                "stream=codec_type,codec_name:stream_tags=language", "-of", "json",
                "\(result.hlsDirectory)/master.m3u8",
            ])
        let streams =
            (try JSONSerialization.jsonObject(with: probe) as? [String: Any])?["streams"] as? [[String: Any]] ?? []
        let subtitle = streams.first { $0["codec_type"] as? String == "subtitle" }
        #expect(subtitle?["codec_name"] as? String == "webvtt")
        #expect((subtitle?["tags"] as? [String: Any])?["language"] as? String == "eng")
    }

    @Test func subRipAndASSInMatroskaAreExtractedApartAsTheChunkedFinishDoes() async throws {
        let source = try await Self.mkvWithSubRipAndASS()
        let started = ContinuousClock.now
        let tracks = try await Subtitles.extract(source: try FileSource(path: source))
        let extraction = ContinuousClock.now - started
        #expect(tracks.map(\.codec) == ["subrip", "ass"])
        #expect(tracks.map(\.language) == ["eng", "fre"])
        #expect(tracks.map(\.label) == ["eng", "Français"])
        let directory = "\(Clips.directory)/subs-mkv-\(UUID().uuidString)"
        let outputs = try Subtitles.write(tracks, hlsDirectory: directory, duration: 6)
        #expect(outputs.map(\.name) == ["subs-1", "subs-2"])
        Self.expectSame(try await Self.cuesAsFFmpegReads("\(directory)/\(outputs[0].vtt)"), Self.english)
        Self.expectSame(try await Self.cuesAsFFmpegReads("\(directory)/\(outputs[1].vtt)"), Self.french)

        // What the extraction adds, against the ladder's time for the same source (240p + 360p).
        try FileManager.default.createDirectory(atPath: directory + "/whole", withIntermediateDirectories: true)
        let ladderStart = ContinuousClock.now
        let whole = try await Transcoder.transcode(
            input: source, ladder: Array(Rung.defaultLadder.prefix(2)), directory: directory + "/whole")
        let ladder = ContinuousClock.now - ladderStart
        #expect(whole.subtitles.count == 2)
        print("subtitle extraction \(extraction) (separate pass) vs ladder \(ladder) for a 6 s 320x240 MKV")
    }
}

/// The cost of the subtitles against the ladder, on a source of a realistic length (60 s 720p30, a SubRip track of
/// one cue every 2 s): the whole transcode with and without the track, and the chunked finish's separate pass.
/// Run with CINESCALE_MEASURE=1 (minutes on 2 cores).
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["CINESCALE_MEASURE"] != nil))
struct SubtitleCostMeasurement {
    @Test func subtitleExtractionAgainstTheLadder() async throws {
        let cues = (0..<30).map {
            WebVTT.Cue(start: Double($0) * 2 + 0.2, end: Double($0) * 2 + 1.8, text: "Cue number \($0).")
        }
        let srt = try SubtitleTests.write(SubtitleTests.srt(cues), "measure.srt")
        let inputs = [
            "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=60",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=60", "-i", srt,
        ]
        let codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"]
        let with = try await Clips.make(
            "measure-subs.mkv", inputs + ["-map", "0:v", "-map", "1:a", "-map", "2:s"] + codecs + ["-c:s", "srt"])
        let without = try await Clips.make("measure-nosubs.mkv", inputs + ["-map", "0:v", "-map", "1:a"] + codecs)
        let ladder = Array(Rung.defaultLadder.prefix(3))
        func timed<T>(_ work: () async throws -> T) async rethrows -> (T, Duration) {
            let start = ContinuousClock.now
            let value = try await work()
            return (value, ContinuousClock.now - start)
        }
        var lines: [String] = []
        for round in 1...2 {
            let base = "\(Clips.directory)/measure-\(round)-\(UUID().uuidString)"
            for path in [base + "/a", base + "/b"] {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            }
            let (plain, plainTime) = try await timed {
                try await Transcoder.transcode(input: without, ladder: ladder, directory: base + "/a")
            }
            let (subbed, subbedTime) = try await timed {
                try await Transcoder.transcode(input: with, ladder: ladder, directory: base + "/b")
            }
            let (tracks, extractTime) = try await timed {
                try await Subtitles.extract(source: try FileSource(path: with))
            }
            #expect(plain.subtitles.isEmpty && subbed.subtitles.count == 1 && tracks.first?.cues.count == 30)
            lines.append(
                "round \(round): ladder without the track \(plainTime), with it (decoded in the same loop) \(subbedTime); separate pass \(extractTime)"
            )
            try? FileManager.default.removeItem(atPath: base)
        }
        print(lines.joined(separator: "\n"))
    }
}
