import Foundation
import MediaFunctionSupport

/// `POST /uploads` body (every field optional).
struct UploadRequest: Decodable, Sendable {
    var fileName: String?
    var contentType: String?
    var size: Int64?
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

/// Where a video is, from the objects the pipeline wrote; the API keeps no state of its own.
enum VideoState: String, Codable, Sendable {
    case awaitingUpload = "awaiting-upload"
    case probing
    case transcoding
    case ready
    case failed
}

/// `GET /videos/{id}` answer.
struct VideoView: Encodable, Sendable {
    struct Failure: Encodable, Sendable {
        var code: String
        var message: String
        var stage: String?
    }

    struct Rendition: Encodable, Sendable {
        var name: String
        var width: Int
        var height: Int
        var bitRate: Int
        var size: Int64
        var codecs: String?
        /// A signed GET URL of the progressive MP4 (answers Range requests).
        var url: String
        /// The API path that redirects to a fresh signed URL.
        var stream: String
    }

    struct Poster: Encodable, Sendable {
        var url: String
        var time: Double
        var width: Int
        var height: Int
    }

    struct Sprite: Encodable, Sendable {
        var url: String
        var interval: Double
        var columns: Int
        var rows: Int
        var count: Int
        var tileWidth: Int
        var tileHeight: Int
    }

    struct Thumbnails: Encodable, Sendable {
        var posters: [Poster]
        var sprite: Sprite?
    }

    var videoId: String
    var state: VideoState
    var percent: Int?
    var error: Failure?
    var fileName: String?
    var source: SourceObject?
    /// The probe's description of the source (container, duration, streams), as metadata.json has it.
    var metadata: JSONValue?
    var renditions: [Rendition]?
    /// The API path of the HLS master playlist (every URI in it signed).
    var hls: String?
    var thumbnails: Thumbnails?
    /// When the signed URLs in this answer stop working.
    var urlsExpireAt: String?
    /// For `awaiting-upload`: when the upload URL expires.
    var uploadExpiresAt: String?
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
    var metadata: JSONValue?
    var status: VideoStatus?
    /// Whether the uploaded object exists (only asked when nothing later says so).
    var sourceExists: Bool

    var isEmpty: Bool { upload == nil && metadata == nil && status == nil && !sourceExists }

    /// The state the objects add up to: status.json when the transcoder or a refusing probe wrote it, then
    /// metadata.json (probed, waiting for the transcoder), then the uploaded object (waiting for the probe),
    /// then the upload record (nothing uploaded yet).
    var state: (VideoState, Int?) {
        if let status {
            switch status.state {
            case "ready": return (.ready, 100)
            case "failed": return (.failed, status.percent)
            default: return (.transcoding, status.percent ?? 0)
            }
        }
        if metadata != nil { return (.transcoding, 0) }
        if sourceExists { return (.probing, nil) }
        return (.awaitingUpload, nil)
    }
}

/// A JSON error body: `{"error": {"code": "…", "message": "…"}}`.
struct APIError: Error, Sendable {
    var status: Int
    var code: String
    var message: String

    init(_ status: Int, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    static func notFound(_ id: String) -> APIError { APIError(404, "NoSuchVideo", "There is no video '\(id)'.") }
}

enum ISO8601 {
    static func string(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }
}
