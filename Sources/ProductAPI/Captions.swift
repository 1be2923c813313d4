import Foundation
import HLS
import Hummingbird
import NIOCore
import VideoContract

extension ProductAPI {
    /// The largest caption file accepted: a feature film's SubRip is ~100 KB.
    static let maxCaptionBytes = 2 * 1024 * 1024

    /// `POST /videos/{id}/captions?language=…&label=…` with a SubRip or WebVTT body: the file as WebVTT (SubRip's
    /// `,` before the milliseconds becomes `.`, its cue numbers are dropped), stored as a new subtitle rendition
    /// (`hls/subs-N/captions.vtt` and its one-segment playlist), named in status.json and added to the master
    /// playlist (rewritten: its `#EXT-X-MEDIA` line, `SUBTITLES="subs"` on every variant).
    func addCaption(_ id: String, request: Request) async throws -> Response {
        try Self.validate(id)
        let language = request.uri.queryParameters.get("language").map { String($0) } ?? ""
        let label = request.uri.queryParameters.get("label").map { String($0) } ?? ""
        guard Self.isLanguageTag(language) else {
            throw APIError(400, "InvalidLanguage", "language must be a language tag such as en, fr or pt-BR.")
        }
        guard !label.isEmpty, label.count <= 100, !label.contains(where: { $0.isNewline || $0 == "\"" }) else {
            throw APIError(400, "InvalidLabel", "label must be 1–100 characters, without quotes or line breaks.")
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: Self.maxCaptionBytes)
        } catch {
            throw APIError(
                413, "CaptionTooLarge", "A caption file may be at most \(Self.maxCaptionBytes / 1024 / 1024) MiB.")
        }
        guard let text = String(validating: body.readableBytesView, as: UTF8.self) else {
            throw APIError(400, "InvalidCaption", "The caption file must be UTF-8 text (SubRip or WebVTT).")
        }
        let parsed: (format: String, cues: [WebVTT.Cue])
        do {
            parsed = try WebVTT.parse(text)
        } catch {
            throw APIError(400, "InvalidCaption", "The body is neither SubRip nor WebVTT: \(error.message).")
        }
        let objects = try await objects(id)
        var status = try readyStatus(id, objects)
        guard let masterKey = status.hls else {
            throw APIError(409, "NoHLS", "Video '\(id)' has no HLS output to add captions to.")
        }
        var captions = status.captions ?? []
        guard captions.count < 32 else {
            throw APIError(409, "TooManyCaptions", "Video '\(id)' already has 32 caption tracks.")
        }
        let used = Set(captions.compactMap { Int($0.name.dropFirst("subs-".count)) })
        let number = (1...).first { !used.contains($0) }!
        let name = "subs-\(number)"
        let caption = VideoStatus.Caption(
            name: name, language: language, label: label, key: VideoKeys.captionVTT(id, name: name),
            playlist: VideoKeys.hlsPlaylist(id, rung: name), origin: "upload")
        // The subtitle playlist covers the video: as long as a rendition's media playlist.
        var duration = parsed.cues.map(\.end).max() ?? 1
        if let playlist = status.renditions?.first?.playlist,
            let media = try? MediaPlaylist(parsing: try await playlistText(playlist)), media.duration > 0
        {
            duration = media.duration
        }
        let bucket = configuration.mediaBucket
        // The WebVTT and its playlist first, then the master naming them, then status.json: no listed object
        // ever names one not yet written.
        _ = try await s3.putObject(
            bucket: bucket, key: caption.key, body: ByteBuffer(string: WebVTT.document(parsed.cues)),
            contentType: "text/vtt; charset=utf-8")
        _ = try await s3.putObject(
            bucket: bucket, key: caption.playlist,
            body: ByteBuffer(string: Playlist.subtitleMedia(uri: "captions.vtt", duration: duration)),
            contentType: "application/vnd.apple.mpegurl")
        let master = try await playlistText(masterKey)
        let rewritten = Playlist.addingSubtitles(
            master, SubtitleRendition(name: label, language: language, uri: "\(name)/index.m3u8"))
        _ = try await s3.putObject(
            bucket: bucket, key: masterKey, body: ByteBuffer(string: rewritten),
            contentType: "application/vnd.apple.mpegurl")
        captions.append(caption)
        status.captions = captions
        try await s3.putJSON(status, bucket: bucket, key: VideoKeys.status(id))
        logger.info(
            "caption added",
            metadata: [
                "cinescale.video": .string(id), "cinescale.caption": .string(name),
                "cinescale.format": .string(parsed.format),
                "cinescale.cues": .stringConvertible(parsed.cues.count),
            ])
        return try Self.json(try captionView(id, caption, date: Date()), status: .created)
    }

    func captionView(_ id: String, _ caption: VideoStatus.Caption, date: Date) throws -> VideoView.Caption {
        VideoView.Caption(
            name: caption.name, language: caption.language, label: caption.label, origin: caption.origin,
            url: try signedURL(caption.key, date: date), stream: "/stream/\(id)/\(caption.name).vtt")
    }

    /// BCP 47 as players use it: 2–8 letters, then `-` subtags of 1–8 letters or digits.
    static func isLanguageTag(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard let first = parts.first, (2...8).contains(first.count), first.allSatisfy({ $0.isASCII && $0.isLetter })
        else {
            return false
        }
        return parts.dropFirst().allSatisfy {
            (1...8).contains($0.count) && $0.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
        }
    }
}
