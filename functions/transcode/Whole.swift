// The whole-video transcode (CHUNK_SECONDS unset): one invocation downloads the source, decodes it once and
// encodes the whole ladder.
import Foundation
import FunctionRuntime
import MediaFunctionSupport
import MediaKit
import S3Client
import Synchronization
import VideoContract

extension TranscodeHandler {
    func transcode(metadataBucket: String, key: String, context: FunctionContext) async throws -> Done {
        let metadata = try await s3.getJSON(VideoMetadata<MediaInfo>.self, bucket: metadataBucket, key: key)
        let id = metadata.videoId
        let media = configuration.environment.mediaBucket
        let scratch = URL(fileURLWithPath: configuration.workDirectory)
            .appendingPathComponent("transcode-\(context.requestID)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        try await s3.putJSON(
            VideoStatus(videoId: id, state: "transcoding", percent: 0), bucket: media, key: VideoKeys.status(id))
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
                        VideoStatus(videoId: id, state: "transcoding", percent: percent), bucket: media,
                        key: VideoKeys.status(id))
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
        let captions = result.subtitles.map { output in
            VideoStatus.Caption(
                name: output.name, language: output.language, label: output.label,
                key: VideoKeys.captionVTT(id, name: output.name),
                playlist: VideoKeys.hlsPlaylist(id, rung: output.name),
                origin: "source")
        }
        let audio = result.audio.map { output in
            let rates = output.bitRates
            return VideoStatus.AudioTrack(
                name: output.name, language: output.language, label: output.label, isDefault: output.isMain,
                channels: output.channels, sampleRate: output.sampleRate, codecs: output.codecs,
                playlist: VideoKeys.hlsPlaylist(id, rung: output.name), bandwidth: rates.peak,
                averageBandwidth: rates.average)
        }
        if !result.skippedAudio.isEmpty {
            context.logger.warning(
                "audio tracks left out",
                metadata: [
                    "cinescale.video": .string(id),
                    "cinescale.tracks": .string(result.skippedAudio.joined(separator: "; ")),
                ])
        }
        // The audio-only download: the ladder's audio rendition as one progressive M4A.
        var audioDownload: String?
        if let main = result.audio.first(where: \.isMain) {
            let m4a = scratch + "/audio.m4a"
            _ = try await Assembly.progressiveMP4(
                initSection: main.directory + "/init.mp4",
                segments: main.segments.map { main.directory + "/" + $0.name }, output: m4a)
            try await s3.uploadFile(
                bucket: media, key: VideoKeys.audioDownload(id), path: m4a, contentType: "audio/mp4")
            audioDownload = VideoKeys.audioDownload(id)
        }
        var thumbnails = VideoStatus.Thumbnails()
        for (index, poster) in (result.thumbnails?.posters ?? []).enumerated() {
            let key = "\(id)/thumbnails/poster-\(index + 1).jpg"
            try await s3.uploadFile(bucket: media, key: key, path: poster.path, contentType: "image/jpeg")
            thumbnails.posters.append(
                VideoStatus.Poster(key: key, time: poster.time, width: poster.width, height: poster.height))
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
                thumbnails: thumbnails, captions: captions.isEmpty ? nil : captions, audio: audio.isEmpty ? nil : audio,
                audioDownload: audioDownload),
            bucket: media, key: VideoKeys.status(id))
        context.logger.info(
            "transcoded",
            metadata: [
                "cinescale.video": .string(id),
                "cinescale.renditions": .string(infos.map(\.name).joined(separator: ",")),
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
            return FileManager.default.fileExists(atPath: directory + "/" + file, isDirectory: &isDirectory)
                && !isDirectory.boolValue
        }
        guard files.contains("master.m3u8") else {
            throw TranscodeFailed(
                error: MediaError(.transcodeFailed, "no HLS master playlist in \(directory)"), videoID: prefix)
        }
        let media = files.filter { !$0.hasSuffix(".m3u8") }
        let playlists = files.filter { $0.hasSuffix(".m3u8") && $0 != "master.m3u8" }
        let s3 = self.s3
        for batch in [media, playlists, files.filter { $0 == "master.m3u8" }] {
            try await Self.eightAtATime(batch) { file in
                _ = try await s3.uploadFile(
                    bucket: bucket, key: prefix + file, path: directory + "/" + file,
                    contentType: Self.contentType(file))
            }
        }
    }

    static func contentType(_ file: String) -> String {
        if file.hasSuffix(".m3u8") { return "application/vnd.apple.mpegurl" }
        if file.hasSuffix(".m4s") { return file.hasPrefix("audio-") ? "audio/iso.segment" : "video/iso.segment" }
        if file.hasPrefix("audio-"), file.hasSuffix(".mp4") { return "audio/mp4" }
        if file.hasSuffix(".vtt") { return "text/vtt; charset=utf-8" }
        return "video/mp4"
    }
}
