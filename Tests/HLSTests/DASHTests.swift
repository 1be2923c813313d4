import Foundation
import HLS
import Testing

#if canImport(FoundationXML)
    import FoundationXML
#endif

@Suite("DASH manifests") struct DASHTests {
    static let video = DASH.Representation(
        id: "240p", bandwidth: 400_000, codecs: "avc1.64000d", width: 426, height: 240, frameRate: 30000.0 / 1001,
        initialization: "https://store/m/v/hls/240p/init.mp4?a=1&b=2",
        segments: [2.0, 4.0, 4.0, 4.0, 1.333333].enumerated().map {
            DASH.Segment(
                url: "https://store/m/v/hls/240p/seg-0000\($0.offset).m4s?X-Amz-Signature=\($0.offset)&x=<y>",
                duration: $0.element)
        })

    @Test func aTimelineOfTheRealDurationsRunLengthEncodedWithoutDrift() throws {
        let mpd = DASH.manifest(duration: 15.333333, video: [Self.video], audio: [], text: [])
        // 2 s, then 4 s three times (r=2), then the rest: starts rounded from the running total, so the lengths
        // add up to the duration exactly.
        #expect(
            mpd.contains("<S t=\"0\" d=\"2000\"/>\n") && mpd.contains("<S d=\"4000\" r=\"2\"/>\n")
                && mpd.contains("<S d=\"1333\"/>\n"))
        #expect(mpd.contains("mediaPresentationDuration=\"PT15.333S\"") && mpd.contains("type=\"static\""))
        #expect(mpd.contains("frameRate=\"30000/1001\"") && mpd.contains("width=\"426\" height=\"240\""))
    }

    @Test func everyURLIsEscapedAndTheDocumentParses() throws {
        let audio = DASH.AudioSet(
            language: "fra", label: "Commentaire \"du\" réalisateur", isDefault: false,
            representation: DASH.Representation(
                id: "audio-2", bandwidth: 130_000, codecs: "mp4a.40.2", sampleRate: 48000, channels: 2,
                initialization: "https://store/m/v/hls/audio-2/init.mp4?a=1&b=2",
                segments: [DASH.Segment(url: "https://store/s?x=1&y=2", duration: 4)]))
        let text = DASH.TextTrack(id: "subs-1", language: "eng", label: "English", url: "subs-1.vtt?token=a.b.c")
        let mpd = DASH.manifest(duration: 4, video: [Self.video], audio: [audio], text: [text])
        #expect(!mpd.contains("&b=") && mpd.contains("a=1&amp;b=2") && mpd.contains("&lt;y&gt;"))
        // A real XML parser reads it back: the URLs as they were, one set per track.
        let document = try XMLDocument(data: Data(mpd.utf8))
        let sets = try document.nodes(forXPath: "//*[local-name()='AdaptationSet']")
        #expect(sets.count == 3)
        let urls = try document.nodes(forXPath: "//*[local-name()='SegmentURL']/@media").compactMap { $0.stringValue }
        #expect(
            urls.first == "https://store/m/v/hls/240p/seg-00000.m4s?X-Amz-Signature=0&x=<y>"
                && urls.last == "https://store/s?x=1&y=2")
        #expect(
            mpd.contains("<Label>Commentaire &quot;du&quot; réalisateur</Label>") && mpd.contains("value=\"alternate\"")
        )
        #expect(
            mpd.contains("<BaseURL>subs-1.vtt?token=a.b.c</BaseURL>")
                && mpd.contains("mimeType=\"text/vtt\" lang=\"eng\""))
        #expect(
            mpd.contains("audioSamplingRate=\"48000\"")
                && mpd.contains("audio_channel_configuration:2011\" value=\"2\""))
    }
}
