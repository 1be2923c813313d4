// The chunked transcode (CHUNK_SECONDS set): small units of work, so a video is playable as soon as its first
// chunk is up and its chunks spread over every worker (and on AWS over as many Lambdas as there are chunks).
//   plan    metadata.json → plan.json and one job object per chunk (the first chunk's a ".lead.json" job,
//           which the gateway runs on a worker of its own, ahead of the bulk);
//   chunk   a job object → the chunk's segments for every rung, its posters and sprite tiles, and its record;
//           the chunk that finds every record present creates finish.json (once: a conditional write);
//   finish  finish.json → the final VOD playlists and master, the progressive MP4s joined from the segments
//           by stream copy, one sprite, status.json `ready`.
// Every write is under a deterministic key and every job object is created conditionally, so duplicates and
// retries redo the same work and never fork it.
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
    var mediaBucket: String { configuration.environment.mediaBucket }

    // MARK: Plan

    func plan(metadataBucket: String, key: String, context: FunctionContext) async throws -> Done {
        let metadata = try await s3.getJSON(VideoMetadata<MediaInfo>.self, bucket: metadataBucket, key: key)
        let id = metadata.videoId
        if let status = try await s3.optionalJSON(VideoStatus.self, bucket: mediaBucket, key: VideoKeys.status(id)),
            status.state == "ready"
        {
            return Done(videoId: id, step: "plan", skipped: "duplicate")
        }
        guard let info = metadata.media, let video = info.video, let height = video.height, info.duration > 0 else {
            let error = MediaError(
                .unreadableMedia, "metadata.json describes no video stream with a size and a duration")
            try await fail(id, error, context: context)
            throw TranscodeFailed(error: error, videoID: id)
        }
        var plan: TranscodePlan
        if let existing = try await s3.optionalJSON(TranscodePlan.self, bucket: mediaBucket, key: ChunkKeys.plan(id)) {
            plan = existing  // a retried or duplicated plan step: the same cut, the same jobs
        } else {
            let chunking = configuration.chunking!
            // The source's mono or stereo AAC is carried packet by packet into each chunk's range (as MediaKit's
            // AudioTrack carries it); any other audio, surround AAC included (downmixed to stereo), is encoded to
            // AAC once, here (an encoder per chunk would prime every chunk with silence), and the chunks mux that
            // encode's packets.
            let carried =
                info.audio.map {
                    $0.codec == "aac" && (info.container.contains("mp4") || info.container.contains("matroska"))
                        && ($0.channels ?? 2) <= 2
                } ?? true
            let cut = TranscodePlan.cut(
                duration: info.duration, keyframeInterval: configuration.settings.keyframeInterval,
                firstSeconds: chunking.firstSeconds, chunkSeconds: chunking.chunkSeconds,
                frameDuration: 1 / max(video.frameRate ?? 30, 1))
            plan = TranscodePlan(
                videoId: id, source: metadata.source, duration: info.duration,
                keyframeInterval: configuration.settings.keyframeInterval, segmentDurations: cut.segments,
                chunks: cut.chunks,
                rungs: Transcoder.rungs(for: height, ladder: configuration.ladder).map {
                    TranscodePlan.Rung(name: $0.name, height: $0.height, crf: $0.crf, maxBitRate: $0.maxBitRate)
                },
                preset: configuration.settings.preset, window: chunking.window, createdAt: ISO8601Date.format(Date()),
                encodedAudio: carried ? nil : true,
                subtitles: info.streams.contains { $0.type == "subtitle" } ? true : nil,
                extraAudio: info.streams.filter { $0.type == "audio" }.count > 1 ? true : nil)
            if !(try await s3.createJSON(plan, bucket: mediaBucket, key: ChunkKeys.plan(id))) {
                plan = try await s3.getJSON(TranscodePlan.self, bucket: mediaBucket, key: ChunkKeys.plan(id))
            }
        }
        try await s3.putJSON(
            VideoStatus(videoId: id, state: "transcoding", percent: 0, source: plan.source), bucket: mediaBucket,
            key: VideoKeys.status(id))
        let queued = plan.window > 0 ? min(plan.chunks.count, 1 + plan.window) : plan.chunks.count
        // The first chunk goes at once (it encodes its own audio when the rest wait for the audio's encode).
        try await s3.createJSON(ChunkJob(videoId: id, index: 0), bucket: mediaBucket, key: ChunkKeys.job(id, index: 0))
        if plan.encodedAudio == true, plan.chunks.count > 1 {
            guard try await encodeAudio(plan: plan, context: context) else {
                return Done(videoId: id, step: "plan", skipped: "cancelled")
            }
        }
        for index in 1..<queued {
            try await s3.createJSON(
                ChunkJob(videoId: id, index: index), bucket: mediaBucket, key: ChunkKeys.job(id, index: index))
        }
        context.logger.info(
            "planned",
            metadata: [
                "cinescale.video": .string(id), "cinescale.chunks": .stringConvertible(plan.chunks.count),
                "cinescale.segments": .stringConvertible(plan.segmentDurations.count),
            ])
        return Done(videoId: id, step: "plan", renditions: plan.rungs.map(\.name), chunk: plan.chunks.count)
    }

    /// Encodes the source's audio once to `ChunkKeys.encodedAudio` and records it (a retry finds the record and
    /// does nothing). False when the video was deleted meanwhile (what this wrote is taken back).
    func encodeAudio(plan: TranscodePlan, context: FunctionContext) async throws -> Bool {
        let id = plan.videoId
        let recordKey = ChunkKeys.encodedAudioRecord(id)
        if try await s3.optionalJSON(EncodedAudioRecord.self, bucket: mediaBucket, key: recordKey) != nil {
            return true
        }
        let started = ContinuousClock.now
        let scratch = URL(fileURLWithPath: configuration.workDirectory)
            .appendingPathComponent("audio-\(context.requestID)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let path = "\(scratch)/audio.m4a"
        let source = try await rangedSource(plan.source)
        let encoded: EncodedAudio
        do {
            encoded = try await Transcoder.encodeAudio(source: source, output: path)
        } catch {
            if error.code == .sourceUnavailable { throw error }  // transient: the retry policy decides
            let failure = MediaError(error.code, "the audio: \(error.message)")
            try await fail(id, failure, context: context)
            throw TranscodeFailed(error: failure, videoID: id)
        }
        let key = ChunkKeys.encodedAudio(id)
        _ = try await s3.uploadFile(bucket: mediaBucket, key: key, path: path, contentType: "audio/mp4")
        let record = EncodedAudioRecord(
            key: key, packets: encoded.packets, sampleRate: encoded.sampleRate, leadIn: encoded.leadIn,
            duration: encoded.duration, size: encoded.size, seconds: Self.seconds(since: started))
        try await s3.putJSON(record, bucket: mediaBucket, key: recordKey)
        guard try await s3.optionalJSON(TranscodePlan.self, bucket: mediaBucket, key: ChunkKeys.plan(id)) != nil else {
            try? await s3.deleteObject(bucket: mediaBucket, key: key)
            try? await s3.deleteObject(bucket: mediaBucket, key: recordKey)
            return false
        }
        context.logger.info(
            "audio encoded once",
            metadata: [
                "cinescale.video": .string(id), "cinescale.packets": .stringConvertible(encoded.packets),
                "cinescale.seconds": .string(Self.seconds(record.seconds)),
            ])
        return true
    }

    // MARK: Chunk

    func runChunk(id: String, index: Int, context: FunctionContext) async throws -> Done {
        let started = ContinuousClock.now
        // A deleted video has no plan: its queued chunks end here without work.
        guard let plan = try await s3.optionalJSON(TranscodePlan.self, bucket: mediaBucket, key: ChunkKeys.plan(id))
        else {
            context.logger.info("chunk cancelled: the video is gone", metadata: ["cinescale.video": .string(id)])
            return Done(videoId: id, step: "chunk", chunk: index, skipped: "cancelled")
        }
        guard plan.chunks.indices.contains(index) else {
            throw TranscodeFailed(error: MediaError(.transcodeFailed, "the plan has no chunk \(index)"), videoID: id)
        }
        if let status = try await s3.optionalJSON(VideoStatus.self, bucket: mediaBucket, key: VideoKeys.status(id)),
            status.state == "ready" || status.state == "failed"
        {
            return Done(
                videoId: id, step: "chunk", chunk: index, skipped: status.state == "ready" ? "duplicate" : "failed")
        }
        let planned = plan.chunks[index]
        let scratch = URL(fileURLWithPath: configuration.workDirectory)
            .appendingPathComponent("chunk-\(context.requestID)").path
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }

        let source = try await rangedSource(plan.source)
        // Audio encoded once for the whole video: a later chunk muxes that encode's packets for its range.
        var audio: ChunkAudioSource?
        if plan.encodedAudio == true, index > 0 {
            guard
                let encoded = try await s3.optionalJSON(
                    EncodedAudioRecord.self, bucket: mediaBucket, key: ChunkKeys.encodedAudioRecord(id))
            else {
                // Chunks after the first are queued only once the record is written: this is a race with a
                // delete, or a store that lost it; the retry policy decides.
                throw TranscodeFailed(
                    error: MediaError(.sourceUnavailable, "the encoded audio is not there"), videoID: id)
            }
            audio = ChunkAudioSource(source: encodedAudioSource(id, size: encoded.size), leadIn: encoded.leadIn)
        }
        let encodeStarted = ContinuousClock.now
        let result: ChunkResult
        do {
            result = try await Transcoder.transcodeChunk(
                source: source,
                chunk: ChunkRange(
                    index: index, start: planned.start, end: planned.end, firstSegment: planned.firstSegment),
                ladder: plan.rungs.map {
                    Rung(name: $0.name, height: $0.height, crf: $0.crf, maxBitRate: $0.maxBitRate)
                },
                settings: EncodingSettings(preset: plan.preset, keyframeInterval: plan.keyframeInterval),
                thumbnails: ThumbnailSettings(), audio: audio, directory: scratch)
        } catch {
            if error.code == .sourceUnavailable { throw error }  // transient: the retry policy decides
            let range = "\(Self.seconds(planned.start))–\(planned.end.map(Self.seconds) ?? "end") s"
            let failure = MediaError(error.code, "chunk \(index) (\(range)): \(error.message)")
            try await fail(id, failure, context: context)
            throw TranscodeFailed(error: failure, videoID: id)
        }
        let encodeSeconds = Self.seconds(since: encodeStarted)

        var uploads: [Upload] = []
        var rungs: [ChunkRecord.Rung] = []
        for output in result.rungs {
            for segment in output.segments {
                uploads.append(
                    Upload(
                        key: ChunkKeys.segment(id, rung: output.rung.name, name: segment.name),
                        path: "\(output.directory)/\(segment.name)", contentType: "video/iso.segment"))
            }
            // One init section serves every chunk's segments: the first chunk's.
            if index == 0 {
                uploads.append(
                    Upload(
                        key: ChunkKeys.initSection(id, rung: output.rung.name), path: "\(output.directory)/init.mp4",
                        contentType: "video/mp4"))
            }
            rungs.append(
                ChunkRecord.Rung(
                    name: output.rung.name, width: output.width, height: output.height, codecs: output.codecs,
                    segments: output.segments.map { .init(name: $0.name, duration: $0.duration, size: $0.size) }))
        }
        // The chunk's range of the ladder's audio: a rendition of its own, numbered as the picture's segments.
        var audioRecord: ChunkRecord.Audio?
        if let audio = result.audio, !audio.segments.isEmpty {
            for segment in audio.segments {
                uploads.append(
                    Upload(
                        key: ChunkKeys.segment(id, rung: audio.name, name: segment.name),
                        path: "\(audio.directory)/\(segment.name)", contentType: "audio/iso.segment"))
            }
            if index == 0 {
                uploads.append(
                    Upload(
                        key: ChunkKeys.initSection(id, rung: audio.name), path: "\(audio.directory)/init.mp4",
                        contentType: "audio/mp4"))
            }
            audioRecord = ChunkRecord.Audio(
                name: audio.name, language: audio.language, label: audio.label, channels: audio.channels,
                sampleRate: audio.sampleRate, codecs: audio.codecs,
                segments: audio.segments.map { .init(name: $0.name, duration: $0.duration, size: $0.size) })
        }
        var posters: [VideoStatus.Poster] = []
        let targets = ThumbnailSettings().posterFractions.sorted().map { $0 * plan.duration }
        for poster in result.thumbnails?.posters ?? [] {
            // Numbered by the target it stands for (10 %, 50 %, 90 %), whichever chunk took it.
            let number = max(1, targets.filter { $0 <= poster.time + 1e-6 }.count)
            let key = "\(id)/thumbnails/poster-\(number).jpg"
            uploads.append(Upload(key: key, path: poster.path, contentType: "image/jpeg"))
            posters.append(VideoStatus.Poster(key: key, time: poster.time, width: poster.width, height: poster.height))
        }
        var spritePart: ChunkRecord.SpritePart?
        if let sprite = result.thumbnails?.sprite {
            let key = ChunkKeys.spritePart(id, index: index)
            uploads.append(Upload(key: key, path: sprite.path, contentType: "image/jpeg"))
            spritePart = ChunkRecord.SpritePart(
                key: key, firstTile: sprite.firstTile, count: sprite.count, interval: sprite.interval,
                columns: sprite.columns,
                rows: sprite.rows, tileWidth: sprite.tileWidth, tileHeight: sprite.tileHeight)
        }
        try await upload(uploads)
        // Deleted while it ran: take back what it wrote (the delete listed the keys before these existed).
        guard try await s3.optionalJSON(TranscodePlan.self, bucket: mediaBucket, key: ChunkKeys.plan(id)) != nil else {
            _ = try? await s3.deleteObjects(bucket: mediaBucket, keys: uploads.map(\.key))
            return Done(videoId: id, step: "chunk", chunk: index, skipped: "cancelled")
        }
        if index == 0 { try await writePlayablePlaylists(plan: plan, lead: result, audio: audioRecord) }

        let record = ChunkRecord(
            videoId: id, index: index, start: planned.start, end: planned.end, frames: result.frames,
            audioPackets: result.audioPackets, frameRate: result.frameRate, rungs: rungs, audio: audioRecord,
            posters: posters,
            sprite: spritePart, videoDelay: result.videoDelay,
            seconds: Self.seconds(since: started), encodeSeconds: encodeSeconds)
        try await s3.putJSON(record, bucket: mediaBucket, key: ChunkKeys.record(id, index: index))

        // The next chunk of the window (chunk i queues chunk i + window), then the finish once every record is in.
        if plan.window > 0, index > 0, index + plan.window < plan.chunks.count {
            try await s3.createJSON(
                ChunkJob(videoId: id, index: index + plan.window), bucket: mediaBucket,
                key: ChunkKeys.job(id, index: index + plan.window))
        }
        let recorded = try await recordCount(id)
        if recorded >= plan.chunks.count {
            let created = try await s3.createJSON(
                ChunkJob(videoId: id, index: -1), bucket: mediaBucket, key: ChunkKeys.finish(id))
            if created { context.logger.info("last chunk done: finishing", metadata: ["cinescale.video": .string(id)]) }
        }
        context.logger.info(
            "chunk encoded",
            metadata: [
                "cinescale.video": .string(id), "cinescale.chunk": .stringConvertible(index),
                "cinescale.frames": .stringConvertible(result.frames),
                "cinescale.seconds": .string(Self.seconds(record.seconds)),
            ])
        return Done(videoId: id, step: "chunk", renditions: rungs.map(\.name), chunk: index)
    }

    /// The VOD playlists a player can start with while the later chunks are encoded: every planned segment
    /// (the lead's with their real durations), an `init.mp4` and `ENDLIST`, so it plays from 0 with the true
    /// duration; the API holds requests for segments not written yet. The master advertises each rung's
    /// VBV ceiling (or more, if the lead's segments measured more) until the finish measures the whole.
    func writePlayablePlaylists(plan: TranscodePlan, lead: ChunkResult, audio: ChunkRecord.Audio?) async throws {
        func planned(_ written: [ChunkRecord.Segment]) -> [(uri: String, duration: Double)] {
            var segments = plan.segmentDurations.enumerated().map { (ChunkKeys.segmentName($0.offset), $0.element) }
            for (offset, segment) in written.enumerated() where offset < segments.count {
                segments[offset] = (segment.name, segment.duration)
            }
            return segments
        }
        func peak(_ segments: [ChunkRecord.Segment]) -> Int {
            Playlist.bitRates(segments.map { ($0.duration, $0.size) })?.peak ?? 0
        }
        // The ladder's audio: the other tracks come with the finish.
        var audioRenditions: [AudioRendition] = []
        if let audio {
            let text = Playlist.media(segments: planned(audio.segments), mapURI: "init.mp4")
            try await putText(text, key: VideoKeys.hlsPlaylist(plan.videoId, rung: audio.name))
            audioRenditions.append(
                AudioRendition(
                    name: audio.label, language: audio.language, uri: "\(audio.name)/index.m3u8", isDefault: true,
                    channels: audio.channels))
        }
        var variants: [Variant] = []
        for output in lead.rungs {
            let segments = output.segments.map {
                ChunkRecord.Segment(name: $0.name, duration: $0.duration, size: $0.size)
            }
            let text = Playlist.media(segments: planned(segments), mapURI: "init.mp4")
            try await putText(text, key: VideoKeys.hlsPlaylist(plan.videoId, rung: output.rung.name))
            let measured = peak(segments) + peak(audio?.segments ?? [])
            let ceiling = Int(Double(output.rung.maxBitRate) * 1.1) + 192_000
            variants.append(
                Variant(
                    bandwidth: max(measured, ceiling), averageBandwidth: nil, width: output.width,
                    height: output.height,
                    codecs: output.codecs, frameRate: lead.frameRate, uri: "\(output.rung.name)/index.m3u8"))
        }
        try await putText(Playlist.master(variants, audio: audioRenditions), key: VideoKeys.hlsMaster(plan.videoId))
    }

    func recordCount(_ id: String) async throws -> Int {
        var count = 0
        for try await object in s3.listAllObjects(bucket: mediaBucket, prefix: ChunkKeys.records(id))
        where object.key.hasSuffix(".json") {
            count += 1
        }
        return count
    }

    /// The source through ranged GETs of 1 MiB (a chunk reads only the part of the file its range needs).
    func rangedSource(_ object: SourceObject) async throws -> ChunkedRangeSource {
        let size: Int64
        if let known = object.size {
            size = known
        } else {
            size = Int64(try await s3.headObject(bucket: object.bucket, key: object.key).size)
        }
        let s3 = self.s3
        return Self.rangedReads(size: size) { range in
            try await s3.getObject(bucket: object.bucket, key: object.key, range: range)
        }
    }

    /// The audio the plan encoded once (`ChunkKeys.encodedAudio`), through ranged GETs like the source.
    func encodedAudioSource(_ id: String, size: Int64) -> ChunkedRangeSource {
        let s3 = self.s3
        let bucket = mediaBucket
        return Self.rangedReads(size: size) { range in
            try await s3.getObject(bucket: bucket, key: ChunkKeys.encodedAudio(id), range: range)
        }
    }

    static func rangedReads(
        size: Int64, get: @escaping @Sendable (ByteRange) async throws -> GetObjectOutput
    ) -> ChunkedRangeSource {
        ChunkedRangeSource(size: size, chunkSize: 1 << 20, cachedChunks: 8) { range in
            try Blocking.run {
                Array(try await get(ByteRange(Int(range.lowerBound)..<Int(range.upperBound))).body.readableBytesView)
            }
        }
    }
}
