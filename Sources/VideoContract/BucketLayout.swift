import Foundation

/// Video ids and the keys of their outputs in the media bucket.
public enum VideoKeys {
    /// The id of an uploaded object: its file name without the extension (`uploads/7f3a.mp4` → `7f3a`).
    public static func videoID(forUpload key: String) -> String {
        let name = key.split(separator: "/", omittingEmptySubsequences: false).last.map(String.init) ?? key
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex else { return name }
        return String(name[..<dot])
    }

    public static func metadata(_ id: String) -> String { "\(id)/metadata.json" }
    public static func status(_ id: String) -> String { "\(id)/status.json" }
    public static func mp4(_ id: String, rung: String) -> String { "\(id)/mp4/\(rung).mp4" }
    /// The HLS tree: `<id>/hls/master.m3u8`, `<id>/hls/<rung>/index.m3u8`, `init.mp4`, `seg-NNNNN.m4s`.
    public static func hls(_ id: String) -> String { "\(id)/hls/" }
    public static func hlsMaster(_ id: String) -> String { "\(id)/hls/master.m3u8" }
    public static func hlsPlaylist(_ id: String, rung: String) -> String { "\(id)/hls/\(rung)/index.m3u8" }
    /// A caption track's WebVTT file (its playlist is `hlsPlaylist(id, rung: name)`).
    public static func captionVTT(_ id: String, name: String) -> String { "\(id)/hls/\(name)/captions.vtt" }
    /// The audio-only download: the ladder's audio track as a progressive M4A.
    public static func audioDownload(_ id: String) -> String { "\(id)/mp4/audio.m4a" }

    /// The video id of a `<id>/metadata.json` key.
    public static func videoID(forMetadata key: String) -> String? {
        guard key.hasSuffix("/metadata.json") else { return nil }
        let id = String(key.dropLast("/metadata.json".count))
        return id.isEmpty ? nil : id
    }
}

/// The objects of a chunked transcode, all in the media bucket under the video's id:
/// - `<id>/plan.json`: the timeline cut into chunks on the keyframe grid (written once by the plan step);
/// - `<id>/jobs/chunk-NNNNN.lead.json` (the first chunk) and `<id>/jobs/chunk-NNNNN.chunk.json`: one object
///   per chunk invocation; creating it (conditionally, once) is what triggers the invocation;
/// - `<id>/chunks/NNNNN.json`: what a chunk wrote, once its segments are up (the chunk's "done");
/// - `<id>/jobs/finish.json`: created, once, by whichever chunk finds every record present; triggers the
///   finishing step.
public enum ChunkKeys {
    public static func plan(_ id: String) -> String { "\(id)/plan.json" }
    public static let leadSuffix = ".lead.json"
    public static let chunkSuffix = ".chunk.json"
    public static let finishSuffix = "/jobs/finish.json"

    public static func job(_ id: String, index: Int) -> String {
        "\(id)/jobs/chunk-\(number(index))\(index == 0 ? leadSuffix : chunkSuffix)"
    }

    public static func finish(_ id: String) -> String { "\(id)\(finishSuffix)" }
    public static func records(_ id: String) -> String { "\(id)/chunks/" }
    public static func record(_ id: String, index: Int) -> String { "\(id)/chunks/\(number(index)).json" }
    public static func spritePart(_ id: String, index: Int) -> String {
        "\(id)/thumbnails/sprite-part-\(number(index)).jpg"
    }
    public static func segment(_ id: String, rung: String, name: String) -> String { "\(id)/hls/\(rung)/\(name)" }
    public static func initSection(_ id: String, rung: String) -> String { "\(id)/hls/\(rung)/init.mp4" }

    /// The video id and chunk index of a job key (`<id>/jobs/chunk-00003.chunk.json`).
    public static func parseJob(_ key: String) -> (id: String, index: Int)? {
        guard key.hasSuffix(leadSuffix) || key.hasSuffix(chunkSuffix),
            let range = key.range(of: "/jobs/chunk-", options: .backwards)
        else { return nil }
        let id = String(key[..<range.lowerBound])
        let digits = key[range.upperBound...].prefix { $0.isNumber }
        guard !id.isEmpty, let index = Int(digits) else { return nil }
        return (id, index)
    }

    /// The video id of a `<id>/jobs/finish.json` key.
    public static func parseFinish(_ key: String) -> String? {
        guard key.hasSuffix(finishSuffix) else { return nil }
        let id = String(key.dropLast(finishSuffix.count))
        return id.isEmpty ? nil : id
    }

    public static func number(_ index: Int) -> String {
        let text = String(index)
        return String(repeating: "0", count: max(0, 5 - text.count)) + text
    }

    public static func segmentName(_ index: Int) -> String { "seg-\(number(index)).m4s" }

    /// A source whose audio is not carried: that audio encoded once to AAC (`<id>/audio/audio.m4a`), and what
    /// the encode wrote (`<id>/audio/audio.json`, written after the M4A: its presence means the M4A is whole).
    public static func encodedAudio(_ id: String) -> String { "\(id)/audio/audio.m4a" }
    public static func encodedAudioRecord(_ id: String) -> String { "\(id)/audio/audio.json" }
}
