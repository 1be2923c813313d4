import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import ObjectStore
import S3Wire
import SigV4

extension S3Responder {
    /// The canonical user id of the administrators, who own the buckets that have no owner of their own.
    static let ownerID = "cinescale"

    /// A principal's canonical user id in Owner elements: its user name, or ``ownerID`` for administrators.
    static func canonicalID(of principal: Principal) -> String {
        guard case .user(let user) = principal, !user.admin else { return ownerID }
        return user.name
    }

    /// The canonical user id of a bucket's owner.
    func ownerID(of bucket: String) async throws -> String {
        try await store.bucketInfo(bucket).owner ?? Self.ownerID
    }

    /// ListBuckets: the buckets the principal may use, by name; `max-buckets` (1–10 000) pages them with a
    /// continuation token, `prefix` filters them.
    func listBuckets(_ s3: S3Request, principal: Principal) async throws -> Response {
        let prefix = s3.query["prefix"] ?? ""
        var maxBuckets: Int?
        if let value = s3.query["max-buckets"] {
            guard let parsed = Int(value), (1...10_000).contains(parsed) else {
                throw S3ServerError.invalidArgument(
                    "Argument max-buckets must be an integer between 1 and 10000.", name: "max-buckets", value: value)
            }
            maxBuckets = parsed
        }
        var after: String?
        if let token = s3.query["continuation-token"] {
            guard let marker = ContinuationToken.decode(token) else {
                throw S3ServerError.invalidArgument(
                    "The continuation token provided is incorrect", name: "continuation-token", value: token)
            }
            after = marker
        }
        var buckets = try await store.listBuckets().filter { bucket in
            principal.sees(bucket) && bucket.name.hasPrefix(prefix) && after.map { bucket.name > $0 } != false
        }
        var next: String?
        if let maxBuckets, buckets.count > maxBuckets {
            buckets = Array(buckets.prefix(maxBuckets))
            next = buckets.last.map { ContinuationToken.encode($0.name) }
        }
        var xml = S3XMLWriter(root: "ListAllMyBucketsResult")
        xml.group("Owner") {
            $0.element("ID", Self.canonicalID(of: principal))
            $0.element("DisplayName", Self.canonicalID(of: principal))
        }
        xml.group("Buckets") { xml in
            for bucket in buckets {
                xml.group("Bucket") {
                    $0.element("Name", bucket.name)
                    $0.element("CreationDate", S3Date.iso8601(bucket.creationDate))
                    $0.element("BucketRegion", configuration.region)
                }
            }
        }
        xml.element("ContinuationToken", next)
        if s3.query["prefix"] != nil { xml.element("Prefix", prefix) }
        return Self.xmlResponse(xml.finish())
    }

    func createBucket(_ s3: S3Request, bucket: String, payload: PayloadReader, principal: Principal) async throws
        -> Response
    {
        let body = try await payload.collect(limit: 64 * 1024)
        if body.readableBytes > 0 {
            guard let root = try? S3XMLElement.parse(Data(body.readableBytesView)),
                root.name == "CreateBucketConfiguration"
            else {
                throw S3ServerError.malformedXML
            }
            if let location = root.string("LocationConstraint"), !location.isEmpty, location != configuration.region {
                throw S3ServerError(
                    "InvalidLocationConstraint", .badRequest, "The specified location-constraint is not valid",
                    details: [("LocationConstraint", location)])
            }
        }
        let acl = try cannedACL(s3) ?? .private
        // An administrator's buckets belong to no one user (as buckets made with the single --access-key do).
        var owner: String?
        if case .user(let user) = principal, !user.admin { owner = user.name }
        do {
            _ = try await store.createBucket(bucket, owner: owner, acl: acl)
        } catch let error as ObjectStoreError
            where error.code == .bucketAlreadyOwnedByYou || (error.code == .bucketAlreadyExists && owner == nil)
        {
            // One's own bucket (an administrator owns every bucket): S3 answers 200 in us-east-1 (its legacy
            // behaviour, which clients expect there) and BucketAlreadyOwnedByYou in every other region.
            guard configuration.region != "us-east-1" else {
                return Response(status: .ok, headers: [.location: "/\(bucket)"])
            }
            throw S3ServerError(
                ObjectStoreError(
                    .bucketAlreadyOwnedByYou,
                    "Your previous request to create the named bucket succeeded and you already own it.", bucket: bucket
                ))
        }
        return Response(status: .ok, headers: [.location: "/\(bucket)"])
    }

