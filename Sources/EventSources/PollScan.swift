import Foundation
import PollState
import S3Client
import S3Events
import S3Wire

/// The pure part of a poll source: which listed objects are new or changed against the seen state, and the
/// S3 event records they become.
enum PollScan {
    /// What one scan found.
    struct Diff: Sendable, Equatable {
        /// New keys, and keys whose version (ETag) differs from the one seen; in listing order.
        var changed: [ObjectSummary] = []
        /// Seen keys the listing no longer has, with the version last seen; sorted by key.
        var removed: [(key: String, object: SeenObject)] = []

        static func == (a: Diff, b: Diff) -> Bool {
            a.changed == b.changed && a.removed.map(\.key) == b.removed.map(\.key)
                && a.removed.map(\.object) == b.removed.map(\.object)
        }
    }

    /// Compares a full listing with the seen state by key and version. A key listed twice (a store listing
    /// while it changes) counts once, with its last entry.
    static func diff(_ listing: [ObjectSummary], seen: [String: SeenObject]) -> Diff {
        var diff = Diff()
        var listed: [String: ObjectSummary] = [:]
        listed.reserveCapacity(listing.count)
        var order: [String] = []
        order.reserveCapacity(listing.count)
        for object in listing where listed.updateValue(object, forKey: object.key) == nil { order.append(object.key) }
        for key in order {
            let object = listed[key]!
            if seen[key]?.etag != version(of: object) { diff.changed.append(object) }
        }
        for (key, object) in seen where listed[key] == nil { diff.removed.append((key, object)) }
        diff.removed.sort { $0.key < $1.key }
        return diff
    }

    /// The version an object is compared by: its ETag; for a store that lists none, its size and LastModified.
    static func version(of object: ObjectSummary) -> String {
        if let etag = object.etag, !etag.isEmpty { return etag }
        return "size:\(object.size)/\(object.lastModified.map { S3Date.iso8601($0) } ?? "")"
    }

    /// A sequencer that is the same for the same object version on every scan (so that a record emitted again
    /// after a crash has the dedupe key of the first): 16 upper-case hex digits of LastModified in milliseconds,
    /// then 16 of the FNV-1a hash of the version. Like S3's, later writes of a key sort after earlier ones
    /// whenever their LastModified differ.
    static func sequencer(of object: ObjectSummary) -> String {
        let millis = object.lastModified.map { UInt64(max(0, ($0.timeIntervalSince1970 * 1000).rounded(.down))) } ?? 0
        return hex16(millis) + hex16(fnv1a(version(of: object)))
    }

    static func seen(_ object: ObjectSummary) -> SeenObject {
        SeenObject(etag: version(of: object), sequencer: sequencer(of: object))
    }

    /// The `ObjectCreated:Put` record a notification would carry for `object` (S3 event 2.1; `eventSource`
    /// `cinescale:poll`; `eventTime` its LastModified).
    static func createdRecord(_ object: ObjectSummary, bucket: String, region: String, now: Date) -> String {
        let q = JSONText.quote
        var fields = #"{"key":"# + q(eventKey(object.key)) + #","size":\#(object.size)"#
        if let etag = object.etag, !etag.isEmpty { fields += #","eTag":"# + q(etag) }
        fields += #","sequencer":"# + q(sequencer(of: object)) + "}"
        return record(
            eventName: "ObjectCreated:Put", time: object.lastModified ?? now, bucket: bucket, region: region,
            object: fields)
    }

    /// The `ObjectRemoved:Delete` record for a seen key the listing no longer has (`eventTime`: when the scan
    /// noticed; the sequencer of the version removed, so a re-emission has the same dedupe key).
    static func removedRecord(key: String, seen: SeenObject, bucket: String, region: String, now: Date) -> String {
        let q = JSONText.quote
        let fields = #"{"key":"# + q(eventKey(key)) + #","sequencer":"# + q(seen.sequencer) + "}"
        return record(eventName: "ObjectRemoved:Delete", time: now, bucket: bucket, region: region, object: fields)
    }

    private static func record(eventName: String, time: Date, bucket: String, region: String, object: String)
        -> String
    {
        let q = JSONText.quote
        var json = #"{"eventVersion":"2.1","eventSource":"cinescale:poll","awsRegion":"# + q(region)
        json += #","eventTime":"# + q(S3Date.iso8601(time)) + #","eventName":"# + q(eventName)
        json += #","userIdentity":{"principalId":""},"requestParameters":{"sourceIPAddress":""},"responseElements":{}"#
        json += #","s3":{"s3SchemaVersion":"1.0","configurationId":"cinescale-poll","bucket":{"name":"# + q(bucket)
        json += #","ownerIdentity":{"principalId":""},"arn":"# + q("arn:aws:s3:::\(bucket)") + "}"
        json += #","object":"# + object + "}}"
        return json
    }

    /// `{"Records":[…]}` of `records`.
    static func body(_ records: [String]) -> String {
        #"{"Records":["# + records.joined(separator: ",") + "]}"
    }

    /// The key as S3 writes it in event records: URL-encoded with `+` for a space and `/` kept
    /// (`uploads/my clip.mp4` → `uploads/my+clip.mp4`); what `S3Event` decodes.
    static func eventKey(_ key: String) -> String { S3Event.formEncodeKey(key) }

    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        return hash
    }

    private static func hex16(_ value: UInt64) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 16 - digits.count)) + digits
    }
}
