import Foundation
import S3Wire

/// An S3 event notification as AWS S3 (event version 2.1), MinIO (2.0, webhook body) and Ceph RGW (2.2)
/// deliver it, plus AWS's `s3:TestEvent` (which has no records).
///
/// Differences absorbed here:
/// - `eventName`: AWS and Ceph send `ObjectCreated:Put`, MinIO `s3:ObjectCreated:Put`; ``Record/eventName``
///   drops the prefix, ``Record/rawEventName`` keeps what was sent.
/// - the object key: AWS form-encodes it (space as `+`, `+` as `%2B`, `/` kept), MinIO escapes it like Go's
///   `url.QueryEscape` (`/` as `%2F`), Ceph RGW sends it unencoded (rgw_notify.cc copies the object name as
///   is). ``Object/key`` is the decoded key; ``Object/rawKey`` what was sent.
/// - metadata: Ceph sends `metadata` and `tags` as lists of `{key, val}`, MinIO `userMetadata` as an object;
///   both land in ``Object/metadata`` (and Ceph's tags in ``Object/tags``).
/// - `eventTime` with or without fractional seconds.
///
/// MinIO's top-level `EventName` and `Key` repeat what the record holds and are not kept.
public struct S3Event: Codable, Sendable, Equatable {
    /// `Records`; empty for a test event.
    public var records: [Record]
    /// Present for AWS's `s3:TestEvent`, sent when a notification configuration is created.
    public var testEvent: TestEvent?

    public init(records: [Record], testEvent: TestEvent? = nil) {
        self.records = records
        self.testEvent = testEvent
    }

    /// Whether this is AWS's `s3:TestEvent` rather than a change.
    public var isTestEvent: Bool {
        testEvent?.event == "s3:TestEvent"
    }

    private enum CodingKeys: String, CodingKey {
        case records = "Records"
        case service = "Service"
        case event = "Event"
        case time = "Time"
        case bucket = "Bucket"
        case requestID = "RequestId"
        case hostID = "HostId"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        records = try container.decodeIfPresent([Record].self, forKey: .records) ?? []
        if let event = try container.decodeIfPresent(String.self, forKey: .event) {
            testEvent = TestEvent(
                service: try container.decodeIfPresent(String.self, forKey: .service) ?? "",
                event: event,
                time: try container.decodeIfPresent(String.self, forKey: .time) ?? "",
                bucket: try container.decodeIfPresent(String.self, forKey: .bucket) ?? "",
                requestID: try container.decodeIfPresent(String.self, forKey: .requestID),
                hostID: try container.decodeIfPresent(String.self, forKey: .hostID))
        } else {
            testEvent = nil
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        if let testEvent {
            try container.encode(testEvent.service, forKey: .service)
            try container.encode(testEvent.event, forKey: .event)
            try container.encode(testEvent.time, forKey: .time)
            try container.encode(testEvent.bucket, forKey: .bucket)
            try container.encodeIfPresent(testEvent.requestID, forKey: .requestID)
            try container.encodeIfPresent(testEvent.hostID, forKey: .hostID)
        }
        if testEvent == nil || !records.isEmpty {
            try container.encode(records, forKey: .records)
        }
    }

    /// AWS's `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":…,"Bucket":…,"RequestId":…,"HostId":…}`.
    public struct TestEvent: Sendable, Equatable {
        public var service: String
        public var event: String
        public var time: String
        public var bucket: String
        public var requestID: String?
        public var hostID: String?

        public init(
            service: String, event: String, time: String, bucket: String, requestID: String? = nil,
            hostID: String? = nil
        ) {
            self.service = service
            self.event = event
            self.time = time
            self.bucket = bucket
            self.requestID = requestID
            self.hostID = hostID
        }
    }

    public struct Record: Codable, Sendable, Equatable {
        /// "2.1" (AWS), "2.0" (MinIO), "2.2" (Ceph RGW).
        public var eventVersion: String
        /// "aws:s3", "minio:s3", "ceph:s3".
        public var eventSource: String
        /// Empty on MinIO and Ceph RGW.
        public var awsRegion: String
        public var eventTime: Date
        /// `eventName` as sent, e.g. `s3:ObjectCreated:Put` (MinIO) or `ObjectCreated:Put`.
        public var rawEventName: String
        public var userIdentity: Identity?
        public var requestParameters: [String: String]
        public var responseElements: [String: String]
        public var s3: Entity
        /// MinIO's `source` (host, port, user agent).
        public var source: Source?
        /// Ceph RGW's `eventId`.
        public var eventID: String?
        /// Ceph RGW's `opaqueData` (set on the topic).
        public var opaqueData: String?

