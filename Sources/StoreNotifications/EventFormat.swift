import Foundation
import ObjectStore
import S3Wire

/// MinIO's webhook body for one event: `{"EventName","Key","Records":[<S3 event record, version 2.0>]}`,
/// the object key escaped like Go's `url.QueryEscape`.
enum EventFormat {
    static func eventName(_ kind: ObjectStoreEvent.Kind) -> String { "s3:" + kind.rawValue }

    static func body(
        _ event: ObjectStoreEvent, ruleID: String, region: String, origin: String, request: EventRequestInfo?
    ) -> Data {
        let name = eventName(event.kind)
        let principal = request?.principalID ?? ""
        let origin = origin.isEmpty ? request.map { "http://\($0.host)" } ?? "" : origin
        var object: [String: Any] = [
            "key": queryEscape(event.key),
            "sequencer": event.sequencer,
        ]
        if event.kind != .delete {
            object["size"] = event.size
            if let etag = event.etag { object["eTag"] = etag }
            if let metadata = event.metadata {
                let contentType = metadata.contentType ?? "application/octet-stream"
                object["contentType"] = contentType
                var user: [String: String] = ["content-type": contentType]
                for (k, v) in metadata.userMetadata { user["X-Amz-Meta-" + k] = v }
                object["userMetadata"] = user
            }
        }
        let record: [String: Any] = [
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": region,
            "eventTime": S3Date.iso8601(event.time),
            "eventName": name,
            "userIdentity": ["principalId": principal],
            "requestParameters": [
                "principalId": principal, "region": region, "sourceIPAddress": request?.sourceIP ?? "",
            ],
            "responseElements": [
                "x-amz-id-2": request?.requestID ?? "", "x-amz-request-id": request?.requestID ?? "",
                "x-minio-deployment-id": "", "x-minio-origin-endpoint": origin,
            ],
            "s3": [
                "s3SchemaVersion": "1.0",
                "configurationId": ruleID,
                "bucket": [
                    "name": event.bucket, "ownerIdentity": ["principalId": principal],
                    "arn": "arn:aws:s3:::\(event.bucket)",
                ],
                "object": object,
            ],
            "source": ["host": request?.host ?? "", "port": "", "userAgent": request?.userAgent ?? ""],
        ]
        let top: [String: Any] = ["EventName": name, "Key": "\(event.bucket)/\(event.key)", "Records": [record]]
        return (try? JSONSerialization.data(withJSONObject: top, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
    }

    /// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, every other byte `%XX` (upper case).
    static func queryEscape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: " "):
                out.append("+")
            default:
                out.append("%")
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                out.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0xF)]))
            }
        }
        return out
    }
}
