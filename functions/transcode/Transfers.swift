// The chunked steps' plumbing: a failure's status.json, playlists written as text, files moved between the
// scratch directory and the media bucket eight at a time, and elapsed seconds for the logs.
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
