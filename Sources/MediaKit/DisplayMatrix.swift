import CFFmpeg
import Foundation

/// A video stream's display matrix (its rotation for players: phones store portrait video landscape with a
/// 90° matrix), carried from a source stream to an output stream, where the MP4 muxers write it into the track
/// header, so the renditions play upright as the source does.
enum DisplayMatrix {
    static func copy(from source: UnsafeMutablePointer<AVStream>, to destination: UnsafeMutablePointer<AVStream>) {
        var size = 0
        guard let matrix = av_stream_get_side_data(source, AV_PKT_DATA_DISPLAYMATRIX, &size), size >= 36,
            let copy = av_stream_new_side_data(destination, AV_PKT_DATA_DISPLAYMATRIX, size)
        else { return }
        copy.update(from: matrix, count: size)
    }

    /// The stream's matrix (nine 32-bit values, the layout of an MP4 track header's), nil when it has none or
    /// it is the identity.
    static func read(_ stream: UnsafeMutablePointer<AVStream>) -> [Int32]? {
        var size = 0
        guard let matrix = av_stream_get_side_data(stream, AV_PKT_DATA_DISPLAYMATRIX, &size), size >= 36 else {
            return nil
        }
        let values = (0..<9).map { UnsafeRawPointer(matrix).load(fromByteOffset: 4 * $0, as: Int32.self) }
        return values == [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x4000_0000] ? nil : values
    }

    struct NoTrackHeader: Error, CustomStringConvertible {
        var path: String
        var description: String { "\(path) has no track header" }
    }

    /// Writes `matrix` into the first track header (`tkhd`, the video's) of an MP4 file.
    static func write(_ matrix: [Int32], intoTrackHeaderOf path: String) throws {
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        let data = try handle.readToEnd() ?? Data()
        guard matrix.count == 9, let box = data.range(of: Data("tkhd".utf8))?.lowerBound, box + 5 < data.count else {
            throw NoTrackHeader(path: path)
        }
        let version = data[box + 4]
        // version and flags, creation and modification times, track id, reserved, duration, reserved (8),
        // layer, alternate group, volume, reserved: then the matrix.
        let offset = box + 4 + 4 + (version == 0 ? 8 : 16) + 4 + 4 + (version == 0 ? 4 : 8) + 8 + 8
        guard offset + 36 <= data.count else { throw NoTrackHeader(path: path) }
        var bytes = Data()
        for value in matrix { withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) } }
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: bytes)
    }
}
