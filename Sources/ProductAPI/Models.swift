import APIKeys
import Foundation
import VideoContract
import WireFormat

/// `POST /uploads` body (every field optional).
struct UploadRequest: Decodable, Sendable {
    var fileName: String?
    var contentType: String?
    var size: Int64?
    /// `public` or `signed` (the configured default when absent).
    var playbackPolicy: String?
    /// Origins (`https://app.example`) whose pages may stream the video; empty or absent: any.
    var allowedOrigins: [String]?
    /// true: a resumable (multipart) upload session; false: one presigned PUT; absent: resumable when `size`
    /// is over the configured threshold.
    var resumable: Bool?
}

/// `<id>/upload.json` in the media bucket: written when an upload URL is handed out, so the video is known
/// (`awaiting-upload`) before its bytes arrive.
struct UploadRecord: Codable, Sendable {
    var videoId: String
    var source: SourceObject
    var fileName: String?
    var contentType: String
    var size: Int64?
    var createdAt: String
    var expiresAt: String
    /// nil in records written before playback policies: public.
    var playbackPolicy: PlaybackPolicy?
    var allowedOrigins: [String]?
    /// A resumable upload's multipart upload and plan (nil for one PUT).
    var multipart: MultipartRecord? = nil
}

/// `POST /uploads` answer.
struct UploadTicket: Encodable, Sendable {
    var videoId: String
    var uploadUrl: String
    var method: String
    /// Headers the PUT must carry with exactly these values (they are signed).
    var headers: [String: String]
    var expiresAt: String
    var source: SourceObject
    /// Where to follow the video: `GET` this path.
    var status: String
}

/// One line of `GET /videos`.
struct VideoSummary: Encodable, Sendable {
    var videoId: String
    var state: VideoState
    var percent: Int?
    var fileName: String?
}

struct VideoList: Encodable, Sendable {
    var videos: [VideoSummary]
    /// Pass as `cursor` for the next page; absent on the last one.
    var nextCursor: String?
}

/// The objects that say where a video is.
struct VideoObjects: Sendable {
    var upload: UploadRecord?
    var metadata: VideoMetadata<JSONValue>?
    var status: VideoStatus?
    /// Whether the uploaded object exists (only asked when nothing later says so).
    var sourceExists: Bool
    /// A chunked transcode under way: its plan and which chunks are done.
    var chunks: ChunkProgress?

    /// The master playlist can be played: ready, or the first chunk of a chunked transcode is up.
    var isPlayable: Bool { status?.state == "ready" || (status?.state == "transcoding" && chunks?.isPlayable == true) }

    var isEmpty: Bool { upload == nil && metadata == nil && status == nil && !sourceExists }

    /// The state the objects add up to: status.json when the transcoder or a refusing probe wrote it, then
    /// metadata.json (probed, waiting for the transcoder), then the uploaded object (waiting for the probe),
    /// then the upload record (nothing uploaded yet).
    var state: (VideoState, Int?) {
        if let status {
            switch status.state {
            case "ready": return (.ready, 100)
            case "failed": return (.failed, status.percent)
            default: return (.transcoding, chunks.map { min(99, $0.percent) } ?? status.percent ?? 0)
            }
        }
        if metadata != nil { return (.transcoding, 0) }
        if sourceExists { return (.probing, nil) }
        return (.awaitingUpload, nil)
    }
}

/// A chunked transcode's progress, from its plan and the chunk records present.
struct ChunkProgress: Sendable {
    var plan: TranscodePlan
    var done: Set<Int>

    var isPlayable: Bool { done.contains(0) }

    var percent: Int {
        guard plan.duration > 0 else { return 0 }
        let seconds = plan.chunks.filter { done.contains($0.index) }.reduce(0.0) { total, chunk in
            total + ((chunk.end ?? plan.duration) - chunk.start)
        }
        return Int((seconds / plan.duration * 100).rounded(.down))
    }

    /// The segments whose chunk has written them.
    var writtenSegments: Set<Int> {
        var segments = Set<Int>()
        for chunk in plan.chunks where done.contains(chunk.index) {
            segments.formUnion(chunk.firstSegment..<(chunk.firstSegment + chunk.segments))
        }
        return segments
    }
}

/// The API's timestamps: ISO 8601 in UTC, whole seconds (`2026-01-02T03:04:05Z`).
enum ISO8601 {
    static func string(_ date: Date) -> String { ISO8601Date.format(date) }
}

/// A key as the API shows it (never its token, which only `POST /keys` returns, once).
struct KeyView: Encodable, Sendable {
    var id: String
    var tenant: String
    var name: String
    var scopes: [String]
    var createdAt: String
    var revokedAt: String?

    init(_ key: APIKey) {
        id = key.id
        tenant = key.tenant
        name = key.name
        scopes = key.scopes.map(\.rawValue)
        createdAt = ISO8601.string(key.createdAt)
        revokedAt = key.revokedAt.map(ISO8601.string)
    }
}

struct CreatedKey: Encodable, Sendable {
    var key: KeyView
    /// The bearer token: shown here once, stored nowhere.
    var token: String
}

struct KeyList: Encodable, Sendable {
    var keys: [KeyView]
}

struct KeyRequest: Decodable, Sendable {
    var name: String?
    var scopes: [String]
}
