// `transcode`: triggered by the probe's `<video-id>/metadata.json` in the media bucket, so the pipeline is
// chained by events. Downloads the source once, decodes it once and encodes every rung of the ladder at or
// below its height (MediaKit.Transcoder: H.264 + AAC, aligned keyframes, a faststart MP4 and an HLS rendition
// of fMP4 segments per rung, a master playlist), uploads everything (multipart when large) under deterministic
// keys — a retried invocation overwrites — and
// keeps `<video-id>/status.json` current: `transcoding` with a percentage while it runs, then `ready` with
// the renditions (or `failed` with the reason, and the invocation fails).
//
// Environment: see MediaFunctionEnvironment, and
//   LADDER            comma-separated heights (default 240,360,720,1080)
//   X264_PRESET       libx264 preset (default veryfast)
//   KEYFRAME_SECONDS  seconds between keyframes, the same frames in every rung (default 4)
//   WORK_DIR          scratch space (default the system temporary directory)
import Foundation
import FunctionRuntime
import MediaFunctionSupport
import MediaKit
import S3Client
import Synchronization

struct TranscodeConfiguration: Sendable {
    var environment: MediaFunctionEnvironment
    var ladder: [Rung]
    var settings: EncodingSettings
    var workDirectory: String

    static func load() throws -> TranscodeConfiguration {
        let environment = try MediaFunctionEnvironment()
        var ladder = Rung.defaultLadder
        if let text = environment.variables["LADDER"] {
            let heights = text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !heights.isEmpty, heights.allSatisfy({ $0 >= 16 && $0 <= 4320 }) else {
                throw MediaFunctionConfigurationError(message: "LADDER must list heights like 240,360,720, got '\(text)'")
            }
            ladder = heights.map { height in
                Rung.defaultLadder.first { $0.height == height }
                    ?? Rung(name: "\(height)p", height: height, maxBitRate: max(200_000, height * height * 5))
            }
        }
        return TranscodeConfiguration(
            environment: environment, ladder: ladder,
            settings: EncodingSettings(
                preset: environment.variables["X264_PRESET"] ?? "veryfast",
                keyframeInterval: try environment.number("KEYFRAME_SECONDS", 4)),
            workDirectory: environment.variables["WORK_DIR"] ?? NSTemporaryDirectory())
    }
}

/// The parts of the probe's metadata.json this function reads.
struct ProbeMetadata: Decodable, Sendable {
    struct Source: Decodable, Sendable {
        var bucket: String
        var key: String
        var eTag: String?
    }

    var videoId: String
    var source: Source
}

struct Done: Encodable, Sendable {
    var videoId: String
    var renditions: [String]
}

struct TranscodeFailed: FunctionError {
    var error: MediaError
    var videoID: String
    var errorType: String { error.code.rawValue }
    var errorMessage: String { "video \(videoID): \(error.message)" }
}

struct TranscodeHandler: FunctionHandler {
    let configuration: TranscodeConfiguration
    let s3: S3Client

    init() throws {
        configuration = try TranscodeConfiguration.load()
        s3 = S3Client(configuration: configuration.environment.s3)
    }

    func handle(_ event: S3Event, context: FunctionContext) async throws -> [Done] {
        var done: [Done] = []
        for record in event.records where record.isObjectCreated {
            guard VideoKeys.videoID(forMetadata: record.s3.object.key) != nil else { continue }
            done.append(try await transcode(metadataBucket: record.s3.bucket.name, key: record.s3.object.key, context: context))
        }
        return done
    }

