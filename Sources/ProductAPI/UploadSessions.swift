import Foundation
import VideoContract

/// How a file of `size` bytes is cut into parts: the smallest whole number of MiB, at least the configured
/// minimum (8 MiB by default), that fits the file in S3's 10 000 parts. S3's limits: parts of 5 MiB–5 GiB (the
/// last may be smaller), objects up to 5 TiB. (8 MiB parts, three in flight, upload as fast as one PUT of the
/// whole file on loopback — 377 against 378 MB/s, scripts/bench-upload, release — and 16 MiB parts measured the
/// same: smaller parts cost nothing and lose less on a failed part.)
struct PartPlan: Sendable, Equatable {
    static let maximumParts = 10_000
    static let minimumPartSize: Int64 = 5 << 20
    static let maximumPartSize: Int64 = 5 << 30
    static let maximumObjectSize: Int64 = 5 << 40
    static let mebibyte: Int64 = 1 << 20

    var size: Int64
    var partSize: Int64
    var partCount: Int

    init(size: Int64, minimumPartSize: Int64) throws {
        guard size > 0 else { throw APIError(400, "InvalidRequest", "size must be a positive number of bytes.") }
        guard size <= Self.maximumObjectSize else {
            throw APIError(
                413, "UploadTooLarge", "The file is \(size) bytes; an S3 object is at most \(Self.maximumObjectSize).")
        }
        let least = max(
            minimumPartSize, Self.minimumPartSize, (size + Int64(Self.maximumParts) - 1) / Int64(Self.maximumParts))
        let part = (least + Self.mebibyte - 1) / Self.mebibyte * Self.mebibyte
        // 5 TiB / 10 000 is 550 MB, far under 5 GiB: only a configured minimum could exceed it.
        guard part <= Self.maximumPartSize else {
            throw PartPlan.PartSizeOverLimit(partSize: part)
        }
        self.size = size
        self.partSize = part
        self.partCount = Int((size + part - 1) / part)
    }

    /// A configured minimum part size over S3's largest: the server's fault, never the client's (a 500).
    struct PartSizeOverLimit: Error, CustomStringConvertible {
        var partSize: Int64
        var description: String { "the configured part size (\(partSize) bytes) is over S3's 5 GiB" }
    }

    /// The byte length of part `number` (1-based): `partSize`, the last one the remainder.
    func length(ofPart number: Int) -> Int64 {
        number < partCount ? partSize : size - partSize * Int64(partCount - 1)
    }
}

/// An upload session's id as clients see it: `<video id>.<S3 upload id in base64url>`. It names the video
/// (so the tenant: a session of another tenant is unknown, as its video is) and the store's multipart
/// upload, which must also be the one the video's upload record names — a forged pairing is refused.
struct UploadSessionID: Sendable, Equatable {
    var videoID: String
    var uploadID: String

    var string: String {
        videoID + "."
            + Data(uploadID.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    init(videoID: String, uploadID: String) {
        self.videoID = videoID
        self.uploadID = uploadID
    }

    /// nil for anything this API did not make (base64url has no '.', so the last '.' separates).
    init?(_ text: String) {
        guard text.utf8.count <= 1024, let dot = text.lastIndex(of: ".") else { return nil }
        let video = String(text[..<dot])
        var encoded = text[text.index(after: dot)...]
            .replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard !encoded.isEmpty, !encoded.contains("="), (try? ProductAPI.validate(video)) != nil else { return nil }
        encoded += String(repeating: "=", count: (4 - encoded.count % 4) % 4)
        guard let data = Data(base64Encoded: encoded), let upload = String(data: data, encoding: .utf8), !upload.isEmpty
        else { return nil }
        videoID = video
        uploadID = upload
    }
}

/// What the upload record keeps of a resumable upload.
struct MultipartRecord: Codable, Sendable {
    /// The store's multipart upload id.
    var uploadId: String
    var partSize: Int64
    var partCount: Int
}

/// A presigned `UploadPart` URL.
struct PartURL: Encodable, Sendable {
    var partNumber: Int
    var url: String
    /// The part's length in bytes: the URL signs it as `Content-Length`.
    var size: Int64
    /// Headers the PUT must carry with exactly these values.
    var headers: [String: String]
}

/// `POST /uploads` answer for a resumable upload.
struct UploadSession: Encodable, Sendable {
    var videoId: String
    var sessionId: String
    var resumable = true
    var size: Int64
    var partSize: Int64
    var partCount: Int
    /// When the session (its stored parts) is aborted unless completed.
    var expiresAt: String
    /// Presigned URLs for the first parts; `POST /uploads/{sessionId}/parts` gives the rest.
    var parts: [PartURL]
    var urlsExpireAt: String
    var source: SourceObject
    /// Where to follow the video.
    var status: String
    /// Where the session is: `GET` (parts stored), `POST …/parts`, `POST …/complete`, `DELETE`.
    var session: String
}

/// `POST /uploads/{id}/parts` answer.
struct PartURLBatch: Encodable, Sendable {
    var parts: [PartURL]
    var urlsExpireAt: String
}

/// `GET /uploads/{id}` answer.
struct UploadSessionView: Encodable, Sendable {
    struct StoredPart: Encodable, Sendable {
        var partNumber: Int
        var size: Int64
        var etag: String
        var lastModified: String?
    }

    var videoId: String
    var sessionId: String
    /// `open`, or `completed` once the object is in the bucket.
    var state: String
    var size: Int64
    var partSize: Int64
    var partCount: Int
    var expiresAt: String
    /// Parts stored with the size the plan gives them, by part number.
    var parts: [StoredPart]
    var storedBytes: Int64
    /// Part numbers still to send (a stored part of the wrong size counts as missing).
    var missingParts: [Int]
}

/// `POST /uploads/{id}/complete` answer.
struct CompletedUpload: Encodable, Sendable {
    var videoId: String
    var sessionId: String
    var state = "completed"
    var size: Int64
    var source: SourceObject
    var status: String
}
