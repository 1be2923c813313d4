import WireFormat

/// RFC 6381 codec strings for `CODECS=` attributes.
public enum Codecs {
    /// `avc1.PPCCLL` from H.264 decoder configuration: either an `avcC` record (first byte 1) or Annex B
    /// NAL units (what libx264 puts in extradata), in which case the first SPS is read.
    public static func avc1(extradata bytes: [UInt8]) -> String? {
        if bytes.count >= 4, bytes[0] == 1 { return format(bytes[1], bytes[2], bytes[3]) }
        var i = 0
        while i + 3 < bytes.count {
            // A start code 00 00 01 (the 4-byte form ends with the same three bytes).
            if bytes[i] == 0, bytes[i + 1] == 0, bytes[i + 2] == 1 {
                let header = i + 3
                if header + 3 < bytes.count, bytes[header] & 0x1F == 7 {
                    return format(bytes[header + 1], bytes[header + 2], bytes[header + 3])
                }
                i = header
            } else {
                i += 1
            }
        }
        return nil
    }

    /// `mp4a.40.N` for an AAC stream; `profile` is FFmpeg's `FF_PROFILE_AAC_*` (the MPEG-4 audio object type
    /// minus one), LC when unknown.
    public static func mp4a(ffmpegProfile profile: Int32) -> String {
        profile >= 0 ? "mp4a.40.\(profile + 1)" : "mp4a.40.2"
    }

    private static func format(_ profile: UInt8, _ constraints: UInt8, _ level: UInt8) -> String {
        "avc1." + Hex.encode([profile, constraints, level])
    }
}
