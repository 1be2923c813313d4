import Foundation
import HLS
import Testing

@Suite("HLS playlists")
struct PlaylistTests {
    // What FFmpeg 5.1's hls muxer writes for fMP4 segments (hls_playlist_type vod, independent_segments).
    static let media = """
        #EXTM3U
        #EXT-X-VERSION:7
        #EXT-X-TARGETDURATION:4
        #EXT-X-MEDIA-SEQUENCE:0
        #EXT-X-PLAYLIST-TYPE:VOD
        #EXT-X-INDEPENDENT-SEGMENTS
        #EXT-X-MAP:URI="init.mp4"
        #EXTINF:4.000000,
        seg-00000.m4s
        #EXTINF:4.000000,
        seg-00001.m4s
        #EXTINF:2.000000,
        seg-00002.m4s
        #EXT-X-ENDLIST

        """

    @Test func mediaPlaylistsAreRead() throws {
        let playlist = try MediaPlaylist(parsing: Self.media)
        #expect(playlist.targetDuration == 4)
        #expect(playlist.mapURI == "init.mp4")
        #expect(playlist.segments.map(\.uri) == ["seg-00000.m4s", "seg-00001.m4s", "seg-00002.m4s"])
        #expect(playlist.duration == 10)
        #expect(playlist.isComplete)
        #expect(try MediaPlaylist(parsing: Self.media.replacingOccurrences(of: "\n", with: "\r\n")) == playlist)
    }

    @Test func brokenPlaylistsAreRefused() {
        #expect(throws: PlaylistError.self) { try MediaPlaylist(parsing: "<html>") }
        #expect(throws: PlaylistError.self) { try MediaPlaylist(parsing: "#EXTM3U\n#EXTINF:x,\na.ts\n") }
        #expect(throws: PlaylistError.self) { try MediaPlaylist(parsing: "#EXTM3U\n#EXTINF:4,\n") }
        #expect(throws: PlaylistError.self) { try MediaPlaylist(parsing: "#EXTM3U\nlonely.ts\n") }
    }

    @Test func bitRatesArePeakAndAverageOfTheSegments() throws {
        let playlist = try MediaPlaylist(parsing: Self.media)
        let sizes: [String: Int64] = ["seg-00000.m4s": 200_000, "seg-00001.m4s": 300_000, "seg-00002.m4s": 100_000]
        let rates = try #require(Playlist.bitRates(of: playlist) { sizes[$0] })
        #expect(rates.peak == 600_000)  // 300 000 bytes in 4 s
        #expect(rates.average == 480_000)  // 600 000 bytes in 10 s
        #expect(Playlist.bitRates(of: playlist) { _ in nil } == nil)
    }

    @Test func bitRatesOfSegmentsCountAShortSegmentOnlyAlone() throws {
        // The 0.5 s tail's 1.6 Mb/s is not the peak; the average never exceeds it.
        let rates = try #require(Playlist.bitRates([(4, 300_000), (4, 200_000), (0.5, 100_000)]))
        #expect(rates.peak == 600_000)
        #expect(rates.average == Int((Double(600_000 * 8) / 8.5).rounded(.up)))
        #expect(try #require(Playlist.bitRates([(0.5, 100_000)])).peak == 1_600_000)
        #expect(Playlist.bitRates([]) == nil)
    }

    @Test func masterPlaylistsCarryWhatPlayersChooseBy() {
        let text = Playlist.master([
            Variant(
                bandwidth: 600_000, averageBandwidth: 480_000, width: 426, height: 240, codecs: "avc1.64001e,mp4a.40.2",
                frameRate: 30000.0 / 1001, uri: "240p/index.m3u8"),
            Variant(
                bandwidth: 1_200_000, averageBandwidth: nil, width: 640, height: 360, codecs: "avc1.64001f",
                frameRate: 25, uri: "360p/index.m3u8"),
        ])
        #expect(
            text == """
                #EXTM3U
                #EXT-X-VERSION:7
                #EXT-X-INDEPENDENT-SEGMENTS
                #EXT-X-STREAM-INF:BANDWIDTH=600000,AVERAGE-BANDWIDTH=480000,RESOLUTION=426x240,CODECS="avc1.64001e,mp4a.40.2",FRAME-RATE=29.970
                240p/index.m3u8
                #EXT-X-STREAM-INF:BANDWIDTH=1200000,RESOLUTION=640x360,CODECS="avc1.64001f",FRAME-RATE=25.000
                360p/index.m3u8

                """)
    }

    @Test func everyURIIsRewritten() {
        let rewritten = Playlist.rewritingURIs(Self.media) { "https://cdn/v/\($0)?sig=1" }
        #expect(rewritten.contains("#EXT-X-MAP:URI=\"https://cdn/v/init.mp4?sig=1\"\n"))
        #expect(rewritten.contains("\nhttps://cdn/v/seg-00002.m4s?sig=1\n"))
        #expect(!rewritten.contains("\nseg-"))
        let master =
            "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en.m3u8\"\n"
            + "#EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"a\"\nv/index.m3u8\n"
        #expect(
            Playlist.rewritingURIs(master) { "/s/" + $0 } == """
                #EXTM3U
                #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",URI="/s/audio/en.m3u8"
                #EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO="a"
                /s/v/index.m3u8

                """)
    }

    @Test func codecStringsComeFromTheEncodersConfiguration() {
        // libx264's extradata: Annex B, SPS (High, level 3.0) then PPS.
        let annexB: [UInt8] = [0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1E, 0xAC, 0xD9, 0, 0, 0, 1, 0x68, 0xEB]
        #expect(Codecs.avc1(extradata: annexB) == "avc1.64001e")
        #expect(Codecs.avc1(extradata: [1, 0x42, 0xC0, 0x0D, 0xFF]) == "avc1.42c00d")
        #expect(Codecs.avc1(extradata: [0, 0, 1, 0x68, 1, 2, 3]) == nil)
        #expect(Codecs.mp4a(ffmpegProfile: 1) == "mp4a.40.2")
        #expect(Codecs.mp4a(ffmpegProfile: 4) == "mp4a.40.5")
        #expect(Codecs.mp4a(ffmpegProfile: -99) == "mp4a.40.2")
    }
}

