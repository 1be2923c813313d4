/// Why a medium could not be read or was refused, with a code a caller can act on.
public struct MediaError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable, Codable {
        /// The bytes could not be read (I/O, HTTP).
        case sourceUnavailable = "SourceUnavailable"
        /// FFmpeg could not recognise or parse the container (corrupt, truncated, not media).
        case unreadableMedia = "UnreadableMedia"
        /// No video stream (audio only, an image sequence FFmpeg does not treat as video...).
        case noVideoStream = "NoVideoStream"
        /// Zero or unknown duration.
        case zeroDuration = "ZeroDuration"
        /// Wider or taller than the configured limit.
        case dimensionsTooLarge = "DimensionsTooLarge"
        /// Longer than the configured limit.
        case durationTooLong = "DurationTooLong"
        /// The container opened but its content is damaged: truncated, or garbage after a valid header.
        case corruptMedia = "CorruptMedia"
        /// Decoding, scaling, encoding or writing failed.
        case transcodeFailed = "TranscodeFailed"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