        public init(
            eventVersion: String = "2.1", eventSource: String = "aws:s3", awsRegion: String = "",
            eventTime: Date, eventName: String, userIdentity: Identity? = nil,
            requestParameters: [String: String] = [:], responseElements: [String: String] = [:], s3: Entity,
            source: Source? = nil, eventID: String? = nil, opaqueData: String? = nil
        ) {
            self.eventVersion = eventVersion
            self.eventSource = eventSource
            self.awsRegion = awsRegion
            self.eventTime = eventTime
            self.rawEventName = eventName
            self.userIdentity = userIdentity
            self.requestParameters = requestParameters
            self.responseElements = responseElements
            self.s3 = s3
            self.source = source
            self.eventID = eventID
            self.opaqueData = opaqueData
        }

        /// The event name without MinIO's `s3:` prefix: `ObjectCreated:Put`, `ObjectRemoved:Delete`, ….
        public var eventName: String {
            rawEventName.hasPrefix("s3:") ? String(rawEventName.dropFirst(3)) : rawEventName
        }

        /// Whether the event reports a new object (`ObjectCreated:*`).
        public var isObjectCreated: Bool { eventName.hasPrefix("ObjectCreated:") }

        /// Whether the event reports a removal (`ObjectRemoved:*`).
        public var isObjectRemoved: Bool { eventName.hasPrefix("ObjectRemoved:") }

        private enum CodingKeys: String, CodingKey {
            case eventVersion, eventSource, awsRegion, eventTime, eventName, userIdentity, requestParameters
            case responseElements, s3, source
            case eventID = "eventId"
            case opaqueData
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            eventVersion = try container.decodeIfPresent(String.self, forKey: .eventVersion) ?? ""
            eventSource = try container.decodeIfPresent(String.self, forKey: .eventSource) ?? ""
            awsRegion = try container.decodeIfPresent(String.self, forKey: .awsRegion) ?? ""
            let time = try container.decode(String.self, forKey: .eventTime)
            guard let date = S3Event.parseTimestamp(time) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .eventTime, in: container, debugDescription: "'\(time)' is not an ISO 8601 timestamp")
            }
            eventTime = date
            rawEventName = try container.decode(String.self, forKey: .eventName)
            userIdentity = try container.decodeIfPresent(Identity.self, forKey: .userIdentity)
            requestParameters =
                (try? container.decodeIfPresent([String: String].self, forKey: .requestParameters)) ?? [:]
            responseElements = (try? container.decodeIfPresent([String: String].self, forKey: .responseElements)) ?? [:]
            s3 = try container.decode(Entity.self, forKey: .s3)
            source = try container.decodeIfPresent(Source.self, forKey: .source)
            eventID = try container.decodeIfPresent(String.self, forKey: .eventID)
            opaqueData = try container.decodeIfPresent(String.self, forKey: .opaqueData)
            if eventSource == "ceph:s3" {
                // Ceph RGW puts the object name into the event unencoded.
                s3.object.key = s3.object.rawKey
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(eventVersion, forKey: .eventVersion)
            try container.encode(eventSource, forKey: .eventSource)
            try container.encode(awsRegion, forKey: .awsRegion)
            try container.encode(S3Date.iso8601(eventTime), forKey: .eventTime)
            try container.encode(rawEventName, forKey: .eventName)
            try container.encodeIfPresent(userIdentity, forKey: .userIdentity)
            try container.encode(requestParameters, forKey: .requestParameters)
            try container.encode(responseElements, forKey: .responseElements)
            try container.encode(s3, forKey: .s3)
            try container.encodeIfPresent(source, forKey: .source)
            try container.encodeIfPresent(eventID, forKey: .eventID)
            try container.encodeIfPresent(opaqueData, forKey: .opaqueData)
        }
    }

    public struct Identity: Codable, Sendable, Equatable {
        public var principalID: String

        public init(principalID: String) {
            self.principalID = principalID
        }

        private enum CodingKeys: String, CodingKey {
            case principalID = "principalId"
        }
    }

    public struct Source: Codable, Sendable, Equatable {
        public var host: String?
        public var port: String?
        public var userAgent: String?

        public init(host: String? = nil, port: String? = nil, userAgent: String? = nil) {
            self.host = host
            self.port = port
            self.userAgent = userAgent
        }
    }