@Suite("Subtitle renditions and WebVTT")
struct SubtitleRenditionTests {
    static let variant = Variant(
        bandwidth: 500_000, averageBandwidth: 400_000, width: 426, height: 240, codecs: "avc1.64001e,mp4a.40.2",
        frameRate: 25, uri: "240p/index.m3u8")

    @Test func theMasterNamesEachTrackAndEveryVariantItsGroup() {
        let text = Playlist.master(
            [Self.variant, Self.variant],
            subtitles: [
                SubtitleRendition(name: "English", language: "eng", uri: "subs-1/index.m3u8"),
                SubtitleRendition(name: "Say \"hi\"", language: nil, uri: "subs-2/index.m3u8"),
            ])
        let lines = text.split(separator: "\n").map(String.init)
        #expect(
            lines.contains(
                "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"English\",LANGUAGE=\"eng\",DEFAULT=NO,AUTOSELECT=YES,URI=\"subs-1/index.m3u8\""
            ))
        #expect(
            lines.contains(
                "#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID=\"subs\",NAME=\"Say 'hi'\",DEFAULT=NO,AUTOSELECT=YES,URI=\"subs-2/index.m3u8\""
            ))
        let variants = lines.filter { $0.hasPrefix("#EXT-X-STREAM-INF:") }
        #expect(variants.count == 2 && variants.allSatisfy { $0.hasSuffix(",SUBTITLES=\"subs\"") })
        // Without tracks, nothing changes.
        #expect(!Playlist.master([Self.variant]).contains("SUBTITLES"))
        // The API's rewriting signs the subtitle playlist's URI like any other.
        let signed = Playlist.rewritingURIs(text) { "\($0)?sig=1" }
        #expect(signed.contains("URI=\"subs-1/index.m3u8?sig=1\""))
    }

    @Test func aTrackIsAddedToAWrittenMaster() {
        let before = Playlist.master([Self.variant])
        let one = Playlist.addingSubtitles(
            before, SubtitleRendition(name: "English", language: "en", uri: "subs-1/index.m3u8"))
        let two = Playlist.addingSubtitles(
            one, SubtitleRendition(name: "Deutsch", language: "de", uri: "subs-2/index.m3u8"))
        #expect(
            two
                == Playlist.master(
                    [Self.variant],
                    subtitles: [
                        SubtitleRendition(name: "English", language: "en", uri: "subs-1/index.m3u8"),
                        SubtitleRendition(name: "Deutsch", language: "de", uri: "subs-2/index.m3u8"),
                    ]))
    }

    @Test func aSubtitlePlaylistIsOneSegmentOfTheWholeDuration() throws {
        let text = Playlist.subtitleMedia(uri: "captions.vtt", duration: 12.04)
        #expect(text.contains("#EXT-X-TARGETDURATION:13\n") && text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"))
        let playlist = try MediaPlaylist(parsing: text)
        #expect(
            playlist.segments.map(\.uri) == ["captions.vtt"] && playlist.segments[0].duration == 12.04
                && playlist.isComplete)
    }

    @Test func subRipBecomesWebVTT() throws {
        let srt =
            "\u{FEFF}1\r\n00:00:01,000 --> 00:00:02,500\r\nHello\r\nworld\r\n\r\n2\r\n01:00:03,250 --> 01:00:04,000\r\n-->\r\n"
        let (format, cues) = try WebVTT.parse(srt)
        #expect(format == "srt")
        #expect(
            cues == [
                WebVTT.Cue(start: 1, end: 2.5, text: "Hello\nworld"),
                WebVTT.Cue(start: 3603.25, end: 3604, text: "-->"),
            ])
        #expect(
            WebVTT.document(cues)
                == "WEBVTT\n\n00:00:01.000 --> 00:00:02.500\nHello\nworld\n\n01:00:03.250 --> 01:00:04.000\n->\n")
        let vtt = try WebVTT.parse("WEBVTT\n\nNOTE a comment\n\nid-1\n00:01.000 --> 00:02.000 align:start\nHi\n")
        #expect(vtt.format == "webvtt" && vtt.cues == [WebVTT.Cue(start: 1, end: 2, text: "Hi")])
    }

    @Test func neitherSubRipNorWebVTTIsRefused() {
        #expect(throws: PlaylistError.self) { try WebVTT.parse("hello, this is not a caption file\n") }
        #expect(throws: PlaylistError.self) { try WebVTT.parse("") }
        #expect(throws: PlaylistError.self) { try WebVTT.parse("1\n00:00:01.000 --> 00:00:02,000\nmixed\n") }
        #expect(throws: PlaylistError.self) { try WebVTT.parse("WEBVTT\n\n00:00:05.000 --> 00:00:02.000\nbackwards\n") }
    }

    @Test func assDialogueTextLosesItsOverridesAndKeepsItsBreaks() {
        #expect(
            WebVTT.textOfASSDialogue("0,0,Default,,0,0,0,,{\\b1}Gras{\\b0} et\\Nsur, deux lignes.")
                == "Gras et\nsur, deux lignes.")
        #expect(WebVTT.textOfASSDialogue("Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,a\\hb\\nc") == "a b\nc")
    }
}
