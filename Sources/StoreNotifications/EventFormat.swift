import Foundation
import ObjectStore
import S3Wire
import WireFormat

/// MinIO's webhook body for one event: `{"EventName","Key","Records":[<S3 event record, version 2.0>]}`,
/// the object key escaped like Go's `url.QueryEscape`.
enum EventFormat {
    static func eventName(_ kind: ObjectStoreEvent.Kind) -> String { "s3:" + kind.rawValue }

    static func body(
        _ event: ObjectStoreEvent, ruleID: String, region: String, origin: String, request: EventRequestInfo?
    ) -> Data {
        let q = JSONString.quote
        let name = q(eventName(event.kind))
        let principal = q(request?.principalID ?? "")
        let requestID = q(request?.requestID ?? "")
        let origin = origin.isEmpty ? request.map { "http://\($0.host)" } ?? "" : origin
        var object = #"{"key":"# + q(queryEscape(event.key))
        if event.kind != .delete {
            object += #","size":\#(event.size)"#
            if let etag = event.etag { object += #","eTag":"# + q(etag) }
            if let metadata = event.metadata {
                let contentType = q(metadata.contentType ?? "application/octet-stream")
                object += #","contentType":"# + contentType + #","userMetadata":{"content-type":"# + contentType
                for (k, v) in metadata.userMetadata.sorted(by: { $0.key < $1.key }) {
                    object += "," + q("X-Amz-Meta-" + k) + ":" + q(v)
                }
                object += "}"
            }
        }
        object += #","sequencer":"# + q(event.sequencer) + "}"
        var json = #"{"EventName":"# + name + #","Key":"# + q("\(event.bucket)/\(event.key)")
        json += #","Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"# + q(region)
        json += #","eventTime":"# + q(S3Date.iso8601(event.time)) + #","eventName":"# + name
        json += #","userIdentity":{"principalId":"# + principal + "}"
        json += #","requestParameters":{"principalId":"# + principal + #","region":"# + q(region)
        json += #","sourceIPAddress":"# + q(request?.sourceIP ?? "") + "}"
        json += #","responseElements":{"x-amz-id-2":"# + requestID + #","x-amz-request-id":"# + requestID
        json += #","x-minio-deployment-id":"","x-minio-origin-endpoint":"# + q(origin) + "}"
        json += #","s3":{"s3SchemaVersion":"1.0","configurationId":"# + q(ruleID)
        json += #","bucket":{"name":"# + q(event.bucket) + #","ownerIdentity":{"principalId":"# + principal + "}"
        json += #","arn":"# + q("arn:aws:s3:::\(event.bucket)") + "}"
        json += #","object":"# + object + "}"
        json += #","source":{"host":"# + q(request?.host ?? "") + #","port":"","userAgent":"#
        json += q(request?.userAgent ?? "") + "}}]}"
        return Data(json.utf8)
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
