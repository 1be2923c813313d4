import Foundation
import NIOCore
import S3Wire
import SigV4

extension S3Client {
    /// One page of `ListObjectsV2`. Keys are requested with `encoding-type=url` (so keys with
    /// control characters survive XML) and decoded when the store says it encoded them.
    public func listObjectsV2(
        bucket: String,
        prefix: String? = nil,
        delimiter: String? = nil,
        continuationToken: String? = nil,
        startAfter: String? = nil,
        maxKeys: Int? = nil
    ) async throws -> ListObjectsV2Page {
        var query: [(name: String, value: String)] = [("list-type", "2"), ("encoding-type", "url")]
        if let prefix { query.append(("prefix", prefix)) }
        if let delimiter { query.append(("delimiter", delimiter)) }
        if let continuationToken { query.append(("continuation-token", continuationToken)) }
        if let startAfter { query.append(("start-after", startAfter)) }
        if let maxKeys {
            guard maxKeys >= 0 else { throw S3ClientError.invalidArgument("maxKeys must not be negative") }
            query.append(("max-keys", String(maxKeys)))
        }
        let response = try await send(S3Operation("ListObjectsV2", "GET", bucket: bucket, query: query))
        return try Self.parseListObjectsV2(response.xml())
    }

    static func parseListObjectsV2(_ root: S3XMLElement) throws -> ListObjectsV2Page {
        guard root.name == "ListBucketResult" else {
            throw S3ClientError.invalidResponse("expected ListBucketResult, got \(root.name)")
        }
        let urlEncoded = root.string("EncodingType")?.trimmingCharacters(in: .whitespaces).lowercased() == "url"
        func decode(_ value: String?) throws -> String? {
            guard let value, urlEncoded else { return value }
            guard let decoded = Self.urlFormDecode(value) else {
                throw S3ClientError.invalidResponse("invalid url-encoded value in listing: \(value)")
            }
            return decoded
        }
        let objects = try root.children("Contents").map { element in
            guard let key = try decode(element.string("Key")) else {
                throw S3ClientError.invalidResponse("listing entry without Key")
            }
            return ObjectSummary(
                key: key,
                size: element.int("Size") ?? 0,
                etag: element.string("ETag")?.unquotedETag,
                lastModified: element.date("LastModified"),
                storageClass: element.string("StorageClass")
            )
        }
        let prefixes = try root.children("CommonPrefixes").compactMap { try decode($0.string("Prefix")) }
        let token = root.string("NextContinuationToken")
        return ListObjectsV2Page(
            objects: objects,
            commonPrefixes: prefixes,
            isTruncated: root.bool("IsTruncated") ?? false,
            nextContinuationToken: (token?.isEmpty ?? true) ? nil : token,
            keyCount: root.int("KeyCount") ?? (objects.count + prefixes.count),
            prefix: try decode(root.string("Prefix")),
            delimiter: try decode(root.string("Delimiter")),
            maxKeys: root.int("MaxKeys"),
            startAfter: try decode(root.string("StartAfter")),
            continuationToken: root.string("ContinuationToken")
        )
    }

    /// Decodes a listing value S3 wrote with `encoding-type=url`: form encoding, so `+` is a space.
    /// Nil on a malformed escape or when the bytes are not UTF-8.
    static func urlFormDecode(_ value: String) -> String? {
        S3URIEncoding.decode(value.replacingOccurrences(of: "+", with: " "))
    }

    /// Every object under `prefix`, fetching pages lazily as the sequence is iterated.
    public func listAllObjects(bucket: String, prefix: String? = nil, pageSize: Int? = nil) -> S3ObjectListing {
        S3ObjectListing(client: self, bucket: bucket, prefix: prefix, pageSize: pageSize)
    }
}

/// Lazily paginated object listing (follows continuation tokens).
public struct S3ObjectListing: AsyncSequence, Sendable {
    public typealias Element = ObjectSummary

    let client: S3Client
    let bucket: String
    let prefix: String?
    let pageSize: Int?

    public struct AsyncIterator: AsyncIteratorProtocol {
        let listing: S3ObjectListing
        var page: [ObjectSummary] = []
        var index = 0
        var continuationToken: String?
        var startAfter: String?
        var finished = false

        public mutating func next() async throws -> ObjectSummary? {
            while index >= page.count {
                if finished { return nil }
                let result = try await listing.client.listObjectsV2(
                    bucket: listing.bucket, prefix: listing.prefix, continuationToken: continuationToken,
                    startAfter: continuationToken == nil ? startAfter : nil, maxKeys: listing.pageSize
                )
                page = result.objects
                index = 0
                if !result.isTruncated {
                    finished = true
                } else if let token = result.nextContinuationToken {
                    guard token != continuationToken else {
                        throw S3ClientError.invalidResponse("listing returned the same continuation token twice")
                    }
                    continuationToken = token
                } else if let last = result.objects.last?.key {
                    // Truncated without a token: continue after the last key.
                    continuationToken = nil
                    startAfter = last
                } else {
                    throw S3ClientError.invalidResponse("truncated listing without continuation token")
                }
            }
            defer { index += 1 }
            return page[index]
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(listing: self)
    }
}