    public struct Entity: Codable, Sendable, Equatable {
        public var schemaVersion: String
        public var configurationID: String
        public var bucket: Bucket
        public var object: Object

        public init(schemaVersion: String = "1.0", configurationID: String, bucket: Bucket, object: Object) {
            self.schemaVersion = schemaVersion
            self.configurationID = configurationID
            self.bucket = bucket
            self.object = object
        }

        private enum CodingKeys: String, CodingKey {
            case schemaVersion = "s3SchemaVersion"
            case configurationID = "configurationId"
            case bucket, object
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            schemaVersion = try container.decodeIfPresent(String.self, forKey: .schemaVersion) ?? ""
            configurationID = try container.decodeIfPresent(String.self, forKey: .configurationID) ?? ""
            bucket = try container.decode(Bucket.self, forKey: .bucket)
            object = try container.decode(Object.self, forKey: .object)
        }
    }

    public struct Bucket: Codable, Sendable, Equatable {
        public var name: String
        public var ownerIdentity: Identity?
        public var arn: String?
        /// Ceph RGW's bucket id.
        public var id: String?

        public init(name: String, ownerIdentity: Identity? = nil, arn: String? = nil, id: String? = nil) {
            self.name = name
            self.ownerIdentity = ownerIdentity
            self.arn = arn
            self.id = id
        }
    }

    public struct Object: Codable, Sendable, Equatable {
        /// The object key, decoded (see ``S3Event``).
        public var key: String
        /// The key as it appeared in the event.
        public var rawKey: String
        /// Absent on some delete events.
        public var size: Int64?
        public var eTag: String?
        /// `nil` when absent or empty (unversioned buckets).
        public var versionID: String?
        public var sequencer: String?
        /// MinIO's `contentType`.
        public var contentType: String?
        /// User metadata: MinIO's `userMetadata`, Ceph RGW's `metadata` list.
        public var metadata: [String: String]
        /// Ceph RGW's `tags` list.
        public var tags: [String: String]

        /// An object entry for `key` (decoded); ``rawKey`` is its AWS form encoding.
        public init(
            key: String, size: Int64? = nil, eTag: String? = nil, versionID: String? = nil,
            sequencer: String? = nil, contentType: String? = nil, metadata: [String: String] = [:],
            tags: [String: String] = [:]
        ) {
            self.key = key
            self.rawKey = S3Event.formEncodeKey(key)
            self.size = size
            self.eTag = eTag
            self.versionID = versionID
            self.sequencer = sequencer
            self.contentType = contentType
            self.metadata = metadata
            self.tags = tags
        }

        private enum CodingKeys: String, CodingKey {
            case key, size, eTag
            case versionID = "versionId"
            case sequencer, contentType, userMetadata, metadata, tags
        }

        private struct KeyValue: Codable {
            var key: String
            var val: String
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            rawKey = try container.decode(String.self, forKey: .key)
            key = S3Event.formDecodeKey(rawKey) ?? rawKey
            size = try container.decodeIfPresent(Int64.self, forKey: .size)
            func nonEmpty(_ key: CodingKeys) throws -> String? {
                try container.decodeIfPresent(String.self, forKey: key).flatMap { $0.isEmpty ? nil : $0 }
            }
            eTag = try nonEmpty(.eTag)
            versionID = try nonEmpty(.versionID)
            sequencer = try nonEmpty(.sequencer)
            contentType = try nonEmpty(.contentType)
            var metadata = (try? container.decodeIfPresent([String: String].self, forKey: .userMetadata)) ?? [:]
            for pair in (try? container.decodeIfPresent([KeyValue].self, forKey: .metadata)) ?? [] {
                metadata[pair.key] = pair.val
            }
            self.metadata = metadata
            var tags: [String: String] = [:]
            for pair in (try? container.decodeIfPresent([KeyValue].self, forKey: .tags)) ?? [] {
                tags[pair.key] = pair.val
            }
            self.tags = tags
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(rawKey, forKey: .key)
            try container.encodeIfPresent(size, forKey: .size)
            try container.encodeIfPresent(eTag, forKey: .eTag)
            try container.encodeIfPresent(versionID, forKey: .versionID)
            try container.encodeIfPresent(sequencer, forKey: .sequencer)
            try container.encodeIfPresent(contentType, forKey: .contentType)
            if !metadata.isEmpty { try container.encode(metadata, forKey: .userMetadata) }
            if !tags.isEmpty {
                try container.encode(
                    tags.sorted { $0.key < $1.key }.map { KeyValue(key: $0.key, val: $0.value) }, forKey: .tags)
            }
        }
    }

