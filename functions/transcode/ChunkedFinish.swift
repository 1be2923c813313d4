// The chunked transcode's last step (see Chunked.swift): finish.json → the final VOD playlists and master (with
// the source's subtitles and other audio tracks, read while the MP4s are joined), the progressive MP4s joined
// from the chunks' segments by stream copy, one sprite, status.json `ready`.
import Foundation
import FunctionRuntime
import HLS
import MediaFunctionSupport
import MediaKit
import NIOCore
import S3Client
import VideoContract
import WireFormat

extension TranscodeHandler {
    func finish(id: String, context: FunctionContext) async throws -> Done {
        guard let plan = try await s3.optionalJSON(TranscodePlan.self, bucket: mediaBucket, key: ChunkKeys.plan(id))
        else {
            return Done(videoId: id, step: "finish", skipped: "cancelled")
        }
        if let status = try await s3.optionalJSON(VideoStatus.self, bucket: mediaBucket, key: VideoKeys.status(id)),
            status.state == "ready" || status.state == "failed"
        {
            return Done(videoId: id, step: "finish", skipped: status.state == "ready" ? "duplicate" : "failed")
        }
        var records: [ChunkRecord] = []
        for chunk in plan.chunks {
            guard
                let record = try await s3.optionalJSON(
                    ChunkRecord.self, bucket: mediaBucket, key: ChunkKeys.record(id, index: chunk.index))
            else {
                throw TranscodeFailed(
                    error: MediaError(.transcodeFailed, "chunk \(chunk.index) has no record yet"), videoID: id)
            }
            records.append(record)
        }
        let scratch = URL(fileURLWithPath: configuration.workDirectory)
            .appendingPathComponent("finish-\(context.requestID)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        // The subtitles are read from the source while the MP4s are joined (the first chunk never waits for
        // them: the early master has none, the final one names them).
        async let subtitleTracks = extractSubtitles(plan: plan, context: context)
        // So are the audio tracks the chunks did not carry.
        let videoDelay = records[0].videoDelay ?? 0
        async let otherAudio = writeOtherAudio(plan: plan, videoDelay: videoDelay, scratch: scratch, context: context)

        // The ladder's audio: every chunk's segments in order, one rendition, and the M4A download from them.
        var audioTracks: [VideoStatus.AudioTrack] = []
        var audioFiles: (initSection: String, segments: [String])?
        var audioDownload: String?
        if let main = records[0].audio {
            let segments = records.flatMap { $0.audio?.segments ?? [] }
            guard Set(segments.map(\.name)).count == segments.count else {
                let error = MediaError(
                    .transcodeFailed, "the chunks' audio segments overlap: \(segments.map(\.name).prefix(8))…")
                try await fail(id, error, context: context)
                throw TranscodeFailed(error: error, videoID: id)
            }
            let files = try await downloadRendition(id, name: main.name, segments: segments, scratch: scratch)
            audioFiles = (files.initSection, files.segments)
            let text = Playlist.media(segments: segments.map { ($0.name, $0.duration) }, mapURI: "init.mp4")
            try await putText(text, key: VideoKeys.hlsPlaylist(id, rung: main.name))
            let sizes = Dictionary(uniqueKeysWithValues: segments.map { ($0.name, $0.size) })
            let rates = Playlist.bitRates(of: try MediaPlaylist(parsing: text), size: { sizes[$0] })
            audioTracks.append(
                VideoStatus.AudioTrack(
                    name: main.name, language: main.language, label: main.label, isDefault: true,
                    channels: main.channels,
                    sampleRate: main.sampleRate, codecs: main.codecs,
                    playlist: VideoKeys.hlsPlaylist(id, rung: main.name),
                    bandwidth: rates?.peak ?? 0, averageBandwidth: rates?.average ?? 0))
            let m4a = "\(scratch)/audio.m4a"
            do {
                _ = try await Assembly.progressiveMP4(
                    initSection: audioFiles!.initSection, segments: audioFiles!.segments, output: m4a)
            } catch {
                try await fail(id, error, context: context)
                throw TranscodeFailed(error: error, videoID: id)
            }
            try await s3.uploadFile(
                bucket: mediaBucket, key: VideoKeys.audioDownload(id), path: m4a, contentType: "audio/mp4")
            try? FileManager.default.removeItem(atPath: m4a)
            audioDownload = VideoKeys.audioDownload(id)
        }
        audioTracks += try await otherAudio
        let audioPeak = audioTracks.map(\.bandwidth).max() ?? 0
        let audioAverage = audioTracks.first?.averageBandwidth ?? 0

        var renditions: [VideoStatus.Rendition] = []
        var variants: [Variant] = []
        for (rungIndex, first) in records[0].rungs.enumerated() {
            let segments = records.flatMap { $0.rungs.indices.contains(rungIndex) ? $0.rungs[rungIndex].segments : [] }
            // The joined rendition must be every segment once, in order: a chunk that wrote fewer (or other)
            // segments than its neighbours expect fails the video rather than publishing a gap.
            let expected = (0..<segments.count).map(ChunkKeys.segmentName)
            guard segments.map(\.name) == expected else {
                let error = MediaError(
                    .transcodeFailed,
                    "the chunks' \(first.name) segments do not join: \(segments.map(\.name).prefix(8))…")
                try await fail(id, error, context: context)
                throw TranscodeFailed(error: error, videoID: id)
            }
            let text = Playlist.media(segments: segments.map { ($0.name, $0.duration) }, mapURI: "init.mp4")
            let sizes = Dictionary(uniqueKeysWithValues: segments.map { ($0.name, $0.size) })
            let rates = Playlist.bitRates(of: try MediaPlaylist(parsing: text), size: { sizes[$0] })
            // The progressive MP4 from the same segments, by stream copy.
            let files = try await downloadRendition(id, name: first.name, segments: segments, scratch: scratch)
            let mp4Path = "\(scratch)/\(first.name).mp4"
            let joined: (size: Int64, duration: Double)
            do {
                joined = try await Assembly.progressiveMP4(
                    initSection: files.initSection, segments: files.segments, audio: audioFiles, output: mp4Path)
            } catch {
                try await fail(id, error, context: context)
                throw TranscodeFailed(error: error, videoID: id)
            }
            let mp4Key = VideoKeys.mp4(id, rung: first.name)
            try await s3.uploadFile(bucket: mediaBucket, key: mp4Key, path: mp4Path, contentType: "video/mp4")
            try? FileManager.default.removeItem(atPath: files.directory)
            try? FileManager.default.removeItem(atPath: mp4Path)
            try await putText(text, key: VideoKeys.hlsPlaylist(id, rung: first.name))
            let duration = joined.duration > 0 ? joined.duration : plan.duration
            // A variant plays its picture with any of the audio renditions: its rates and codecs count them.
            let codecs = Transcoder.variantCodecs(video: first.codecs, audio: audioTracks.map(\.codecs))
            let bandwidth = (rates?.peak ?? 0) + audioPeak
            renditions.append(
                VideoStatus.Rendition(
                    name: first.name, width: first.width, height: first.height,
                    bitRate: Int(Double(joined.size * 8) / max(duration, 0.001)), size: joined.size, key: mp4Key,
                    playlist: VideoKeys.hlsPlaylist(id, rung: first.name), bandwidth: bandwidth, codecs: codecs))
            variants.append(
                Variant(
                    bandwidth: bandwidth, averageBandwidth: rates.map { $0.average + audioAverage }, width: first.width,
                    height: first.height, codecs: codecs, frameRate: records[0].frameRate,
                    uri: "\(first.name)/index.m3u8"))
        }
        let captions = try await uploadSubtitles(try await subtitleTracks, plan: plan, scratch: scratch)
        try await putText(
            Playlist.master(
                variants,
                audio: audioTracks.map {
                    AudioRendition(
                        name: $0.label, language: $0.language, uri: "\($0.name)/index.m3u8", isDefault: $0.isDefault,
                        channels: $0.channels)
                },
                subtitles: captions.map {
                    SubtitleRendition(name: $0.label, language: $0.language, uri: "\($0.name)/index.m3u8")
                }),
            key: VideoKeys.hlsMaster(id))

        var thumbnails = VideoStatus.Thumbnails(posters: records.flatMap(\.posters).sorted { $0.time < $1.time })
        let parts = records.compactMap(\.sprite)
        if let layout = parts.first {
            try await download(
                parts.map { Download(key: $0.key, path: "\(scratch)/\(($0.key as NSString).lastPathComponent)") })
            let spritePath = "\(scratch)/sprite.jpg"
            try await Assembly.sprite(
                parts: parts.map {
                    Assembly.SpritePart(
                        path: "\(scratch)/\(($0.key as NSString).lastPathComponent)", firstTile: $0.firstTile,
                        count: $0.count)
                },
                columns: layout.columns, tileWidth: layout.tileWidth, tileHeight: layout.tileHeight, output: spritePath)
            let key = "\(id)/thumbnails/sprite.jpg"
            try await s3.uploadFile(bucket: mediaBucket, key: key, path: spritePath, contentType: "image/jpeg")
            thumbnails.sprite = VideoStatus.Sprite(
                key: key, interval: layout.interval, columns: layout.columns, rows: layout.rows,
                count: parts.reduce(0) { $0 + $1.count }, tileWidth: layout.tileWidth, tileHeight: layout.tileHeight)
            _ = try? await s3.deleteObjects(bucket: mediaBucket, keys: parts.map(\.key))
        }
        try await s3.putJSON(
            VideoStatus(
                videoId: id, state: "ready", percent: 100, source: plan.source, renditions: renditions,
                hls: VideoKeys.hlsMaster(id), thumbnails: thumbnails, captions: captions.isEmpty ? nil : captions,
                audio: audioTracks.isEmpty ? nil : audioTracks, audioDownload: audioDownload),
            bucket: mediaBucket, key: VideoKeys.status(id))
        context.logger.info(
            "finished",
            metadata: [
                "cinescale.video": .string(id), "cinescale.chunks": .stringConvertible(records.count),
                "cinescale.renditions": .string(renditions.map(\.name).joined(separator: ",")),
            ])
        return Done(videoId: id, step: "finish", renditions: renditions.map(\.name))
    }

    /// Downloads a rendition's init section (the first chunk's) and `segments` (every chunk's, in order) into
    /// `scratch/<name>/`: the directory and the files' paths.
    func downloadRendition(
        _ id: String, name: String, segments: [ChunkRecord.Segment], scratch: String
    ) async throws -> (directory: String, initSection: String, segments: [String]) {
        let directory = "\(scratch)/\(name)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var downloads = [Download(key: ChunkKeys.initSection(id, rung: name), path: "\(directory)/init.mp4")]
        downloads += segments.map {
            Download(key: ChunkKeys.segment(id, rung: name, name: $0.name), path: "\(directory)/\($0.name)")
        }
        try await download(downloads)
        return (directory, "\(directory)/init.mp4", segments.map { "\(directory)/\($0.name)" })
    }

    /// The source's text subtitle tracks (none when the plan saw no subtitle stream). A source that cannot be
    /// read is transient (the retry decides); subtitles that cannot be decoded cost the captions, not the video.
    func extractSubtitles(plan: TranscodePlan, context: FunctionContext) async throws -> [SubtitleTrack] {
        guard plan.subtitles == true else { return [] }
        let started = ContinuousClock.now
        do {
            let tracks = try await Subtitles.extract(source: try await rangedSource(plan.source))
            context.logger.info(
                "subtitles extracted",
                metadata: [
                    "cinescale.video": .string(plan.videoId), "cinescale.tracks": .stringConvertible(tracks.count),
                    "cinescale.cues": .stringConvertible(tracks.reduce(0) { $0 + $1.cues.count }),
                    "cinescale.seconds": .string(Self.seconds(Self.seconds(since: started))),
                ])
            return tracks
        } catch let error as MediaError where error.code != .sourceUnavailable {
            context.logger.warning(
                "subtitles not extracted",
                metadata: [
                    "cinescale.video": .string(plan.videoId), "cinescale.error": .string(error.message),
                ])
            return []
        }
    }

    /// The source's audio tracks other than the ladder's (none when the plan saw one audio stream at most), each
    /// written as a rendition of its own and uploaded; their status entries. A source that cannot be read is
    /// transient (the retry decides); a track that cannot be decoded costs that track, not the video.
    func writeOtherAudio(
        plan: TranscodePlan, videoDelay: Double, scratch: String, context: FunctionContext
    ) async throws -> [VideoStatus.AudioTrack] {
        guard plan.extraAudio == true else { return [] }
        let id = plan.videoId
        let started = ContinuousClock.now
        let directory = "\(scratch)/other-audio"
        let outputs: [AudioOutput]
        do {
            let (written, skipped) = try await Transcoder.audioRenditions(
                source: try await rangedSource(plan.source), hlsDirectory: directory,
                segmentSeconds: plan.keyframeInterval,
                videoDelay: videoDelay)
            outputs = written
            if !skipped.isEmpty {
                context.logger.warning(
                    "audio tracks left out",
                    metadata: [
                        "cinescale.video": .string(id), "cinescale.tracks": .string(skipped.joined(separator: "; ")),
                    ])
            }
        } catch let error as MediaError where error.code != .sourceUnavailable {
            context.logger.warning(
                "other audio tracks not written",
                metadata: [
                    "cinescale.video": .string(id), "cinescale.error": .string(error.message),
                ])
            return []
        }
        var uploads: [Upload] = []
        for output in outputs {
            let text = Playlist.media(segments: output.segments.map { ($0.name, $0.duration) }, mapURI: "init.mp4")
            let playlist = "\(output.directory)/index.m3u8"
            try Data(text.utf8).write(to: URL(fileURLWithPath: playlist))
            uploads.append(
                Upload(
                    key: ChunkKeys.initSection(id, rung: output.name), path: "\(output.directory)/init.mp4",
                    contentType: "audio/mp4"))
            uploads += output.segments.map {
                Upload(
                    key: ChunkKeys.segment(id, rung: output.name, name: $0.name),
                    path: "\(output.directory)/\($0.name)",
                    contentType: "audio/iso.segment")
            }
        }
        try await upload(uploads)
        // The playlists once every segment is up.
        try await upload(
            outputs.map {
                Upload(
                    key: VideoKeys.hlsPlaylist(id, rung: $0.name), path: "\($0.directory)/index.m3u8",
                    contentType: "application/vnd.apple.mpegurl")
            })
        context.logger.info(
            "other audio tracks written",
            metadata: [
                "cinescale.video": .string(id), "cinescale.tracks": .stringConvertible(outputs.count),
                "cinescale.seconds": .string(Self.seconds(Self.seconds(since: started))),
            ])
        return outputs.map { output in
            let rates = output.bitRates
            return VideoStatus.AudioTrack(
                name: output.name, language: output.language, label: output.label, isDefault: false,
                channels: output.channels,
                sampleRate: output.sampleRate, codecs: output.codecs,
                playlist: VideoKeys.hlsPlaylist(id, rung: output.name),
                bandwidth: rates.peak, averageBandwidth: rates.average)
        }
    }

    /// Writes and uploads each track's WebVTT file and playlist; the status entries naming them.
    func uploadSubtitles(_ tracks: [SubtitleTrack], plan: TranscodePlan, scratch: String) async throws -> [VideoStatus
        .Caption]
    {
        guard !tracks.isEmpty else { return [] }
        let id = plan.videoId
        let outputs = try Subtitles.write(tracks, hlsDirectory: "\(scratch)/subs", duration: plan.duration)
        var uploads: [Upload] = []
        for output in outputs {
            uploads.append(
                Upload(
                    key: VideoKeys.captionVTT(id, name: output.name), path: "\(scratch)/subs/\(output.vtt)",
                    contentType: "text/vtt; charset=utf-8"))
            uploads.append(
                Upload(
                    key: VideoKeys.hlsPlaylist(id, rung: output.name), path: "\(scratch)/subs/\(output.playlist)",
                    contentType: "application/vnd.apple.mpegurl"))
        }
        try await upload(uploads)
        return outputs.map { output in
            VideoStatus.Caption(
                name: output.name, language: output.language, label: output.label,
                key: VideoKeys.captionVTT(id, name: output.name),
                playlist: VideoKeys.hlsPlaylist(id, rung: output.name),
                origin: "source")
        }
    }
}
