/// MPEG-DASH manifests (ISO/IEC 23009-1) over the same fMP4 segments as the HLS renditions: a static (VOD) MPD
/// whose every representation lists its init section and segments as URLs of their own (`SegmentList`, with a
/// `SegmentTimeline` of the segments' real durations), so each URL can carry its own signature — a
/// `SegmentTemplate` would need one URL pattern for all. Pure Swift, no I/O.
public enum DASH {
    public struct Segment: Sendable, Hashable {
        public var url: String
        /// Seconds.
        public var duration: Double

        public init(url: String, duration: Double) {
            self.url = url
            self.duration = duration
        }
    }

    public struct Representation: Sendable, Hashable {
        public var id: String
        /// Peak bit rate, bits per second.
        public var bandwidth: Int
        /// RFC 6381, this representation's own (`avc1.64001f`, `mp4a.40.2`).
        public var codecs: String
        public var width: Int?
        public var height: Int?
        public var frameRate: Double?
        public var sampleRate: Int?
        public var channels: Int?
        public var initialization: String
        public var segments: [Segment]

        public init(
            id: String, bandwidth: Int, codecs: String, width: Int? = nil, height: Int? = nil, frameRate: Double? = nil,
            sampleRate: Int? = nil, channels: Int? = nil, initialization: String, segments: [Segment]
        ) {
            self.id = id
            self.bandwidth = bandwidth
            self.codecs = codecs
            self.width = width
            self.height = height
            self.frameRate = frameRate
            self.sampleRate = sampleRate
            self.channels = channels
            self.initialization = initialization
            self.segments = segments
        }
    }

    /// A WebVTT side file (one file for the whole video).
    public struct TextTrack: Sendable, Hashable {
        public var id: String
        public var language: String?
        public var label: String
        public var url: String

        public init(id: String, language: String?, label: String, url: String) {
            self.id = id
            self.language = language
            self.label = label
            self.url = url
        }
    }

    public struct AudioSet: Sendable, Hashable {
        public var language: String?
        public var label: String
        /// The track a player starts with (`Role` main; the others alternate).
        public var isDefault: Bool
        public var representation: Representation

        public init(language: String?, label: String, isDefault: Bool, representation: Representation) {
            self.language = language
            self.label = label
            self.isDefault = isDefault
            self.representation = representation
        }
    }

    /// A static MPD: one period of `duration` seconds; one video adaptation set (the rungs, aligned segments),
    /// one audio adaptation set per track, one text adaptation set per caption track.
    public static func manifest(
        duration: Double, video: [Representation], audio: [AudioSet], text: [TextTrack]
    ) -> String {
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        xml += "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\""
        xml += " type=\"static\" mediaPresentationDuration=\"\(isoDuration(duration))\""
        xml += " minBufferTime=\"PT2S\">\n"
        xml += "  <Period id=\"0\" start=\"PT0S\">\n"
        var setID = 0
        if !video.isEmpty {
            xml += "    <AdaptationSet id=\"\(setID)\" contentType=\"video\" mimeType=\"video/mp4\""
            xml += " segmentAlignment=\"true\" startWithSAP=\"1\">\n"
            for representation in video { xml += self.representation(representation, indent: "      ") }
            xml += "    </AdaptationSet>\n"
            setID += 1
        }
        for set in audio {
            xml += "    <AdaptationSet id=\"\(setID)\" contentType=\"audio\" mimeType=\"audio/mp4\""
            if let language = set.language { xml += " lang=\"\(escape(language))\"" }
            xml += " segmentAlignment=\"true\" startWithSAP=\"1\">\n"
            xml += "      <Label>\(escape(set.label))</Label>\n"
            xml +=
                "      <Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"\(set.isDefault ? "main" : "alternate")\"/>\n"
            xml += representation(set.representation, indent: "      ")
            xml += "    </AdaptationSet>\n"
            setID += 1
        }
        for track in text {
            xml += "    <AdaptationSet id=\"\(setID)\" contentType=\"text\" mimeType=\"text/vtt\""
            if let language = track.language { xml += " lang=\"\(escape(language))\"" }
            xml += ">\n      <Label>\(escape(track.label))</Label>\n"
            xml += "      <Role schemeIdUri=\"urn:mpeg:dash:role:2011\" value=\"subtitle\"/>\n"
            xml += "      <Representation id=\"\(escape(track.id))\" bandwidth=\"256\">\n"
            xml += "        <BaseURL>\(escape(track.url))</BaseURL>\n"
            xml += "      </Representation>\n    </AdaptationSet>\n"
            setID += 1
        }
        return xml + "  </Period>\n</MPD>\n"
    }

    /// Milliseconds: the timeline's timescale.
    static let timescale = 1000

    static func representation(_ r: Representation, indent: String) -> String {
        var xml =
            "\(indent)<Representation id=\"\(escape(r.id))\" bandwidth=\"\(r.bandwidth)\" codecs=\"\(escape(r.codecs))\""
        if let width = r.width, let height = r.height { xml += " width=\"\(width)\" height=\"\(height)\"" }
        if let rate = r.frameRate { xml += " frameRate=\"\(frameRate(rate))\"" }
        if let sampleRate = r.sampleRate { xml += " audioSamplingRate=\"\(sampleRate)\"" }
        xml += ">\n"
        if let channels = r.channels {
            xml += "\(indent)  <AudioChannelConfiguration"
            xml += " schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"\(channels)\"/>\n"
        }
        xml += "\(indent)  <SegmentList timescale=\"\(timescale)\">\n"
        xml += "\(indent)    <Initialization sourceURL=\"\(escape(r.initialization))\"/>\n"
        xml += "\(indent)    <SegmentTimeline>\n"
        // Each segment's start and length rounded from the running total, so rounding never accumulates.
        var elapsed = 0.0
        var runs: [(duration: Int, repeats: Int)] = []
        for segment in r.segments {
            let start = Int((elapsed * Double(timescale)).rounded())
            elapsed += max(0, segment.duration)
            let length = Int((elapsed * Double(timescale)).rounded()) - start
            if let last = runs.last, last.duration == length {
                runs[runs.count - 1].repeats += 1
            } else {
                runs.append((length, 0))
            }
        }
        for (index, run) in runs.enumerated() {
            xml += "\(indent)      <S"
            if index == 0 { xml += " t=\"0\"" }
            xml += " d=\"\(run.duration)\""
            if run.repeats > 0 { xml += " r=\"\(run.repeats)\"" }
            xml += "/>\n"
        }
        xml += "\(indent)    </SegmentTimeline>\n"
        for segment in r.segments { xml += "\(indent)    <SegmentURL media=\"\(escape(segment.url))\"/>\n" }
        xml += "\(indent)  </SegmentList>\n\(indent)</Representation>\n"
        return xml
    }

    /// `PT12.345S`.
    static func isoDuration(_ seconds: Double) -> String {
        let millis = Int((max(0, seconds) * 1000).rounded())
        let fraction = String(millis % 1000)
        return "PT\(millis / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)S"
    }

    /// `30` or `30000/1001`.
    static func frameRate(_ rate: Double) -> String {
        if abs(rate - rate.rounded()) < 0.001 { return String(Int(rate.rounded())) }
        let ntsc = rate * 1.001
        if abs(ntsc - ntsc.rounded()) < 0.01 { return "\(Int(ntsc.rounded()) * 1000)/1001" }
        return "\(Int((rate * 1000).rounded()))/1000"
    }

    /// Text and attribute values: `&`, `<`, `>`, `"` escaped (a presigned URL's query holds `&`).
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(character)
            }
        }
        return out
    }
}
