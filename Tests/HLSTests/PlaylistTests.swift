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

    @Test func masterPlaylistsCarryWhatPlayersChooseBy() {
        let text = Playlist.master([
            Variant(
                bandwidth: 600_000, averageBandwidth: 480_000, width: 426, height: 240, codecs: "avc1.64001e,mp4a.40.2",
                frameRate: 30000.0 / 1001, uri: "240p/index.m3u8"),
            Variant(
                bandwidth: 1_200_000, averageBandwidth: nil, width: 640, height: 360, codecs: "avc1.64001f",
                frameRate: 25, uri: "360p/index.m3u8"),
        ])
        #expect(text == """
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
        let master = "#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"a\",NAME=\"en\",URI=\"audio/en.m3u8\"\n"
            + "#EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO=\"a\"\nv/index.m3u8\n"
        #expect(Playlist.rewritingURIs(master) { "/s/" + $0 } == """
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