    /// Decodes a form-encoded key: `+` is a space, `%XX` a byte. `nil` if an escape is malformed or the
    /// bytes are not UTF-8.
    public static func formDecodeKey(_ encoded: String) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(encoded.utf8.count)
        var iterator = encoded.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    return nil
                }
                bytes.append(high << 4 | low)
            default:
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// Encodes a key the way AWS S3 writes it into events: unreserved characters and `/` kept, space as `+`,
    /// every other byte as `%XX`.
    public static func formEncodeKey(_ key: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(key.utf8.count)
        let hex = Array("0123456789ABCDEF".utf8)
        for byte in key.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"), UInt8(ascii: "/"):
                out.append(byte)
            case UInt8(ascii: " "):
                out.append(UInt8(ascii: "+"))
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `eventTime`: ISO 8601 as S3 servers write it (`2026-11-25T10:00:00Z`, `…00.123Z`, `…51.501072Z`, or with a
    /// `±hh:mm` offset), parsed by S3Wire. A time without a zone is refused: it would name no instant.
    static func parseTimestamp(_ text: String) -> Date? {
        let u = Array(text.utf8)
        let zoned =
            u.last == UInt8(ascii: "Z") || u.last == UInt8(ascii: "z")
            || (u.count >= 6 && (u[u.count - 6] == UInt8(ascii: "+") || u[u.count - 6] == UInt8(ascii: "-"))
                && u[u.count - 3] == UInt8(ascii: ":"))
        return zoned ? S3Date.parseISO8601(text) : nil
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

extension S3Event {
    /// What routes and deduplicates a record, and nothing else: decoding it costs a fraction of a full
    /// ``Record`` (the gateway decodes one per incoming event). Same key rules as ``Object/key``.
    public struct Summary: Decodable, Sendable, Equatable {
        public var eventSource: String
        /// Without the `s3:` prefix MinIO adds.
        public var eventName: String
        /// As sent.
        public var eventTime: String
        public var bucket: String
        /// Decoded.
        public var key: String
        public var eTag: String?
        public var sequencer: String?
        public var versionID: String?

        private enum RecordKeys: String, CodingKey { case eventSource, eventName, eventTime, s3 }
        private enum EntityKeys: String, CodingKey { case bucket, object }
        private enum BucketKeys: String, CodingKey { case name }
        private enum ObjectKeys: String, CodingKey {
            case key, eTag, sequencer
            case versionID = "versionId"
        }

        public init(from decoder: any Decoder) throws {
            let record = try decoder.container(keyedBy: RecordKeys.self)
            eventSource = try record.decodeIfPresent(String.self, forKey: .eventSource) ?? ""
            let name = try record.decode(String.self, forKey: .eventName)
            eventName = name.hasPrefix("s3:") ? String(name.dropFirst(3)) : name
            eventTime = try record.decodeIfPresent(String.self, forKey: .eventTime) ?? ""
            let s3 = try record.nestedContainer(keyedBy: EntityKeys.self, forKey: .s3)
            bucket = try s3.nestedContainer(keyedBy: BucketKeys.self, forKey: .bucket).decode(
                String.self, forKey: .name)
            let object = try s3.nestedContainer(keyedBy: ObjectKeys.self, forKey: .object)
            let rawKey = try object.decode(String.self, forKey: .key)
            key = eventSource == "ceph:s3" ? rawKey : S3Event.formDecodeKey(rawKey) ?? rawKey
            func nonEmpty(_ field: ObjectKeys) throws -> String? {
                try object.decodeIfPresent(String.self, forKey: field).flatMap { $0.isEmpty ? nil : $0 }
            }
            eTag = try nonEmpty(.eTag)
            sequencer = try nonEmpty(.sequencer)
            versionID = try nonEmpty(.versionID)
        }
    }

    /// The ``Summary`` of every record of a notification, and whether it is AWS's `s3:TestEvent`.
    public struct Summaries: Decodable, Sendable {
        public var records: [Summary]
        public var isTestEvent: Bool

        private enum CodingKeys: String, CodingKey {
            case records = "Records"
            case event = "Event"
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            records = try container.decodeIfPresent([Summary].self, forKey: .records) ?? []
            isTestEvent = try container.decodeIfPresent(String.self, forKey: .event) == "s3:TestEvent"
        }
    }
}
