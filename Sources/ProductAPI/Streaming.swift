import APIKeys
import Foundation
import HLS
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import S3Client
import VideoContract

// Streaming: the signed HLS tree (master and media playlists, held segments), the DASH manifest over the same
// segments, MP4 and M4A downloads, thumbnails and the storyboard; each a redirect to a presigned URL of the store
// or a document the API writes.
extension ProductAPI {

    func stream(_ id: String, _ name: String, request: Request) async throws -> Response {
        try Self.validate(id)
        let objects = try await objects(id)
        guard !objects.isEmpty else { throw APIError.notFound(id) }
        let now = Date()
        if name == "master.m3u8" {
            let grant = try await authorizePlayback(id, .video, request: request, objects: objects)
            let (status, _) = try playableStatus(id, objects)
            guard let key = status.hls ?? (status.state == "transcoding" ? VideoKeys.hlsMaster(id) : nil) else {
                throw APIError(404, "NoSuchPlaylist", "Video '\(id)' has no HLS output.")
            }
            let text = try await playlistText(key)
            // A signed video's media playlists expire with its token, never later.
            let expires = Int(now.timeIntervalSince1970) + grant.lifetime(configuration.streamExpiry, now: now)
            let rewritten = try Playlist.rewritingURIs(text) { uri in
                let child = try Self.relativePath(uri)
                return "\(child)?\(signer.query(path: "/stream/\(id)/\(child)", expires: expires))"
            }
            return Self.playlist(rewritten)
        }
        if name == "storyboard.vtt" {
            _ = try await authorizePlayback(id, .storyboard, request: request, objects: objects)
            let status = try readyStatus(id, objects)
            guard let sprite = status.thumbnails?.sprite else {
                throw APIError(404, "NoSuchThumbnail", "Video '\(id)' has no storyboard.")
            }
            // The sprite through the API's own route (a redirect to a fresh signed URL, the token passed on), so
            // a cue's text holds no `&` for WebVTT to mistake for a character reference.
            var image = "/stream/\(id)/storyboard.jpg"
            if let token = request.uri.queryParameters.get("token") {
                image +=
                    "?token="
                    + (token.addingPercentEncoding(
                        withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-._~"))) ?? token)
            }
            var response = Response(
                status: .ok, headers: [.contentType: "text/vtt; charset=utf-8", .cacheControl: "no-store"],
                body: .init(byteBuffer: ByteBuffer(string: Storyboard.webVTT(sprite, image: image))))
            response.headers[.accessControlAllowOrigin] = "*"
            return response
        }
        if name == "thumbnail.jpg" || name == "storyboard.jpg" {
            let thumbnail = name == "thumbnail.jpg"
            let grant = try await authorizePlayback(
                id, thumbnail ? .thumbnail : .storyboard, request: request, objects: objects)
            let status = try readyStatus(id, objects)
            let posters = status.thumbnails?.posters ?? []
            let key = thumbnail ? posters.dropFirst(posters.count / 2).first?.key : status.thumbnails?.sprite?.key
            guard let key else {
                throw APIError(404, "NoSuchThumbnail", "Video '\(id)' has no \(thumbnail ? "poster" : "storyboard").")
            }
            return Self.redirect(
                try signedURL(key, date: now, expires: grant.lifetime(configuration.streamExpiry, now: now)))
        }
        let grant = try await authorizePlayback(id, .video, request: request, objects: objects)
        let status = try readyStatus(id, objects)
        if name == "manifest.mpd" {
            return try await dashManifest(
                id, status: status, grant: grant, token: request.uri.queryParameters.get("token").map { String($0) })
        }
        if name == "audio.m4a" {
            guard let key = status.audioDownload else {
                throw APIError(404, "NoSuchRendition", "Video '\(id)' has no audio.")
            }
            return Self.redirect(
                try signedURL(key, date: now, expires: grant.lifetime(configuration.streamExpiry, now: now)))
        }
        if name.hasSuffix(".vtt"), let caption = status.captions?.first(where: { $0.name == name.dropLast(4) }) {
            return Self.redirect(
                try signedURL(caption.key, date: now, expires: grant.lifetime(configuration.streamExpiry, now: now)))
        }
        let renditionName = name.hasSuffix(".mp4") ? String(name.dropLast(4)) : name
        guard let rendition = status.renditions?.first(where: { $0.name == renditionName }) else {
            let names = (status.renditions ?? []).map(\.name).joined(separator: ", ")
            throw APIError(400, "InvalidResolution", "'\(name)' is not a rendition of this video; it has: \(names).")
        }
        return Self.redirect(
            try signedURL(rendition.key, date: now, expires: grant.lifetime(configuration.streamExpiry, now: now)))
    }

    static func redirect(_ location: String) -> Response {
        var response = Response(status: .found)
        response.headers[.location] = location
        response.headers[.cacheControl] = "no-store"
        return response
    }

    func mediaPlaylist(_ id: String, _ rendition: String, request: Request) async throws -> Response {
        try Self.validate(id)
        let path = "/stream/\(id)/\(rendition)/index.m3u8"
        switch signer.verify(
            path: path, expires: request.uri.queryParameters.get("expires"),
            signature: request.uri.queryParameters.get("signature"), now: Date())
        {
        case .valid: break
        case .expired:
            throw APIError(403, "ExpiredURL", "This playlist URL has expired; get the master playlist again.")
        case .invalid: throw APIError(403, "InvalidSignature", "This playlist URL is not signed correctly.")
        }
        let objects = try await objects(id)
        guard !objects.isEmpty else { throw APIError.notFound(id) }
        let grant = try await authorizePlayback(id, .video, request: request, objects: objects, token: false)
        let (status, chunks) = try playableStatus(id, objects)
        let key: String
        if status.state == "ready", let caption = status.captions?.first(where: { $0.name == rendition }) {
            // A subtitle rendition: its one WebVTT file signed like any segment.
            key = caption.playlist
        } else if status.state == "ready", let audio = status.audio?.first(where: { $0.name == rendition }) {
            key = audio.playlist
        } else if status.state == "ready" {
            guard let entry = status.renditions?.first(where: { $0.name == rendition }), let playlist = entry.playlist
            else {
                throw APIError(400, "InvalidResolution", "'\(rendition)' is not a rendition of this video.")
            }
            key = playlist
        } else {
            // A rung of the plan, or the audio track the chunks write (`audio-N`; its playlist exists or it is 404).
            guard let chunks, chunks.plan.rungs.contains(where: { $0.name == rendition }) || Self.isAudioName(rendition)
            else {
                throw APIError(400, "InvalidResolution", "'\(rendition)' is not a rendition of this video.")
            }
            key = VideoKeys.hlsPlaylist(id, rung: rendition)
        }
        let text = try await playlistText(key)
        let duration = (try? MediaPlaylist(parsing: text).duration) ?? 0
        // Segment URLs outlive the whole video's playback, so a viewer never meets an expired one; a signed
        // video's never outlive its token (whose expiry this playlist URL's own carries).
        let now = Date()
        let expiry = grant.lifetime(min(604_800, configuration.streamExpiry + Int(duration.rounded(.up)) * 2), now: now)
        let directory = String(key[..<(key.lastIndex(of: "/") ?? key.startIndex)])
        // While later chunks are still encoding, a segment not written yet is served by the API, which holds
        // the request until the segment exists: the player gets the whole VOD playlist (true duration, plays
        // from 0) and waits where the encoder has not got to yet.
        let written = status.state == "ready" ? nil : chunks?.writtenSegments
        let holdExpires = Int(now.timeIntervalSince1970) + expiry
        let rewritten = try Playlist.rewritingURIs(text) { uri in
            let path = try Self.relativePath(uri)
            if let written, let number = Self.segmentNumber(path), !written.contains(number) {
                let hold = "/stream/\(id)/\(rendition)/\(path)"
                return "\(hold)?\(signer.query(path: hold, expires: holdExpires))"
            }
            return try presigner.presignedURL(
                method: "GET", bucket: configuration.mediaBucket, key: "\(directory)/\(path)", expires: expiry,
                date: now
            ).absoluteString
        }
        return Self.playlist(rewritten)
    }

    /// `audio-2`: an audio rendition's name.
    static func isAudioName(_ name: String) -> Bool {
        name.hasPrefix("audio-") && name.count <= 12 && Int(name.dropFirst("audio-".count)).map { $0 > 0 } == true
    }

    /// The DASH manifest of a ready video: the same segment objects as its HLS renditions, every URL presigned
    /// as the HLS media playlists' are (alive the stream expiry plus twice the duration, never past a token).
    func dashManifest(_ id: String, status: VideoStatus, grant: PlaybackGrant, token: String?) async throws -> Response
    {
        let now = Date()
        struct Read: Sendable {
            var directory: String
            var playlist: MediaPlaylist
        }
        func read(_ key: String) async throws -> Read {
            let text = try await playlistText(key)
            do {
                return Read(
                    directory: String(key[..<(key.lastIndex(of: "/") ?? key.startIndex)]),
                    playlist: try MediaPlaylist(parsing: text))
            } catch {
                throw APIError(502, "InvalidPlaylist", "The stored playlist \(key) cannot be read.")
            }
        }
        let renditions = (status.renditions ?? []).filter { $0.playlist != nil }
        guard !renditions.isEmpty else {
            throw APIError(404, "NoSuchPlaylist", "Video '\(id)' has no segmented output.")
        }
        var videoPlaylists: [Read] = []
        for rendition in renditions { videoPlaylists.append(try await read(rendition.playlist!)) }
        var audioPlaylists: [Read] = []
        for track in status.audio ?? [] { audioPlaylists.append(try await read(track.playlist)) }
        let duration = videoPlaylists.map(\.playlist.duration).max() ?? 0
        let expiry = grant.lifetime(min(604_800, configuration.streamExpiry + Int(duration.rounded(.up)) * 2), now: now)
        func url(_ directory: String, _ uri: String) throws -> String {
            try signedURL("\(directory)/\(try Self.relativePath(uri))", date: now, expires: expiry)
        }
        func segments(_ read: Read) throws -> (initialization: String, segments: [DASH.Segment]) {
            guard let map = read.playlist.mapURI else {
                throw APIError(502, "InvalidPlaylist", "A stored playlist of video '\(id)' has no init section.")
            }
            return (
                try url(read.directory, map),
                try read.playlist.segments.map {
                    DASH.Segment(url: try url(read.directory, $0.uri), duration: $0.duration)
                }
            )
        }
        let audioPeak = (status.audio ?? []).map(\.bandwidth).max() ?? 0
        var video: [DASH.Representation] = []
        for (rendition, read) in zip(renditions, videoPlaylists) {
            let (initialization, list) = try segments(read)
            // The variant's rate counts the audio it plays with; the picture's own is the rest.
            let bandwidth = max(1, (rendition.bandwidth ?? rendition.bitRate) - audioPeak)
            video.append(
                DASH.Representation(
                    id: rendition.name, bandwidth: bandwidth,
                    codecs: String((rendition.codecs ?? "avc1.640028").split(separator: ",").first ?? "avc1.640028"),
                    width: rendition.width, height: rendition.height, initialization: initialization, segments: list))
        }
        var audio: [DASH.AudioSet] = []
        for (track, read) in zip(status.audio ?? [], audioPlaylists) {
            let (initialization, list) = try segments(read)
            audio.append(
                DASH.AudioSet(
                    language: track.language, label: track.label, isDefault: track.isDefault,
                    representation: DASH.Representation(
                        id: track.name, bandwidth: max(1, track.bandwidth), codecs: track.codecs,
                        sampleRate: track.sampleRate,
                        channels: track.channels, initialization: initialization, segments: list)))
        }
        // A caption file through the API's own route, relative to the manifest (a redirect to a fresh signed
        // URL, the token passed on): a BaseURL holding a presigned URL's `&` breaks FFmpeg's DASH reader, which
        // writes the resolved URL back into the document as markup.
        let query =
            token.map {
                "?token="
                    + ($0.addingPercentEncoding(
                        withAllowedCharacters: .alphanumerics.union(.init(charactersIn: "-._~"))) ?? $0)
            } ?? ""
        let text = (status.captions ?? []).map { caption in
            DASH.TextTrack(
                id: caption.name, language: caption.language, label: caption.label, url: "\(caption.name).vtt\(query)")
        }
        let manifest = DASH.manifest(duration: duration, video: video, audio: audio, text: text)
        var response = Response(
            status: .ok, headers: [.contentType: "application/dash+xml", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: manifest)))
        response.headers[.accessControlAllowOrigin] = "*"
        return response
    }

    /// `seg-00012.m4s` → 12.
    static func segmentNumber(_ name: String) -> Int? {
        guard name.hasPrefix("seg-"), name.hasSuffix(".m4s") else { return nil }
        return Int(name.dropFirst(4).dropLast(4))
    }

    /// A segment of a video still being encoded: waits (up to `segmentHoldSeconds`) until it is in the bucket,
    /// then redirects to its signed URL.
    func heldSegment(_ id: String, _ rendition: String, _ name: String, request: Request) async throws -> Response {
        try Self.validate(id)
        let path = "/stream/\(id)/\(rendition)/\(name)"
        switch signer.verify(
            path: path, expires: request.uri.queryParameters.get("expires"),
            signature: request.uri.queryParameters.get("signature"), now: Date())
        {
        case .valid: break
        case .expired: throw APIError(403, "ExpiredURL", "This segment URL has expired; get the playlist again.")
        case .invalid: throw APIError(403, "InvalidSignature", "This segment URL is not signed correctly.")
        }
        guard Self.segmentNumber(name) != nil, !rendition.contains("/"), (try? Self.validate(rendition)) != nil else {
            throw APIError(404, "NoSuchSegment", "'\(name)' is not a segment.")
        }
        let objects = try await objects(id)
        let grant = try await authorizePlayback(id, .video, request: request, objects: objects, token: false)
        let key = ChunkKeys.segment(id, rung: rendition, name: name)
        let deadline = ContinuousClock.now + .seconds(configuration.segmentHoldSeconds)
        var checks = 0
        while true {
            if try await exists(bucket: configuration.mediaBucket, key: key) { break }
            checks += 1
            // Every few looks, whether the video failed or went away (then nothing will come).
            if checks % 8 == 0 {
                let status = try await optionalJSON(VideoStatus.self, VideoKeys.status(id))
                if status == nil || status?.state == "failed" {
                    throw APIError(
                        404, "NoSuchSegment", "Video '\(id)' will not have this segment (it failed or was deleted).")
                }
            }
            guard ContinuousClock.now < deadline else {
                var error = APIError(503, "SegmentNotReady", "The segment is still being encoded; try again.")
                error.retryAfter = 1
                throw error
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        let now = Date()
        return Self.redirect(
            try signedURL(key, date: now, expires: grant.lifetime(configuration.streamExpiry, now: now)))
    }

    /// The status of a video whose master playlist can be played (ready, or chunked with its first chunk up).
    func playableStatus(_ id: String, _ objects: VideoObjects) throws -> (VideoStatus, ChunkProgress?) {
        guard !objects.isEmpty else { throw APIError.notFound(id) }
        guard let status = objects.status, objects.isPlayable else {
            throw APIError(409, "VideoNotReady", "Video '\(id)' is \(objects.state.0.rawValue), not playable yet.")
        }
        return (status, objects.chunks)
    }

    /// A playlist URI as written by the transcoder: relative, no `..`, no query.
    static func relativePath(_ uri: String) throws -> String {
        guard !uri.isEmpty, !uri.hasPrefix("/"), !uri.contains("://"), !uri.contains("?"), !uri.contains("#"),
            !uri.split(separator: "/").contains("..")
        else {
            throw APIError(502, "InvalidPlaylist", "The stored playlist names '\(uri)', which the API does not serve.")
        }
        return uri
    }

    func readyStatus(_ id: String, _ objects: VideoObjects) throws -> VideoStatus {
        guard !objects.isEmpty else { throw APIError.notFound(id) }
        guard let status = objects.status, status.state == "ready" else {
            throw APIError(409, "VideoNotReady", "Video '\(id)' is \(objects.state.0.rawValue), not ready yet.")
        }
        return status
    }

    func playlistText(_ key: String) async throws -> String {
        do {
            let object = try await s3.getObject(bucket: configuration.mediaBucket, key: key)
            return String(decoding: object.body.readableBytesView, as: UTF8.self)
        } catch let error as S3Error where error.isNoSuchKey {
            throw APIError(404, "NoSuchPlaylist", "The playlist \(key) is missing.")
        }
    }

    func signedURL(_ key: String, date: Date, expires: Int? = nil) throws -> String {
        try presigner.presignedURL(
            method: "GET", bucket: configuration.mediaBucket, key: key, expires: expires ?? configuration.streamExpiry,
            date: date
        ).absoluteString
    }

}
