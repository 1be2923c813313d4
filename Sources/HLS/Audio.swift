/// An alternate audio rendition of a master playlist (`#EXT-X-MEDIA:TYPE=AUDIO`): one audio track of the
/// source, in segments of its own, which every variant names in its `AUDIO` group.
public struct AudioRendition: Sendable, Hashable, Codable {
    /// `NAME`: what a player shows in its menu.
    public var name: String
    /// `LANGUAGE` as the source tagged it; nil when unknown (or `und`).
    public var language: String?
    /// The audio media playlist, relative to the master (`audio-1/index.m3u8`).
    public var uri: String
    /// `DEFAULT=YES`: the track a player starts with (exactly one of the group).
    public var isDefault: Bool
    /// Channels of the rendition (`CHANNELS`), e.g. 2.
    public var channels: Int?

    public init(name: String, language: String?, uri: String, isDefault: Bool, channels: Int?) {
        self.name = name
        self.language = language
        self.uri = uri
        self.isDefault = isDefault
        self.channels = channels
    }

    /// The `#EXT-X-MEDIA` line (group `audio`).
    public var mediaTag: String {
        var attributes = [
            "TYPE=AUDIO", "GROUP-ID=\"\(Playlist.audioGroup)\"", "NAME=\"\(SubtitleRendition.quoted(name))\"",
        ]
        if let language, !language.isEmpty { attributes.append("LANGUAGE=\"\(SubtitleRendition.quoted(language))\"") }
        attributes += ["DEFAULT=\(isDefault ? "YES" : "NO")", "AUTOSELECT=YES"]
        if let channels { attributes.append("CHANNELS=\"\(channels)\"") }
        attributes.append("URI=\"\(uri)\"")
        return "#EXT-X-MEDIA:" + attributes.joined(separator: ",")
    }
}

extension Playlist {
    /// The `GROUP-ID` every audio rendition is in and every variant's `AUDIO` names.
    public static let audioGroup = "audio"
}
