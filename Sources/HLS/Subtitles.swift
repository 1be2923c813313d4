/// Subtitle renditions of an HLS tree (RFC 8216 4.3.4.1 `EXT-X-MEDIA:TYPE=SUBTITLES`) and the WebVTT files they
/// name: writing cues, and reading a caption file that is WebVTT or SubRip. Pure Swift, no I/O.

/// One subtitle track as the master playlist names it.
public struct SubtitleRendition: Sendable, Hashable, Codable {
    /// `NAME`: what a player shows in its menu.
    public var name: String
    /// `LANGUAGE` (BCP 47 or ISO 639-2 as the source tagged it); nil when unknown.
    public var language: String?
    /// The subtitle media playlist, relative to the master (`subs-1/index.m3u8`).
    public var uri: String

    public init(name: String, language: String?, uri: String) {
        self.name = name
        self.language = language
        self.uri = uri
    }

    /// The `#EXT-X-MEDIA` line (group `subs`).
    public var mediaTag: String {
        var attributes = ["TYPE=SUBTITLES", "GROUP-ID=\"\(Playlist.subtitleGroup)\"", "NAME=\"\(Self.quoted(name))\""]
        if let language, !language.isEmpty { attributes.append("LANGUAGE=\"\(Self.quoted(language))\"") }
        attributes += ["DEFAULT=NO", "AUTOSELECT=YES", "URI=\"\(uri)\""]
        return "#EXT-X-MEDIA:" + attributes.joined(separator: ",")
    }

    /// A quoted-string may hold neither `"` nor a line break (RFC 8216 4.2).
    static func quoted(_ text: String) -> String {
        String(text.map { $0 == "\"" ? "'" : ($0 == "\n" || $0 == "\r" || $0 == "\r\n" ? " " : $0) })
    }
}

extension Playlist {
    /// The `GROUP-ID` every subtitle rendition is in and every variant's `SUBTITLES` names.
    public static let subtitleGroup = "subs"

    /// A subtitle media playlist of one WebVTT file covering the whole video (`duration` seconds).
    public static func subtitleMedia(uri: String, duration: Double) -> String {
        let micros = Int((max(0, duration) * 1_000_000).rounded())
        let fraction = String(micros % 1_000_000)
        let decimals = String(repeating: "0", count: 6 - fraction.count) + fraction
        return "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:\(max(1, Int(duration.rounded(.up))))\n"
            + "#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:\(micros / 1_000_000).\(decimals),\n\(uri)\n#EXT-X-ENDLIST\n"
    }

    /// `master` with `track` added: its `#EXT-X-MEDIA` line before the first variant, and `SUBTITLES="subs"` on
    /// every `#EXT-X-STREAM-INF` that lacks it (what adding a caption file to a published video needs).
    public static func addingSubtitles(_ master: String, _ track: SubtitleRendition) -> String {
        var out: [String] = []
        var added = false
        for line in lines(master) {
            if line.hasPrefix("#EXT-X-STREAM-INF:") {
                if !added {
                    out.append(track.mediaTag)
                    added = true
                }
                let list = line.dropFirst("#EXT-X-STREAM-INF:".count)
                out.append(attributes(list)["SUBTITLES"] == nil ? line + ",SUBTITLES=\"\(subtitleGroup)\"" : line)
            } else {
                out.append(line)
            }
        }
        if !added { out.append(track.mediaTag) }
        return out.joined(separator: "\n") + "\n"
    }
}

/// WebVTT text: cues written from times and text, and a caption file (WebVTT or SubRip) read into cues.
public enum WebVTT {
    public struct Cue: Sendable, Hashable {
        /// Seconds from the video's first picture.
        public var start: Double
        public var end: Double
        /// Lines separated by `\n`.
        public var text: String

        public init(start: Double, end: Double, text: String) {
            self.start = start
            self.end = end
            self.text = text
        }
    }

    /// A WebVTT file of `cues`, in order of their start.
    public static func document(_ cues: [Cue]) -> String {
        var text = "WEBVTT\n"
        for cue in cues.sorted(by: { $0.start < $1.start }) {
            // A blank line would end the cue early, and "-->" would start a new one.
            let body = cue.text.split(separator: "\n", omittingEmptySubsequences: true)
                .map { $0.replacingOccurrences("-->", "->") }.joined(separator: "\n")
            guard !body.isEmpty else { continue }
            text += "\n\(timestamp(cue.start)) --> \(timestamp(max(cue.end, cue.start)))\n\(body)\n"
        }
        return text
    }

