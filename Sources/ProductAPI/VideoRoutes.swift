import APIKeys
import Foundation
import HLS
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import S3Client
import VideoContract

/// `GET /videos/{id}` (state, metadata, renditions and thumbnails with signed URLs), `GET /videos` and
/// `DELETE /videos/{id}`: a video read from, and removed from, the buckets.
extension ProductAPI {
    func objects(_ id: String) async throws -> VideoObjects {
        async let upload = optionalJSON(UploadRecord.self, Self.uploadKey(id))
        async let metadata = optionalJSON(VideoMetadata<JSONValue>.self, VideoKeys.metadata(id))
        async let status = optionalJSON(VideoStatus.self, VideoKeys.status(id))
        var objects = VideoObjects(
            upload: try await upload, metadata: try await metadata, status: try await status, sourceExists: false)
        if objects.status?.state == "transcoding" { objects.chunks = try await chunkProgress(id) }
        if objects.status == nil, objects.metadata == nil, let source = objects.upload?.source {
            objects.sourceExists = try await exists(bucket: source.bucket, key: source.key)
        }
        return objects
    }

    /// A chunked transcode's plan and done chunks (nil for a whole-video transcode).
    func chunkProgress(_ id: String) async throws -> ChunkProgress? {
        guard let plan = try await optionalJSON(TranscodePlan.self, ChunkKeys.plan(id)) else { return nil }
        var done = Set<Int>()
        for try await object in s3.listAllObjects(bucket: configuration.mediaBucket, prefix: ChunkKeys.records(id)) {
            let name = object.key.dropFirst(ChunkKeys.records(id).count)
            if name.hasSuffix(".json"), let index = Int(name.dropLast(".json".count)) { done.insert(index) }
        }
        return ChunkProgress(plan: plan, done: done)
    }

    func video(_ id: String) async throws -> Response {
        try Self.validate(id)
        let objects = try await objects(id)
        guard !objects.isEmpty else { throw APIError.notFound(id) }
        let (state, percent) = objects.state
        let now = Date()
        let urlsExpire = now.addingTimeInterval(Double(configuration.streamExpiry))
        var view = VideoView(
            videoId: id, state: state, percent: percent, fileName: objects.upload?.fileName,
            source: objects.status?.source ?? objects.upload?.source, metadata: objects.metadata?.media)
        view.playbackPolicy = playbackPolicy(objects)
        view.allowedOrigins = objects.upload?.allowedOrigins
        if state == .awaitingUpload { view.uploadExpiresAt = objects.upload?.expiresAt }
        if state == .transcoding || state == .ready { view.playable = objects.isPlayable }
        if state == .transcoding, objects.isPlayable { view.hls = "/stream/\(id)/master.m3u8" }
        if let status = objects.status {
            if let error = status.error {
                view.error = .init(code: error.code, message: error.message, stage: status.stage)
            }
            if state == .ready {
                view.renditions = try (status.renditions ?? []).map { rendition in
                    VideoView.Rendition(
                        name: rendition.name, width: rendition.width, height: rendition.height,
                        bitRate: rendition.bitRate,
                        size: rendition.size, codecs: rendition.codecs, url: try signedURL(rendition.key, date: now),
                        stream: "/stream/\(id)/\(rendition.name)")
                }
                if status.hls != nil { view.hls = "/stream/\(id)/master.m3u8" }
                view.captions = try (status.captions ?? []).map { try captionView(id, $0, date: now) }
                if let tracks = status.audio, !tracks.isEmpty {
                    view.audio = tracks.map {
                        VideoView.AudioTrack(
                            name: $0.name, language: $0.language, label: $0.label, isDefault: $0.isDefault,
                            channels: $0.channels, codecs: $0.codecs)
                    }
                }
                if let key = status.audioDownload {
                    view.audioDownload = VideoView.Download(
                        url: try signedURL(key, date: now), stream: "/stream/\(id)/audio.m4a")
                }
                if status.renditions?.contains(where: { $0.playlist != nil }) == true {
                    view.dash = "/stream/\(id)/manifest.mpd"
                }
                if let thumbnails = status.thumbnails {
                    view.thumbnails = VideoView.Thumbnails(
                        posters: try thumbnails.posters.map {
                            VideoView.Poster(
                                url: try signedURL($0.key, date: now), time: $0.time, width: $0.width, height: $0.height
                            )
                        },
                        sprite: try thumbnails.sprite.map {
                            VideoView.Sprite(
                                url: try signedURL($0.key, date: now), interval: $0.interval, columns: $0.columns,
                                rows: $0.rows,
                                count: $0.count, tileWidth: $0.tileWidth, tileHeight: $0.tileHeight)
                        },
                        storyboard: thumbnails.sprite == nil ? nil : "/stream/\(id)/storyboard.vtt")
                }
                view.urlsExpireAt = ISO8601.string(urlsExpire)
            }
        }
        return try Self.json(view)
    }