    func transcode(metadataBucket: String, key: String, context: FunctionContext) async throws -> Done {
        let metadata = try await s3.getJSON(ProbeMetadata.self, bucket: metadataBucket, key: key)
        let id = metadata.videoId
        let media = configuration.environment.mediaBucket
        let scratch = URL(fileURLWithPath: configuration.workDirectory)
            .appendingPathComponent("transcode-\(context.requestID)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        try await s3.putJSON(VideoStatus(videoId: id, state: "transcoding", percent: 0), bucket: media, key: VideoKeys.status(id))
        let sourcePath = scratch + "/source"
        try await s3.downloadObject(bucket: metadata.source.bucket, key: metadata.source.key, to: sourcePath)

        // Progress from the encoder thread, written to status.json at most every second by this task.
        let progress = Mutex<Int>(0)
        let reporter = Task {
            var reported = 0
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                let percent = progress.withLock { $0 }
                if percent > reported && percent < 100 {
                    reported = percent
                    try? await s3.putJSON(
                        VideoStatus(videoId: id, state: "transcoding", percent: percent), bucket: media, key: VideoKeys.status(id))
                }
            }
        }
        let result: TranscodeResult
        do {
            result = try await Transcoder.transcode(
                input: sourcePath, ladder: configuration.ladder, settings: configuration.settings,
                thumbnails: ThumbnailSettings(), directory: scratch,
                progress: { fraction in progress.withLock { $0 = Int(fraction * 99) } })
            reporter.cancel()
        } catch {
            reporter.cancel()
            try await s3.putJSON(
                VideoStatus(
                    videoId: id, state: "failed", percent: progress.withLock { $0 }, stage: "transcode",
                    error: .init(code: error.code.rawValue, message: error.message)),
                bucket: media, key: VideoKeys.status(id))
            throw TranscodeFailed(error: error, videoID: id)
        }

        var infos: [VideoStatus.Rendition] = []
        for rendition in result.renditions {
            let key = VideoKeys.mp4(id, rung: rendition.rung.name)
            try await s3.uploadFile(bucket: media, key: key, path: rendition.path, contentType: "video/mp4")
            infos.append(
                VideoStatus.Rendition(
                    name: rendition.rung.name, width: rendition.width, height: rendition.height,
                    bitRate: rendition.bitRate, size: rendition.size, key: key,
                    playlist: VideoKeys.hlsPlaylist(id, rung: rendition.rung.name), bandwidth: rendition.hls.bandwidth,
                    codecs: rendition.hls.codecs))
        }
        try await uploadHLS(from: result.hlsDirectory, to: VideoKeys.hls(id), bucket: media)
        var thumbnails = VideoStatus.Thumbnails()
        for (index, poster) in (result.thumbnails?.posters ?? []).enumerated() {
            let key = "\(id)/thumbnails/poster-\(index + 1).jpg"
            try await s3.uploadFile(bucket: media, key: key, path: poster.path, contentType: "image/jpeg")
            thumbnails.posters.append(VideoStatus.Poster(key: key, time: poster.time, width: poster.width, height: poster.height))
        }
        if let sprite = result.thumbnails?.sprite {
            let key = "\(id)/thumbnails/sprite.jpg"
            try await s3.uploadFile(bucket: media, key: key, path: sprite.path, contentType: "image/jpeg")
            thumbnails.sprite = VideoStatus.Sprite(
                key: key, interval: sprite.interval, columns: sprite.columns, rows: sprite.rows, count: sprite.count,
                tileWidth: sprite.tileWidth, tileHeight: sprite.tileHeight)
        }
        try await s3.putJSON(
            VideoStatus(
                videoId: id, state: "ready", percent: 100, renditions: infos, hls: VideoKeys.hlsMaster(id),
                thumbnails: thumbnails),
            bucket: media, key: VideoKeys.status(id))
        context.logger.info("transcoded", metadata: [
            "cinescale.video": .string(id), "cinescale.renditions": .string(infos.map(\.name).joined(separator: ",")),
        ])
        return Done(videoId: id, renditions: infos.map(\.name))
    }
}

extension TranscodeHandler {
    /// Uploads the HLS tree under `prefix`, eight files at a time: segments and init sections first, then the
    /// media playlists, the master playlist last, so no playlist ever names an object not yet written.
    func uploadHLS(from directory: String, to prefix: String, bucket: String) async throws {
        let files = (FileManager.default.enumerator(atPath: directory)?.allObjects as? [String] ?? []).filter { file in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: directory + "/" + file, isDirectory: &isDirectory) && !isDirectory.boolValue
        }
        guard files.contains("master.m3u8") else {
            throw TranscodeFailed(error: MediaError(.transcodeFailed, "no HLS master playlist in \(directory)"), videoID: prefix)
        }
        let media = files.filter { !$0.hasSuffix(".m3u8") }
        let playlists = files.filter { $0.hasSuffix(".m3u8") && $0 != "master.m3u8" }
        for batch in [media, playlists, files.filter { $0 == "master.m3u8" }] {
            try await withThrowingTaskGroup(of: Void.self) { group in
                var pending = batch[...]
                func next() {
                    guard let file = pending.popFirst() else { return }
                    group.addTask {
                        _ = try await s3.uploadFile(
                            bucket: bucket, key: prefix + file, path: directory + "/" + file, contentType: Self.contentType(file))
                    }
                }
                for _ in 0..<8 { next() }
                while try await group.next() != nil { next() }
            }
        }
    }

    static func contentType(_ file: String) -> String {
        if file.hasSuffix(".m3u8") { return "application/vnd.apple.mpegurl" }
        if file.hasSuffix(".m4s") { return "video/iso.segment" }
        return "video/mp4"
    }
}

await FunctionRuntime.run(makeHandler: { try TranscodeHandler() })