    /// `hh:mm:ss.ttt`.
    public static func timestamp(_ seconds: Double) -> String {
        let millis = Int((max(0, seconds) * 1000).rounded())
        func pad(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return
            "\(pad(millis / 3_600_000, 2)):\(pad(millis / 60_000 % 60, 2)):\(pad(millis / 1000 % 60, 2)).\(pad(millis % 1000, 3))"
    }

    /// The text of an ASS `Dialogue` event as libavcodec hands it (`ReadOrder,Layer,Style,Name,MarginL,MarginR,
    /// MarginV,Effect,Text`, or a whole `Dialogue:` line with Start and End too): the Text field with `\N` and
    /// `\n` as line breaks, `\h` as a space, and `{…}` override blocks dropped.
    public static func textOfASSDialogue(_ line: String) -> String {
        var fields = line
        var count = 8  // commas before Text in libavcodec's event form
        if fields.hasPrefix("Dialogue:") {
            fields = String(fields.dropFirst("Dialogue:".count))
            count = 9  // Layer,Start,End,Style,Name,MarginL,MarginR,MarginV,Effect
        }
        var rest = Substring(fields)
        for _ in 0..<count {
            guard let comma = rest.firstIndex(of: ",") else { return "" }
            rest = rest[rest.index(after: comma)...]
        }
        var text = ""
        var inOverride = false
        var index = rest.startIndex
        while index < rest.endIndex {
            let character = rest[index]
            let next = rest.index(after: index)
            if inOverride {
                if character == "}" { inOverride = false }
            } else if character == "{" {
                inOverride = true
            } else if character == "\\", next < rest.endIndex, "Nnh".contains(rest[next]) {
                text += rest[next] == "h" ? " " : "\n"
                index = rest.index(after: next)
                continue
            } else {
                text.append(character)
            }
            index = next
        }
        return text.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(" \t\r") }.joined(separator: "\n")
            .trimmingCharacters("\n ")
    }

    /// A caption file's cues: WebVTT (`WEBVTT` first) or SubRip (numbered blocks, `00:00:01,000 --> …`).
    /// Throws when it is neither, or a cue's times cannot be read.
    public static func parse(_ text: String) throws(PlaylistError) -> (format: String, cues: [Cue]) {
        var body = text
        if body.hasPrefix("\u{FEFF}") { body.removeFirst() }
        let lines = body.split(
            omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }
        )
        .map { String($0) }
        let isVTT = lines.first.map { $0 == "WEBVTT" || $0.hasPrefix("WEBVTT ") || $0.hasPrefix("WEBVTT\t") } ?? false
        var cues: [Cue] = []
        var index = isVTT ? 1 : 0
        while index < lines.count {
            guard lines[index].contains("-->") else {
                if !isVTT, !lines[index].trimmingCharacters(" \t").isEmpty,
                    Int(lines[index].trimmingCharacters(" \t")) == nil
                {
                    throw PlaylistError(
                        "not a SubRip or WebVTT file: line \(index + 1) is neither a number, a time range nor blank")
                }
                // WebVTT: a cue identifier, NOTE, STYLE or REGION block (skipped up to its blank line unless a time follows).
                if isVTT,
                    lines[index].hasPrefix("NOTE") || lines[index].hasPrefix("STYLE")
                        || lines[index].hasPrefix("REGION")
                {
                    while index < lines.count, !lines[index].isEmpty { index += 1 }
                }
                index += 1
                continue
            }
            let parts = lines[index].components("-->")
            guard parts.count == 2, let start = seconds(parts[0], comma: !isVTT),
                let end = seconds(
                    String(parts[1].trimmingCharacters(" \t").prefix { $0 != " " && $0 != "\t" }), comma: !isVTT),
                end >= start
            else { throw PlaylistError("line \(index + 1): cannot read the cue times '\(lines[index])'") }
            index += 1
            var textLines: [String] = []
            while index < lines.count, !lines[index].trimmingCharacters(" \t").isEmpty {
                textLines.append(lines[index])
                index += 1
            }
            cues.append(Cue(start: start, end: end, text: textLines.joined(separator: "\n")))
        }
        guard isVTT || !cues.isEmpty else { throw PlaylistError("not a SubRip or WebVTT file: no cues found") }
        return (isVTT ? "webvtt" : "srt", cues)
    }

    /// `01:02:03,456` (SubRip) or `01:02:03.456` / `02:03.456` (WebVTT) → seconds.
    static func seconds(_ text: String, comma: Bool) -> Double? {
        let trimmed = text.trimmingCharacters(" \t")
        let separator: Character = comma ? "," : "."
        let pieces = trimmed.split(separator: separator)
        guard pieces.count == 2, pieces[1].count == 3, let millis = Int(pieces[1]) else { return nil }
        let clock = pieces[0].split(separator: ":", omittingEmptySubsequences: false).map { Int($0) }
        guard clock.count == 2 || clock.count == 3, clock.allSatisfy({ $0 != nil && $0! >= 0 }) else { return nil }
        let values = clock.map { $0! }
        let (h, m, s) = values.count == 3 ? (values[0], values[1], values[2]) : (0, values[0], values[1])
        guard m < 60, s < 60 else { return nil }
        return Double(h * 3600 + m * 60 + s) + Double(millis) / 1000
    }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(_ set: String) -> String {
        var s = Substring(self)
        while let first = s.first, set.contains(first) { s = s.dropFirst() }
        while let last = s.last, set.contains(last) { s = s.dropLast() }
        return String(s)
    }

    fileprivate func replacingOccurrences(_ target: String, _ replacement: String) -> String {
        var result = ""
        var rest = Substring(self)
        while let range = rest.firstRange(of: target) {
            result += rest[..<range.lowerBound] + replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }

    fileprivate func components(_ separator: String) -> [String] {
        var parts: [String] = []
        var rest = Substring(self)
        while let range = rest.firstRange(of: separator) {
            parts.append(String(rest[..<range.lowerBound]))
            rest = rest[range.upperBound...]
        }
        parts.append(String(rest))
        return parts
    }
}
