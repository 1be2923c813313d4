import Foundation
import NIOCore
import S3Client

extension S3Client {
    /// Creates `key` with `value` as JSON only if it does not exist; false when it already did.
    @discardableResult
    public func createJSON(_ value: some Encodable, bucket: String, key: String) async throws -> Bool {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            _ = try await putObject(
                bucket: bucket, key: key, body: ByteBuffer(bytes: try encoder.encode(value)),
                contentType: "application/json",
                ifNoneMatch: "*")
            return true
        } catch let error as S3Error where error.isPreconditionFailed {
            return false
        }
    }

    /// The JSON object at `key`, or nil when there is none.
    public func optionalJSON<T: Decodable>(_ type: T.Type, bucket: String, key: String) async throws -> T? {
        do {
            return try await getJSON(T.self, bucket: bucket, key: key)
        } catch let error as S3Error where error.isNoSuchKey {
            return nil
        }
    }
}
