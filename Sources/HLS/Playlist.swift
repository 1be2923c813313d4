/// HLS playlists (RFC 8216) as text: reading a media playlist's segments, writing a master playlist, and
/// rewriting every URI a playlist names (what signing each segment for a viewer needs). Pure Swift, no I/O.

/// One segment of a media playlist.
public struct MediaSegment: Sendable, Hashable {
    /// `#EXTINF` duration, seconds.
    public var duration: Double
    /// The URI line, as written (usually relative to the playlist).
    public var uri: String
}

/// A media playlist's segments and initialisation section (`#EXT-X-MAP`).
public struct MediaPlaylist: Sendable, Hashable {
    public var targetDuration: Int?
    public var mapURI: String?
    public var segments: [MediaSegment]
    /// `#EXT-X-ENDLIST` seen: the playlist is complete (VOD).
    public var isComplete: Bool

    public var duration: Double { segments.reduce(0) { $0 + $1.duration } }

    /// Parses `text`; throws when it is not a playlist or an `#EXTINF` lacks its URI.
    public init(parsing text: String) throws(PlaylistError) {
        let lines = Playlist.lines(text)
        guard lines.first == "#EXTM3U" else {
            throw PlaylistError("not an HLS playlist: the first line is not #EXTM3U")
        }
        targetDuration = nil
        mapURI = nil
        segments = []
        isComplete = false
        var pending: Double?
        for line in lines.dropFirst() where !line.isEmpty {
            if line.hasPrefix("#EXTINF:") {
                let value = line.dropFirst("#EXTINF:".count).prefix { $0 != "," }
                guard let duration = Double(value), duration >= 0 else {
                    throw PlaylistError("bad #EXTINF line: \(line)")
                }
                pending = duration
            } else if line.hasPrefix("#EXT-X-TARGETDURATION:") {
                targetDuration = Int(line.dropFirst("#EXT-X-TARGETDURATION:".count))
            } else if line.hasPrefix("#EXT-X-MAP:") {
                mapURI = Playlist.attributes(line.dropFirst("#EXT-X-MAP:".count))["URI"]
            } else if line == "#EXT-X-ENDLIST" {
                isComplete = true
            } else if !line.hasPrefix("#") {
                guard let duration = pending else { throw PlaylistError("segment URI without #EXTINF: \(line)") }
                segments.append(MediaSegment(duration: duration, uri: line))
                pending = nil
            }
        }
        if pending != nil { throw PlaylistError("the last #EXTINF has no URI") }
    }
}

/// One `#EXT-X-STREAM-INF` entry of a master playlist.
public struct Variant: Sendable, Hashable, Codable {
    /// Peak segment bit rate, bits per second.
    public var bandwidth: Int
    /// Average bit rate over the whole rendition, bits per second.
    public var averageBandwidth: Int?
    public var width: Int
    public var height: Int
    /// RFC 6381 codecs, e.g. `avc1.64001f,mp4a.40.2`.
    public var codecs: String
    public var frameRate: Double?
    public var uri: String

    public init(
        bandwidth: Int, averageBandwidth: Int?, width: Int, height: Int, codecs: String, frameRate: Double?, uri: String
    ) {
        self.bandwidth = bandwidth
        self.averageBandwidth = averageBandwidth
        self.width = width
        self.height = height
        self.codecs = codecs
        self.frameRate = frameRate
        self.uri = uri
    }
}

public enum Playlist {
    /// A master playlist listing `variants` (lowest first is what players start with when they know nothing).
    /// With `audio`, one `#EXT-X-MEDIA:TYPE=AUDIO` per track and `AUDIO="audio"` on every variant (whose
    /// segments then hold the picture only: the variant's BANDWIDTH and CODECS must already count the audio).
    /// With `subtitles`, one `#EXT-X-MEDIA:TYPE=SUBTITLES` per track and `SUBTITLES="subs"` on every variant.
    public static func master(
        _ variants: [Variant], audio: [AudioRendition] = [], subtitles: [SubtitleRendition] = [],
        independentSegments: Bool = true
    ) -> String {
        var text = "#EXTM3U\n#EXT-X-VERSION:7\n"
        if independentSegments { text += "#EXT-X-INDEPENDENT-SEGMENTS\n" }
        for track in audio { text += track.mediaTag + "\n" }
        for track in subtitles { text += track.mediaTag + "\n" }
        for variant in variants {
            var attributes = ["BANDWIDTH=\(variant.bandwidth)"]
            if let average = variant.averageBandwidth { attributes.append("AVERAGE-BANDWIDTH=\(average)") }
            attributes.append("RESOLUTION=\(variant.width)x\(variant.height)")
            attributes.append("CODECS=\"\(variant.codecs)\"")
            if let rate = variant.frameRate { attributes.append("FRAME-RATE=\(formatRate(rate))") }
            if !audio.isEmpty { attributes.append("AUDIO=\"\(audioGroup)\"") }
            if !subtitles.isEmpty { attributes.append("SUBTITLES=\"\(subtitleGroup)\"") }
            text += "#EXT-X-STREAM-INF:\(attributes.joined(separator: ","))\n\(variant.uri)\n"
        }
        return text
    }

