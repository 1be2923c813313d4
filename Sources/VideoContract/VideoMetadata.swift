import Foundation

/// `<video-id>/metadata.json`: what the probe found in an upload it could read as a video (container,
/// duration, bit rate, size and every stream's parameters), written to the media bucket; its creation is what
/// triggers the transcoder.
///
/// `Media` is the probe's description of the source: MediaKit's `MediaInfo` for the functions, which link
/// FFmpeg; a reader that only passes it on (the product API, which shows it as the video's `metadata`) takes
/// it as any JSON instead, so this contract depends on no media library.
public struct VideoMetadata<Media: Codable & Sendable>: Codable, Sendable {
    /// How the probe read the upload: ranged GETs and the bytes they fetched.
    public struct Reads: Codable, Sendable, Hashable {
        public var requests: Int
        public var bytesRead: Int64

        public init(requests: Int, bytesRead: Int64) {
            self.requests = requests
            self.bytesRead = bytesRead
        }
    }

    public var videoId: String
    public var source: SourceObject
    /// Always written by the probe; optional for its readers, which refuse a video without it in their own words
    /// (the transcoder: `UnreadableMedia`) rather than with a decoding error.
    public var media: Media?
    /// Always written by the probe; no reader needs it.
    public var probe: Reads?

    public init(videoId: String, source: SourceObject, media: Media?, probe: Reads? = nil) {
        self.videoId = videoId
        self.source = source
        self.media = media
        self.probe = probe
    }
}
