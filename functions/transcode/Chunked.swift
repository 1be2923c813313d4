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
            segments.filter { $0.duration >= 1 }.map { Int(Double($0.size * 8) / $0.duration) }.max() ?? 0
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

    // MARK: Finish

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
            let directory = "\(scratch)/\(main.name)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var downloads = [Download(key: ChunkKeys.initSection(id, rung: main.name), path: "\(directory)/init.mp4")]
            downloads += segments.map {
                Download(key: ChunkKeys.segment(id, rung: main.name, name: $0.name), path: "\(directory)/\($0.name)")
            }
            try await download(downloads)
            audioFiles = ("\(directory)/init.mp4", segments.map { "\(directory)/\($0.name)" })
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
        let audioCodecs = audioTracks.reduce(into: [String]()) { if !$0.contains($1.codecs) { $0.append($1.codecs) } }

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
            let directory = "\(scratch)/\(first.name)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var downloads = [Download(key: ChunkKeys.initSection(id, rung: first.name), path: "\(directory)/init.mp4")]
            downloads += segments.map {
                Download(key: ChunkKeys.segment(id, rung: first.name, name: $0.name), path: "\(directory)/\($0.name)")
            }
            try await download(downloads)
            let mp4Path = "\(scratch)/\(first.name).mp4"
            let joined: (size: Int64, duration: Double)
            do {
                joined = try await Assembly.progressiveMP4(
                    initSection: "\(directory)/init.mp4", segments: segments.map { "\(directory)/\($0.name)" },
                    audio: audioFiles, output: mp4Path)
            } catch {
                try await fail(id, error, context: context)
                throw TranscodeFailed(error: error, videoID: id)
            }
            let mp4Key = VideoKeys.mp4(id, rung: first.name)
            try await s3.uploadFile(bucket: mediaBucket, key: mp4Key, path: mp4Path, contentType: "video/mp4")
            try? FileManager.default.removeItem(atPath: directory)
            try? FileManager.default.removeItem(atPath: mp4Path)
            try await putText(text, key: VideoKeys.hlsPlaylist(id, rung: first.name))
            let duration = joined.duration > 0 ? joined.duration : plan.duration
            // A variant plays its picture with any of the audio renditions: its rates and codecs count them.
            let codecs = ([String(first.codecs.split(separator: ",").first ?? "")] + audioCodecs).joined(separator: ",")
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

    // MARK: Helpers

    func fail(_ id: String, _ error: MediaError, context: FunctionContext) async throws {
        try await s3.putJSON(
            VideoStatus(
                videoId: id, state: "failed", stage: "transcode",
                error: .init(code: error.code.rawValue, message: error.message)),
            bucket: mediaBucket, key: VideoKeys.status(id))
        context.logger.warning(
            "transcode failed",
            metadata: [
                "cinescale.video": .string(id), "cinescale.error": .string(error.description),
            ])
    }

    func putText(_ text: String, key: String) async throws {
        _ = try await s3.putObject(
            bucket: mediaBucket, key: key, body: ByteBuffer(string: text), contentType: "application/vnd.apple.mpegurl")
    }

    struct Upload: Sendable {
        var key: String
        var path: String
        var contentType: String
    }

    struct Download: Sendable {
        var key: String
        var path: String
    }

    func upload(_ files: [Upload]) async throws {
        let s3 = self.s3
        let bucket = mediaBucket
        try await Self.eightAtATime(files) { file in
            _ = try await s3.uploadFile(bucket: bucket, key: file.key, path: file.path, contentType: file.contentType)
        }
    }

    func download(_ files: [Download]) async throws {
        let s3 = self.s3
        let bucket = mediaBucket
        try await Self.eightAtATime(files) { file in
            _ = try await s3.downloadObject(bucket: bucket, key: file.key, to: file.path)
        }
    }

    static func eightAtATime<T: Sendable>(_ items: [T], _ work: @escaping @Sendable (T) async throws -> Void)
        async throws
    {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var pending = items[...]
            func next() {
                guard let item = pending.popFirst() else { return }
                group.addTask { try await work(item) }
            }
            for _ in 0..<8 { next() }
            while try await group.next() != nil { next() }
        }
    }

    static func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    static func seconds(_ value: Double) -> String { String(format: "%.2f", value) }
}
