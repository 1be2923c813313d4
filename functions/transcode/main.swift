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
//   CHUNK_SECONDS     cut the timeline into chunks of about this many seconds, one invocation each (unset or
//                     0: one invocation transcodes the whole video); see docs/media.md
//   FIRST_CHUNK_SECONDS   the first chunk, which makes the video playable: one segment this long (default 2,
//                         at most KEYFRAME_SECONDS); the keyframe grid runs on from its end
//   CHUNK_WINDOW      chunks after the first queued at once per video (default 0: all)
import Foundation
import FunctionRuntime
import MediaFunctionSupport
import MediaKit
import S3Client
import S3Events
import Synchronization
import VideoContract

struct TranscodeConfiguration: Sendable {
    struct Chunking: Sendable {
        var chunkSeconds: Double
        var firstSeconds: Double
        var window: Int
    }

    var environment: MediaFunctionEnvironment
    var ladder: [Rung]
    var settings: EncodingSettings
    var workDirectory: String
    var chunking: Chunking?

    static func load() throws -> TranscodeConfiguration {
        let environment = try MediaFunctionEnvironment()
        var ladder = Rung.defaultLadder
        if let text = environment.variables["LADDER"] {
            let heights = text.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !heights.isEmpty, heights.allSatisfy({ $0 >= 16 && $0 <= 4320 }) else {
                throw MediaFunctionConfigurationError(
                    message: "LADDER must list heights like 240,360,720, got '\(text)'")
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
            workDirectory: environment.variables["WORK_DIR"] ?? NSTemporaryDirectory(),
            chunking: try chunking(environment))
    }

    static func chunking(_ environment: MediaFunctionEnvironment) throws -> Chunking? {
        guard let text = environment.variables["CHUNK_SECONDS"], text != "0" else { return nil }
        let seconds = try environment.number("CHUNK_SECONDS", 32)
        let first = try environment.number("FIRST_CHUNK_SECONDS", 2)
        var window = 0
        if let windowText = environment.variables["CHUNK_WINDOW"], windowText != "0" {
            window = Int(try environment.number("CHUNK_WINDOW", 0))
        }
        return Chunking(chunkSeconds: seconds, firstSeconds: first, window: window)
    }
}

struct Done: Encodable, Sendable {
    var videoId: String
    /// `transcode`, `plan`, `chunk`, `finish`.
    var step: String = "transcode"
    var renditions: [String] = []
    var chunk: Int?
    /// Why the step did nothing: `cancelled` (the video was deleted), `duplicate` (already done).
    var skipped: String?
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

    /// One function for every step, chosen by the object that triggered it: the probe's metadata.json (the
    /// whole transcode, or with chunking the plan), a chunk's job object, or a video's finish object.
    func handle(_ event: S3Event, context: FunctionContext) async throws -> [Done] {
        var done: [Done] = []
        for record in event.records where record.isObjectCreated {
            let bucket = record.s3.bucket.name
            let key = record.s3.object.key
            if VideoKeys.videoID(forMetadata: key) != nil {
                if configuration.chunking != nil {
                    done.append(try await plan(metadataBucket: bucket, key: key, context: context))
                } else {
                    done.append(try await transcode(metadataBucket: bucket, key: key, context: context))
                }
            } else if let job = ChunkKeys.parseJob(key) {
                done.append(try await runChunk(id: job.id, index: job.index, context: context))
            } else if let id = ChunkKeys.parseFinish(key) {
                done.append(try await finish(id: id, context: context))
            }
        }
        return done
    }
}

await FunctionRuntime.run(makeHandler: { try TranscodeHandler() })