    func bucketLocation(_ bucket: String) async throws -> Response {
        _ = try await store.bucketInfo(bucket)
        var text = #"<?xml version="1.0" encoding="UTF-8"?>"#
        text += #"<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">"#
        text += configuration.region == "us-east-1" ? "" : S3XMLWriter.escape(configuration.region)
        text += "</LocationConstraint>"
        return Self.xmlResponse(text)
    }

    func bucketVersioning(_ bucket: String) async throws -> Response {
        _ = try await store.bucketInfo(bucket)
        return Self.xmlResponse(S3XMLWriter(root: "VersioningConfiguration").finish())
    }

    // MARK: Listing

    struct ListParameters {
        var prefix: String
        var delimiter: String?
        var maxKeys: Int
        var urlEncoded: Bool
    }

    func listParameters(_ s3: S3Request) throws -> ListParameters {
        var maxKeys = 1000
        if let value = s3.query["max-keys"] {
            guard let parsed = Int(value), parsed >= 0 else {
                throw S3ServerError.invalidArgument(
                    "Provided max-keys not an integer or within integer range", name: "max-keys", value: value)
            }
            maxKeys = min(parsed, 1000)
        }
        var urlEncoded = false
        if let encoding = s3.query["encoding-type"] {
            guard encoding == "url" else {
                throw S3ServerError.invalidArgument(
                    "Invalid Encoding Method specified in Request", name: "encoding-type", value: encoding)
            }
            urlEncoded = true
        }
        let delimiter = s3.query["delimiter"].flatMap { $0.isEmpty ? nil : $0 }
        return ListParameters(
            prefix: s3.query["prefix"] ?? "", delimiter: delimiter, maxKeys: maxKeys, urlEncoded: urlEncoded)
    }

    func encodeListValue(_ value: String, _ parameters: ListParameters) -> String {
        parameters.urlEncoded ? S3URIEncoding.encode(value, encodeSlash: false) : value
    }

    func listObjectsV2(_ s3: S3Request, bucket: String) async throws -> Response {
        let parameters = try listParameters(s3)
        var startAfter = s3.query["start-after"]
        let token = s3.query["continuation-token"]
        if let token {
            guard let marker = ContinuationToken.decode(token) else {
                throw S3ServerError.invalidArgument(
                    "The continuation token provided is incorrect", name: "continuation-token", value: token)
            }
            startAfter = marker
        }
        let listing = try await store.listObjects(
            bucket: bucket, prefix: parameters.prefix, delimiter: parameters.delimiter,
            startAfter: startAfter, maxKeys: parameters.maxKeys)
        var xml = S3XMLWriter(root: "ListBucketResult")
        xml.element("Name", bucket)
        xml.element("Prefix", encodeListValue(parameters.prefix, parameters))
        if let delimiter = parameters.delimiter { xml.element("Delimiter", encodeListValue(delimiter, parameters)) }
        xml.element("MaxKeys", parameters.maxKeys)
        if parameters.urlEncoded { xml.element("EncodingType", "url") }
        xml.element("KeyCount", listing.objects.count + listing.commonPrefixes.count)
        xml.element("IsTruncated", listing.isTruncated)
        if let token { xml.element("ContinuationToken", token) }
        if listing.isTruncated, let next = listing.nextMarker {
            xml.element("NextContinuationToken", ContinuationToken.encode(next))
        }
        if let after = s3.query["start-after"] { xml.element("StartAfter", encodeListValue(after, parameters)) }
        let owner = s3.query["fetch-owner"] == "true" ? try await ownerID(of: bucket) : nil
        writeContents(&xml, listing, parameters, owner: owner)
        return Self.xmlResponse(xml.finish())
    }

