import Foundation
import NIOCore
import S3Wire

extension S3Client {
    /// `PutBucketNotificationConfiguration` with a `NotificationConfiguration` XML document (queue, topic
    /// or function configurations, as the server supports them).
    public func putBucketNotificationConfiguration(bucket: String, xml: String) async throws {
        _ = try await send(
            S3Operation(
                "PutBucketNotificationConfiguration", "PUT", bucket: bucket, query: [(name: "notification", value: "")],
                headers: [("content-type", "application/xml")], body: ByteBuffer(string: xml)))
    }

    /// `GetBucketNotificationConfiguration`: the XML document as the server returns it.
    public func getBucketNotificationConfiguration(bucket: String) async throws -> String {
        let response = try await send(
            S3Operation(
                "GetBucketNotificationConfiguration", "GET", bucket: bucket, query: [(name: "notification", value: "")])
        )
        return String(buffer: response.body)
    }
}
