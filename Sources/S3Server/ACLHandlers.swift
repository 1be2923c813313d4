import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import ObjectStore
import S3Wire

/// Bucket and object ACLs: the canned ACLs the store enforces (`private`, `public-read`; see ``CannedACL``),
/// read and written as S3's `AccessControlPolicy` documents.
extension S3Responder {
    static let allUsersGroup = "http://acs.amazonaws.com/groups/global/AllUsers"

    /// The canned ACL a write asks for (`x-amz-acl`); nil when none or `private`. ACLs the store cannot
    /// enforce (grants to other accounts, authenticated-read, public-read-write) are refused, not ignored.
    func cannedACL(_ s3: S3Request) throws -> CannedACL? {
        for field in s3.headers where field.name.canonicalName.hasPrefix("x-amz-grant-") {
            throw S3ServerError.notImplemented(
                "\(field.name.canonicalName) (the store enforces the canned ACLs private and public-read)")
        }
        guard let value = s3.header("x-amz-acl")?.trimmingCharacters(in: .whitespaces).lowercased() else { return nil }
        switch value {
        // Owner-full-control ACLs are about a bucket owner of another account: here the owner has full control.
        case "private", "bucket-owner-full-control", "bucket-owner-read": return nil
        case "public-read": return .publicRead
        case "authenticated-read", "public-read-write", "aws-exec-read", "log-delivery-write":
            throw S3ServerError.notImplemented(
                "x-amz-acl: \(value) (the store enforces the canned ACLs private and public-read)")
        default:
            throw S3ServerError.invalidArgument("Invalid canned ACL", name: "x-amz-acl", value: value)
        }
    }

    /// The ACL of a PutBucketAcl/PutObjectAcl: `x-amz-acl`, or an `AccessControlPolicy` body granting the
    /// owner FULL_CONTROL and at most READ to everyone.
    func requestedACL(_ s3: S3Request, payload: PayloadReader) async throws -> CannedACL {
        let body = try await payload.collect(limit: 64 * 1024)
        if s3.header("x-amz-acl") != nil || body.readableBytes == 0 {
            if body.readableBytes > 0 {
                throw S3ServerError(
                    "UnexpectedContent", .badRequest, "This request does not support content when x-amz-acl is given")
            }
            return try cannedACL(s3) ?? .private
        }
        guard let root = try? S3XMLElement.parse(Data(body.readableBytesView)), root.name == "AccessControlPolicy"
        else {
            throw S3ServerError.malformedXML
        }
        var acl = CannedACL.private
        for grant in root.child("AccessControlList")?.children("Grant") ?? [] {
            let permission = grant.string("Permission") ?? ""
            let grantee = grant.child("Grantee")
            if let uri = grantee?.string("URI") {
                guard uri == Self.allUsersGroup, permission == "READ" else {
                    throw S3ServerError.notImplemented(
                        "a grant of \(permission) to \(uri) (the store enforces the canned ACLs private and public-read)"
                    )
                }
                acl = .publicRead
            } else if permission != "FULL_CONTROL" {
                throw S3ServerError.notImplemented(
                    "a grant of \(permission) to one user (the store enforces the canned ACLs private and public-read)")
            }
        }
        return acl
    }

    static func aclDocument(owner: String, acl: CannedACL) -> String {
        var xml = S3XMLWriter(root: "AccessControlPolicy")
        xml.group("Owner") {
            $0.element("ID", owner)
            $0.element("DisplayName", owner)
        }
        xml.group("AccessControlList") { list in
            // The group's grant first, as RGW lists it (a client that sorts grants by name meets it first).
            if acl == .publicRead {
                list.raw(
                    #"<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group"><URI>"#
                        + allUsersGroup + "</URI></Grantee><Permission>READ</Permission></Grant>")
            }
            list.raw(
                #"<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser"><ID>"#
                    + S3XMLWriter.escape(owner) + "</ID><DisplayName>" + S3XMLWriter.escape(owner)
                    + "</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant>")
        }
        return xml.finish()
    }

    func getBucketACL(_ bucket: String) async throws -> Response {
        let info = try await store.bucketInfo(bucket)
        return Self.xmlResponse(Self.aclDocument(owner: try await ownerID(of: bucket), acl: info.acl))
    }

    func putBucketACL(_ s3: S3Request, bucket: String, payload: PayloadReader) async throws -> Response {
        let acl = try await requestedACL(s3, payload: payload)
        try await store.setBucketACL(bucket, acl)
        return Response(status: .ok)
    }

    func getObjectACL(bucket: String, key: String, access: Access) async throws -> Response {
        let info = try await access.read { try await store.headObject(bucket: bucket, key: key) }
        try access.check(info)
        let owner = try await ownerID(of: bucket)
        return Self.xmlResponse(Self.aclDocument(owner: owner, acl: info.metadata.acl ?? .private))
    }

    func putObjectACL(_ s3: S3Request, bucket: String, key: String, payload: PayloadReader) async throws -> Response {
        let acl = try await requestedACL(s3, payload: payload)
        try await store.setObjectACL(bucket: bucket, key: key, acl)
        return Response(status: .ok)
    }
}
