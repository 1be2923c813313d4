import Foundation
import S3Wire

/// On-disk format of object and part files:
///
///     [data bytes][trailer: JSON][footer: UInt64 LE trailer length][8-byte magic "CSOBJv01"]
///
/// Data and metadata live in one file, so a single `rename` replaces both, and a reader that
/// opened the file reads a consistent pair from its descriptor.
struct FileTrailer: Decodable, Sendable {
    enum Kind: String, Decodable, Sendable {
        case object
        case part
    }

    var version: Int = 1
    var kind: Kind
    /// Object key (objects) — the authority for the key; the file name is only its hash.
    var key: String?
    var size: Int
    var etag: String
    var lastModifiedNs: Int64
    var metadata: ObjectMetadata?
    var partCount: Int?
    /// Each part's size, for objects made by CompleteMultipartUpload.
    var partSizes: [Int]?
    var partNumber: Int?
    var uploadId: String?

    static let magic: [UInt8] = Array("CSOBJv01".utf8)
    static let footerSize = 16
    static let maximumTrailerSize = 16 * 1024 * 1024

    var lastModified: Date { Date(nanoseconds: lastModifiedNs) }

    /// The trailer and footer bytes to append after the data. The JSON is written by hand (JSONEncoder was
    /// 3.5 % of the store's CPU on 1 KB uploads); `read` decodes it with JSONDecoder, and a test holds the
    /// two to the same fields.
    func encoded() -> [UInt8] {
        let q = JSONText.quote
        var json = #"{"version":\#(version),"kind":"# + q(kind.rawValue)
        if let key { json += #","key":"# + q(key) }
        json += #","size":\#(size),"etag":"# + q(etag) + #","lastModifiedNs":\#(lastModifiedNs)"#
        if let metadata { json += #","metadata":"# + metadata.json() }
        if let partCount { json += #","partCount":\#(partCount)"# }
        if let partSizes { json += #","partSizes":["# + partSizes.map(String.init).joined(separator: ",") + "]" }
        if let partNumber { json += #","partNumber":\#(partNumber)"# }
        if let uploadId { json += #","uploadId":"# + q(uploadId) }
        json += "}"
        var bytes = Array(json.utf8)
        var length = UInt64(bytes.count).littleEndian
        withUnsafeBytes(of: &length) { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: FileTrailer.magic)
        return bytes
    }

    struct Corrupt: Error, CustomStringConvertible {
        var path: String
        var reason: String
        var description: String { "corrupt store file \(path): \(reason)" }
    }

    /// Reads the trailer of an open file. Returns it with the data length (bytes before the trailer).
    static func read(fd: CInt, path: String) throws -> (trailer: FileTrailer, dataLength: Int) {
        let fileSize = try Posix.fileSize(fd, path: path)
        guard fileSize >= footerSize else { throw Corrupt(path: path, reason: "too short") }
        var footer = [UInt8](repeating: 0, count: footerSize)
        let n = try footer.withUnsafeMutableBytes {
            try Posix.preadFull(fd, $0, offset: fileSize - footerSize, path: path)
        }
        guard n == footerSize, Array(footer[8..<16]) == magic else {
            throw Corrupt(path: path, reason: "bad footer")
        }
        var length: UInt64 = 0
        for i in (0..<8).reversed() { length = length << 8 | UInt64(footer[i]) }
        guard length <= UInt64(maximumTrailerSize), Int(length) <= fileSize - footerSize else {
            throw Corrupt(path: path, reason: "bad trailer length \(length)")
        }
        let trailerLength = Int(length)
        let dataLength = fileSize - footerSize - trailerLength
        var json = Data(count: trailerLength)
        let m = try json.withUnsafeMutableBytes {
            try Posix.preadFull(fd, $0, offset: dataLength, path: path)
        }
        guard m == trailerLength else { throw Corrupt(path: path, reason: "short trailer") }
        let trailer: FileTrailer
        do {
            trailer = try JSONDecoder().decode(FileTrailer.self, from: json)
        } catch {
            throw Corrupt(path: path, reason: "undecodable trailer: \(error)")
        }
        guard trailer.size == dataLength else {
            throw Corrupt(path: path, reason: "size \(trailer.size) != data length \(dataLength)")
        }
        return (trailer, dataLength)
    }
}

extension ObjectMetadata {
    /// This metadata as JSON, in the shape its `Decodable` conformance reads.
    func json() -> String {
        let q = JSONText.quote
        func object(_ map: [String: String]) -> String {
            "{" + map.sorted { $0.key < $1.key }.map { q($0.key) + ":" + q($0.value) }.joined(separator: ",") + "}"
        }
        var json = #"{"userMetadata":"# + object(userMetadata) + #","checksums":"# + object(checksums)
        let optional: [(String, String?)] = [
            ("contentType", contentType), ("contentEncoding", contentEncoding),
            ("contentDisposition", contentDisposition),
            ("cacheControl", cacheControl), ("contentLanguage", contentLanguage), ("expires", expires),
        ]
        for case (let name, let value?) in optional { json += "," + q(name) + ":" + q(value) }
        if let acl { json += #","acl":"# + q(acl.rawValue) }
        return json + "}"
    }
}

extension Date {
    init(nanoseconds: Int64) {
        self.init(timeIntervalSince1970: Double(nanoseconds) / 1_000_000_000)
    }
}
