import Foundation
import NIOCore

extension S3Client {
    /// Writes `value` as pretty, key-sorted JSON.
    public func putJSON(_ value: some Encodable, bucket: String, key: String) async throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        _ = try await putObject(
            bucket: bucket, key: key, body: ByteBuffer(bytes: try encoder.encode(value)),
            contentType: "application/json")
    }

    /// Reads a JSON object.
    public func getJSON<T: Decodable>(_ type: T.Type, bucket: String, key: String) async throws -> T {
        let output = try await getObject(bucket: bucket, key: key)
        return try JSONDecoder().decode(T.self, from: Data(output.body.readableBytesView))
    }
}