    /// A VOD media playlist of fMP4 segments (`uri`, seconds) with one initialisation section, as FFmpeg's HLS
    /// muxer writes them (TARGETDURATION is the longest segment rounded to the nearest second, RFC 8216 4.3.3.1).
    public static func media(segments: [(uri: String, duration: Double)], mapURI: String) -> String {
        let target = max(1, segments.map { Int($0.duration.rounded()) }.max() ?? 1)
        var text = "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:\(target)\n#EXT-X-MEDIA-SEQUENCE:0\n"
        text += "#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"\(mapURI)\"\n"
        for segment in segments {
            let micros = Int((max(0, segment.duration) * 1_000_000).rounded())
            let fraction = String(micros % 1_000_000)
            let decimals = String(repeating: "0", count: 6 - fraction.count) + fraction
            text += "#EXTINF:\(micros / 1_000_000).\(decimals),\n\(segment.uri)\n"
        }
        return text + "#EXT-X-ENDLIST\n"
    }

    /// Peak and average bit rates of a media playlist's segments, given each segment's size in bytes
    /// (`size(uri)`; nil when unknown, which makes the whole answer nil).
    public static func bitRates(of playlist: MediaPlaylist, size: (String) -> Int64?) -> (peak: Int, average: Int)? {
        var segments: [(duration: Double, size: Int64)] = []
        segments.reserveCapacity(playlist.segments.count)
        for segment in playlist.segments {
            guard let length = size(segment.uri) else { return nil }
            segments.append((segment.duration, length))
        }
        return bitRates(segments)
    }

    /// Peak and average bit rates of segments of `duration` seconds and `size` bytes, rounded up: the peak over
    /// the segments of a second or more (every one when there is only one), never below the average. Nil when
    /// they last no time. What a variant's `BANDWIDTH` and `AVERAGE-BANDWIDTH` say.
    public static func bitRates(_ segments: [(duration: Double, size: Int64)]) -> (peak: Int, average: Int)? {
        var peak = 0.0
        var bytes: Int64 = 0
        var duration = 0.0
        for segment in segments {
            bytes += segment.size
            duration += segment.duration
            // A segment under a second (the last one, usually) says little about the peak rate.
            if segment.duration >= 1 || segments.count == 1 {
                peak = max(peak, Double(segment.size) * 8 / max(segment.duration, 0.001))
            }
        }
        guard duration > 0 else { return nil }
        let average = Double(bytes) * 8 / duration
        return (Int(max(peak, average).rounded(.up)), Int(average.rounded(.up)))
    }

    /// `text` with every URI it names passed through `transform`: URI lines (segments, child playlists) and
    /// `URI="…"` attributes (`#EXT-X-MAP`, `#EXT-X-MEDIA`, `#EXT-X-KEY`, `#EXT-X-I-FRAME-STREAM-INF`, …).
    public static func rewritingURIs(_ text: String, _ transform: (String) throws -> String) rethrows -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count * 2)
        for line in lines(text) {
            if line.isEmpty {
                out += "\n"
            } else if !line.hasPrefix("#") {
                out += try transform(line) + "\n"
            } else if let range = line.firstRange(of: "URI=\"") {
                var rest = line[range.upperBound...]
                var rewritten = String(line[..<range.upperBound])
                guard let close = rest.firstIndex(of: "\"") else {
                    out += line + "\n"
                    continue
                }
                rewritten += try transform(String(rest[..<close]))
                rest = rest[close...]
                out += rewritten + rest + "\n"
            } else {
                out += line + "\n"
            }
        }
        return out
    }

    /// Lines without their terminators (LF or CRLF), trimmed of trailing spaces.
    static func lines(_ text: String) -> [String] {
        // "\r\n" is one Character in Swift, so both terminators are named.
        text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).map { line in
            var l = Substring(line)
            while let last = l.last, last == "\r" || last == " " || last == "\t" { l = l.dropLast() }
            return String(l)
        }.reversed().drop { $0.isEmpty }.reversed()
    }

    /// An attribute list (`KEY=VALUE,KEY="quoted, value"`).
    static func attributes(_ list: Substring) -> [String: String] {
        var result: [String: String] = [:]
        var rest = list[...]
        while !rest.isEmpty {
            guard let equals = rest.firstIndex(of: "=") else { break }
            let key = rest[..<equals].trimmingSpaces()
            rest = rest[rest.index(after: equals)...]
            var value: Substring
            if rest.first == "\"" {
                rest = rest.dropFirst()
                let close = rest.firstIndex(of: "\"") ?? rest.endIndex
                value = rest[..<close]
                rest = close < rest.endIndex ? rest[rest.index(after: close)...] : rest[close...]
                if let comma = rest.firstIndex(of: ",") { rest = rest[rest.index(after: comma)...] } else { rest = "" }
            } else {
                let comma = rest.firstIndex(of: ",") ?? rest.endIndex
                value = rest[..<comma]
                rest = comma < rest.endIndex ? rest[rest.index(after: comma)...] : ""
            }
            result[String(key)] = String(value)
        }
        return result
    }

    static func formatRate(_ rate: Double) -> String {
        let thousandths = Int((rate * 1000).rounded())
        let fraction = String(thousandths % 1000)
        return "\(thousandths / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
    }
}

/// A playlist that could not be read.
public struct PlaylistError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Substring {
    fileprivate func trimmingSpaces() -> Substring {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return s
    }
}