    func listVideos(_ request: Request, tenant: String) async throws -> Response {
        let limitText = request.uri.queryParameters.get("limit")
        let limit = limitText.flatMap { Int($0) } ?? 20
        guard (1...100).contains(limit), limitText == nil || Int(limitText!) != nil else {
            throw APIError(400, "InvalidRequest", "limit must be 1–100.")
        }
        let cursor = request.uri.queryParameters.get("cursor").flatMap { $0.isEmpty ? nil : $0 }
        // The tenant's videos only: every one of its ids, hence key prefixes, starts with "<tenant>_".
        let page: ListObjectsV2Page
        do {
            page = try await s3.listObjectsV2(
                bucket: configuration.mediaBucket, prefix: "\(tenant)_", delimiter: "/", continuationToken: cursor,
                maxKeys: limit)
        } catch let error as S3Error where cursor != nil && (400..<500).contains(error.statusCode) {
            throw APIError(400, "InvalidCursor", "cursor must be a nextCursor this API returned.")
        }
        let ids = page.commonPrefixes.map { String($0.dropLast()) }.filter { (try? Self.validate($0)) != nil }
        let summaries = try await withThrowingTaskGroup(of: (Int, VideoSummary?).self) { group in
            for (index, id) in ids.enumerated() {
                group.addTask {
                    let objects = try await self.objects(id)
                    guard !objects.isEmpty else { return (index, nil) }
                    let (state, percent) = objects.state
                    return (
                        index,
                        VideoSummary(videoId: id, state: state, percent: percent, fileName: objects.upload?.fileName)
                    )
                }
            }
            var results = [VideoSummary?](repeating: nil, count: ids.count)
            for try await (index, summary) in group { results[index] = summary }
            return results.compactMap { $0 }
        }
        return try Self.json(
            VideoList(videos: summaries, nextCursor: page.isTruncated ? page.nextContinuationToken : nil))
    }

    func deleteVideo(_ id: String) async throws -> Response {
        try Self.validate(id)
        let objects = try await objects(id)
        var sources: [SourceObject] = []
        if let source = objects.upload?.source { sources.append(source) }
        if let source = objects.status?.source { sources.append(source) }
        if let source = objects.metadata?.source {
            sources.append(SourceObject(bucket: source.bucket, key: source.key))
        }
        var keys: [String] = []
        for try await object in s3.listAllObjects(bucket: configuration.mediaBucket, prefix: "\(id)/") {
            keys.append(object.key)
        }
        guard !keys.isEmpty || !sources.isEmpty else { throw APIError.notFound(id) }
        // A resumable upload still open: its parts go too (best effort; the janitor would abort them later).
        if let upload = objects.upload, let multipart = upload.multipart {
            try? await s3.abortMultipartUpload(
                bucket: upload.source.bucket, key: upload.source.key, uploadId: multipart.uploadId)
        }
        // The source first: once it is gone, a retried probe cannot bring the outputs back.
        for source in Set(sources.map { "\($0.bucket)\n\($0.key)" }) {
            let parts = source.split(separator: "\n", maxSplits: 1).map(String.init)
            try await s3.deleteObject(bucket: parts[0], key: parts[1])
        }
        var start = keys.startIndex
        while start < keys.endIndex {
            let end = min(start + 1000, keys.endIndex)
            let failures = try await s3.deleteObjects(bucket: configuration.mediaBucket, keys: Array(keys[start..<end]))
            if let failure = failures.first {
                logger.error(
                    "delete failed",
                    metadata: ["cinescale.key": .string(failure.key), "cinescale.error": .string(failure.message)])
                throw APIError(502, "DeleteFailed", "Some of the video's objects could not be deleted; try again.")
            }
            start = end
        }
        if let tenant = Self.tenant(of: id) { try await emit("video.deleted", video: id, tenant: tenant, data: [:]) }
        logger.info(
            "video deleted",
            metadata: ["cinescale.video": .string(id), "cinescale.objects": .stringConvertible(keys.count)])
        return Response(status: .noContent)
    }
}