    func listObjectsV1(_ s3: S3Request, bucket: String) async throws -> Response {
        let parameters = try listParameters(s3)
        let marker = s3.query["marker"].flatMap { $0.isEmpty ? nil : $0 }
        let listing = try await store.listObjects(
            bucket: bucket, prefix: parameters.prefix, delimiter: parameters.delimiter,
            startAfter: marker, maxKeys: parameters.maxKeys)
        var xml = S3XMLWriter(root: "ListBucketResult")
        xml.element("Name", bucket)
        // V1 answers the prefix as sent (botocore decodes only Delimiter, Marker, NextMarker and Key of a v1 listing).
        xml.element("Prefix", parameters.prefix)
        xml.element("Marker", encodeListValue(marker ?? "", parameters))
        if listing.isTruncated, parameters.delimiter != nil, let next = listing.nextMarker {
            xml.element("NextMarker", encodeListValue(next, parameters))
        }
        xml.element("MaxKeys", parameters.maxKeys)
        if let delimiter = parameters.delimiter { xml.element("Delimiter", encodeListValue(delimiter, parameters)) }
        if parameters.urlEncoded { xml.element("EncodingType", "url") }
        xml.element("IsTruncated", listing.isTruncated)
        writeContents(&xml, listing, parameters, owner: try await ownerID(of: bucket))
        return Self.xmlResponse(xml.finish())
    }

    /// ListObjectVersions on a bucket without versioning: every object is its only, latest version, with the
    /// version id `null`, as S3 lists an unversioned bucket.
    func listObjectVersions(_ s3: S3Request, bucket: String) async throws -> Response {
        let parameters = try listParameters(s3)
        let keyMarker = s3.query["key-marker"].flatMap { $0.isEmpty ? nil : $0 }
        if let versionMarker = s3.query["version-id-marker"], !versionMarker.isEmpty {
            guard keyMarker != nil else {
                throw S3ServerError.invalidArgument(
                    "A version-id marker cannot be specified without a key marker.", name: "version-id-marker",
                    value: versionMarker)
            }
            guard versionMarker == "null" else {
                throw S3ServerError.invalidArgument(
                    "Invalid version id specified", name: "version-id-marker", value: versionMarker)
            }
        }
        let listing = try await store.listObjects(
            bucket: bucket, prefix: parameters.prefix, delimiter: parameters.delimiter,
            startAfter: keyMarker, maxKeys: parameters.maxKeys)
        var xml = S3XMLWriter(root: "ListVersionsResult")
        xml.element("Name", bucket)
        xml.element("Prefix", encodeListValue(parameters.prefix, parameters))
        xml.element("KeyMarker", encodeListValue(keyMarker ?? "", parameters))
        xml.element("VersionIdMarker", s3.query["version-id-marker"] ?? "")
        if listing.isTruncated, let next = listing.nextMarker {
            xml.element("NextKeyMarker", encodeListValue(next, parameters))
            xml.element("NextVersionIdMarker", "null")
        }
        xml.element("MaxKeys", parameters.maxKeys)
        if let delimiter = parameters.delimiter { xml.element("Delimiter", encodeListValue(delimiter, parameters)) }
        if parameters.urlEncoded { xml.element("EncodingType", "url") }
        xml.element("IsTruncated", listing.isTruncated)
        writeContents(&xml, listing, parameters, owner: try await ownerID(of: bucket), asVersions: true)
        return Self.xmlResponse(xml.finish())
    }

    /// A listing's objects (`Contents`, or as ListObjectVersions' only, latest `Version`s) and common prefixes.
    private func writeContents(
        _ xml: inout S3XMLWriter, _ listing: ObjectListing, _ parameters: ListParameters, owner: String?,
        asVersions: Bool = false
    ) {
        for object in listing.objects {
            xml.group(asVersions ? "Version" : "Contents") {
                $0.element("Key", encodeListValue(object.key, parameters))
                if asVersions {
                    $0.element("VersionId", "null")
                    $0.element("IsLatest", true)
                }
                $0.element("LastModified", S3Date.iso8601(object.lastModified))
                $0.element("ETag", quoted(object.etag))
                $0.element("Size", object.size)
                if let owner {
                    $0.group("Owner") {
                        $0.element("ID", owner)
                        $0.element("DisplayName", owner)
                    }
                }
                $0.element("StorageClass", "STANDARD")
            }
        }
        for prefix in listing.commonPrefixes {
            xml.group("CommonPrefixes") { $0.element("Prefix", encodeListValue(prefix, parameters)) }
        }
    }
}

/// Continuation tokens are the last key (or common prefix) of a page, base64url-encoded.
enum ContinuationToken {
    static func encode(_ marker: String) -> String {
        Data(marker.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
    }

    static func decode(_ token: String) -> String? {
        var base64 = token.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        guard let data = Data(base64Encoded: base64) else { return nil }
        return String(data: data, encoding: .utf8)
    }
}
