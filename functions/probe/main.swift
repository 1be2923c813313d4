// `probe`: triggered by an upload to the ingest bucket. Reads the object through ranged GETs (never the
// whole file for a faststart MP4), and writes `<video-id>/metadata.json` to the media bucket — container,
// duration, bit rate, size and every stream's parameters — or, for what is not a playable video,
// `<video-id>/status.json` saying why, and fails the invocation (so it ends in the dead-letter queue).
//
// The video id is the object's file name without its extension (`uploads/7f3a.mp4` → `7f3a`).
//
// Environment: see MediaFunctionEnvironment (AWS credentials and region, S3 endpoint, MEDIA_BUCKET), and
//   PROBE_MAX_WIDTH, PROBE_MAX_HEIGHT, PROBE_MAX_DURATION (seconds)   refusal limits (7680, 4320, 14400)
import Dispatch
import Foundation
import FunctionRuntime
import MediaFunctionSupport
import MediaKit
import NIOCore
import S3Client
import S3Events
import Synchronization
import VideoContract

struct ProbeConfiguration: Sendable {
    var environment: MediaFunctionEnvironment
    var limits: ProbeLimits

    static func load() throws -> ProbeConfiguration {
        let environment = try MediaFunctionEnvironment()
        return ProbeConfiguration(
            environment: environment,
            limits: ProbeLimits(
                maxWidth: Int(try environment.number("PROBE_MAX_WIDTH", 7680)),
                maxHeight: Int(try environment.number("PROBE_MAX_HEIGHT", 4320)),
                maxDuration: try environment.number("PROBE_MAX_DURATION", 14_400)))
    }
}

/// A refusal, reported with the MediaKit code as the Lambda error type (`NoVideoStream`, `UnreadableMedia`...).
struct ProbeRefused: FunctionError {
    var error: MediaError
    var videoID: String
    var errorType: String { error.code.rawValue }
    var errorMessage: String { "video \(videoID): \(error.message)" }
}

struct Summary: Encodable, Sendable {
    var probed: [String]
}

struct ProbeHandler: FunctionHandler {
    let configuration: ProbeConfiguration
    let s3: S3Client

    init() throws {
        configuration = try ProbeConfiguration.load()
        s3 = S3Client(configuration: configuration.environment.s3)
    }

    func handle(_ event: S3Event, context: FunctionContext) async throws -> Summary {
        var probed: [String] = []
        for record in event.records where record.isObjectCreated {
            probed.append(try await probe(bucket: record.s3.bucket.name, key: record.s3.object.key, context: context))
        }
        return Summary(probed: probed)
    }

    func probe(bucket: String, key: String, context: FunctionContext) async throws -> String {
        let videoID = VideoKeys.videoID(forUpload: key)
        let head = try await s3.headObject(bucket: bucket, key: key)
        let sourceInfo = SourceObject(bucket: bucket, key: key, eTag: head.etag, size: Int64(head.size))
        let s3 = self.s3
        let source = ChunkedRangeSource(size: Int64(head.size), chunkSize: 128 * 1024) { range in
            try Blocking.run {
                let output = try await s3.getObject(
                    bucket: bucket, key: key, range: ByteRange(Int(range.lowerBound)..<Int(range.upperBound)))
                return Array(output.body.readableBytesView)
            }
        }
        let info: MediaInfo
        do {
            info = try await MediaProbe.probe(source, limits: configuration.limits)
        } catch {
            if error.code == .sourceUnavailable { throw error }  // transient: let the retry policy handle it
            let status = VideoStatus(
                videoId: videoID, state: "failed", stage: "probe",
                error: .init(code: error.code.rawValue, message: error.message), source: sourceInfo)
            try await s3.putJSON(status, bucket: configuration.environment.mediaBucket, key: VideoKeys.status(videoID))
            context.logger.warning(
                "upload refused",
                metadata: [
                    "cinescale.video": .string(videoID), "cinescale.error": .string(error.description),
                ])
            throw ProbeRefused(error: error, videoID: videoID)
        }
        let metadata = VideoMetadata<MediaInfo>(
            videoId: videoID, source: sourceInfo, media: info,
            probe: .init(requests: source.requests, bytesRead: source.bytesFetched))
        try await s3.putJSON(metadata, bucket: configuration.environment.mediaBucket, key: VideoKeys.metadata(videoID))
        context.logger.info(
            "probed",
            metadata: [
                "cinescale.video": .string(videoID), "cinescale.bytes.read": .stringConvertible(source.bytesFetched),
                "cinescale.size": .stringConvertible(head.size),
            ])
        return videoID
    }
}

/// Runs async work from a thread that may block (MediaKit's FFmpeg thread), waiting for its result.
await FunctionRuntime.run(makeHandler: { try ProbeHandler() })
