import Foundation
import ObjectStore
import S3Server
import SigV4
import Testing

/// Independent CRC-32 (IEEE) oracle for trailer checksums.
func crc32(_ bytes: [UInt8]) -> UInt32 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        crc ^= UInt32(byte)
        for _ in 0..<8 { crc = (crc >> 1) ^ (0xEDB8_8320 & (0 &- (crc & 1))) }
    }
    return ~crc
}

func base64(_ value: UInt32) -> String {
    Data([UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)])
        .base64EncodedString()
}

func randomBytes(_ count: Int) -> [UInt8] {
    var generator = SystemRandomNumberGenerator()
    return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
}

@Suite("S3 wire protocol against a live store")
struct S3ServerTests {
    @Test func putGetHeadDeleteRoundTrip() async throws {
        try await LiveStore.run { s in
            #expect(try await s.send("PUT", "/media").status == 200)
            let data = randomBytes(70_000)
            let put = try await s.send(
                "PUT", "/media/videos/a b/c+d~e.mp4",
                headers: [("content-type", "video/mp4"), ("x-amz-meta-video-id", "v42")],
                body: data)
            #expect(put.status == 200)
            let etag = put.headers["etag"]
            #expect(etag?.count == 34)

            let get = try await s.send("GET", "/media/videos/a b/c+d~e.mp4")
            #expect(get.status == 200)
            #expect(get.body == data)
            #expect(get.headers["content-type"] == "video/mp4")
            #expect(get.headers["x-amz-meta-video-id"] == "v42")
            #expect(get.headers["etag"] == etag)
            #expect(get.headers["accept-ranges"] == "bytes")

            let head = try await s.send("HEAD", "/media/videos/a b/c+d~e.mp4")
            #expect(head.status == 200)
            #expect(head.headers["content-length"] == "70000")
            #expect(head.body.isEmpty)

            #expect(try await s.send("DELETE", "/media/videos/a b/c+d~e.mp4").status == 204)
            let missing = try await s.send("GET", "/media/videos/a b/c+d~e.mp4")
            #expect(missing.status == 404)
            #expect(missing.errorCode == "NoSuchKey")
            let missingHead = try await s.send("HEAD", "/media/videos/a b/c+d~e.mp4")
            #expect(missingHead.status == 404)
            #expect(missingHead.body.isEmpty)
            // Deleting a missing key succeeds, as in S3.
            #expect(try await s.send("DELETE", "/media/never").status == 204)
        }
    }

    @Test func rangeRequests() async throws {
        try await LiveStore.run { s in
            let created = try await s.send("PUT", "/bkt1")
            #expect(created.status == 200, "\(created.text)")
            let data = randomBytes(1000)
            _ = try await s.send("PUT", "/bkt1/obj", body: data)
            let cases: [(String, Int, ArraySlice<UInt8>, String?)] = [
                ("bytes=0-0", 206, data[0...0], "bytes 0-0/1000"),
                ("bytes=10-19", 206, data[10...19], "bytes 10-19/1000"),
                ("bytes=990-", 206, data[990...], "bytes 990-999/1000"),
                ("bytes=-10", 206, data[990...], "bytes 990-999/1000"),
                ("bytes=500-5000", 206, data[500...], "bytes 500-999/1000"),
                ("bytes=0-1,5-6", 200, data[...], nil),
                ("lines=1-2", 200, data[...], nil),
            ]
            for (range, status, expected, contentRange) in cases {
                let reply = try await s.send("GET", "/bkt1/obj", headers: [("range", range)])
                #expect(reply.status == status, "\(range)")
                #expect(reply.body == Array(expected), "\(range)")
                #expect(reply.headers["content-range"] == contentRange, "\(range)")
            }
            let unsatisfiable = try await s.send("GET", "/bkt1/obj", headers: [("range", "bytes=1000-")])
            #expect(unsatisfiable.status == 416)
            #expect(unsatisfiable.errorCode == "InvalidRange")
            #expect(unsatisfiable.headers["content-range"] == "bytes */1000")
        }
    }

    @Test func conditionalRequests() async throws {
        try await LiveStore.run { s in
            _ = try await s.send("PUT", "/bkt2")
            let put = try await s.send("PUT", "/bkt2/k", body: Array("v1".utf8))
            let etag = try #require(put.headers["etag"])
            #expect(try await s.send("GET", "/bkt2/k", headers: [("if-none-match", etag)]).status == 304)
            #expect(try await s.send("GET", "/bkt2/k", headers: [("if-match", etag)]).status == 200)
            #expect(try await s.send("GET", "/bkt2/k", headers: [("if-match", "\"nope\"")]).status == 412)
            let future = "Fri, 01 Jan 2100 00:00:00 GMT"
            let past = "Sat, 01 Jan 2000 00:00:00 GMT"
            #expect(try await s.send("GET", "/bkt2/k", headers: [("if-modified-since", future)]).status == 304)
            #expect(try await s.send("GET", "/bkt2/k", headers: [("if-modified-since", past)]).status == 200)
            #expect(try await s.send("GET", "/bkt2/k", headers: [("if-unmodified-since", past)]).status == 412)

            let refused = try await s.send("PUT", "/bkt2/k", headers: [("if-none-match", "*")], body: Array("v2".utf8))
            #expect(refused.status == 412)
            #expect(refused.errorCode == "PreconditionFailed")
            #expect(try await s.send("PUT", "/bkt2/new", headers: [("if-none-match", "*")], body: [1]).status == 200)
            #expect(try await s.send("PUT", "/bkt2/k", headers: [("if-match", "\"0000\"")], body: [2]).status == 412)
            #expect(try await s.send("PUT", "/bkt2/k", headers: [("if-match", etag)], body: [3]).status == 200)
            #expect(try await s.send("GET", "/bkt2/k").body == [3])
        }
    }

    @Test func awsChunkedSignedUpload() async throws {
        try await LiveStore.run { s in
            _ = try await s.send("PUT", "/bkt3")
            let data = randomBytes(150_000)
            let date = Date()
            let path = "/bkt3/chunked.bin"
            let headers: [(name: String, value: String)] = [
                ("content-encoding", "aws-chunked"), ("x-amz-decoded-content-length", String(data.count)),
            ]
            let signer = SigV4Signer(credentials: LiveStore.credentials, region: "us-east-1")
            let request = SigningRequest(
                method: "PUT", path: path, query: [], headers: headers + [(name: "host", value: "127.0.0.1:\(s.port)")])
            let signed = signer.signedHeaders(for: request, payload: .streamingSigned, date: date)
            let authorization = try #require(signed.first { $0.name.lowercased() == "authorization" }?.value)
            let seed = String(try #require(authorization.split(separator: "Signature=").last))

            func body(tamper: Bool) -> [UInt8] {
                var chunkSigner = signer.chunkSigner(seedSignature: seed, date: date)
                var out: [UInt8] = []
                var offset = 0
                for size in [65_536, 65_536, data.count - 131_072, 0] {
                    let chunk = Array(data[offset..<(offset + size)])
                    offset += size
                    let signature = chunkSigner.sign(chunk: chunk)
                    out += Array("\(String(size, radix: 16));chunk-signature=\(signature)\r\n".utf8)
                    var sent = chunk
                    if tamper && size > 0 && offset > 65_536 { sent[0] ^= 0xFF }
                    out += sent + Array("\r\n".utf8)
                }
                return out
            }

            let good = try await s.send(
                "PUT", path, headers: headers + signed, sign: false, rawBody: body(tamper: false))
            #expect(good.status == 200, "\(good.text)")
            #expect(try await s.send("GET", path).body == data)

            let badPath = "/bkt3/tampered.bin"
            let badRequest = SigningRequest(
                method: "PUT", path: badPath, query: [],
                headers: headers + [(name: "host", value: "127.0.0.1:\(s.port)")])
            let badSigned = signer.signedHeaders(for: badRequest, payload: .streamingSigned, date: date)
            let badAuthorization = try #require(badSigned.first { $0.name.lowercased() == "authorization" }?.value)
            _ = badAuthorization
            let bad = try await s.send(
                "PUT", badPath, headers: headers + badSigned, sign: false, rawBody: body(tamper: true))
            #expect(bad.status == 403)
            #expect(bad.errorCode == "SignatureDoesNotMatch")
            #expect(try await s.send("HEAD", badPath).status == 404)
        }
    }

    @Test func unsignedPayloadWithChecksumTrailer() async throws {
        try await LiveStore.run { s in
            _ = try await s.send("PUT", "/bkt4")
            let data = randomBytes(100_000)
            func framed(checksum: String) -> [UInt8] {
                var out: [UInt8] = []
                for range in [0..<60_000, 60_000..<100_000] {
                    out += Array("\(String(range.count, radix: 16))\r\n".utf8) + Array(data[range]) + Array("\r\n".utf8)
                }
                out += Array("0\r\nx-amz-checksum-crc32:\(checksum)\r\n\r\n".utf8)
                return out
            }
            let headers: [(name: String, value: String)] = [
                ("content-encoding", "aws-chunked"), ("x-amz-decoded-content-length", String(data.count)),
                ("x-amz-trailer", "x-amz-checksum-crc32"),
            ]
            let checksum = base64(crc32(data))
            let good = try await s.send(
                "PUT", "/bkt4/trailer.bin", headers: headers, payload: .streamingUnsignedTrailer,
                rawBody: framed(checksum: checksum))
            #expect(good.status == 200, "\(good.text)")
            #expect(good.headers["x-amz-checksum-crc32"] == checksum)
            #expect(try await s.send("GET", "/bkt4/trailer.bin").body == data)

            let bad = try await s.send(
                "PUT", "/bkt4/bad.bin", headers: headers, payload: .streamingUnsignedTrailer,
                rawBody: framed(checksum: base64(crc32(data) ^ 1)))
            #expect(bad.status == 400)
            #expect(bad.errorCode == "BadDigest")
            #expect(try await s.send("HEAD", "/bkt4/bad.bin").status == 404)
        }
    }

    @Test func payloadHashMismatchStoresNothing() async throws {
        try await LiveStore.run { s in
            _ = try await s.send("PUT", "/bkt5")
            let reply = try await s.send(
                "PUT", "/bkt5/k", payload: .sha256(Array("something else".utf8)), rawBody: Array("actual body".utf8))
            #expect(reply.status == 400)
            #expect(reply.errorCode == "XAmzContentSHA256Mismatch")
            #expect(try await s.send("HEAD", "/bkt5/k").status == 404)
        }
    }

    @Test func authenticationFailures() async throws {
        try await LiveStore.run { s in
            _ = try await s.send("PUT", "/bkt6")
            let anonymous = try await s.send("GET", "/bkt6", sign: false)
            #expect(anonymous.status == 403)
            #expect(anonymous.errorCode == "AccessDenied")
            let unknown = try await s.send(
                "GET", "/bkt6", credentials: Credentials(accessKeyId: "NOPE", secretAccessKey: "x"))
            #expect(unknown.status == 403)
            #expect(unknown.errorCode == "InvalidAccessKeyId")
            let wrongSecret = try await s.send(
                "GET", "/bkt6",
                credentials: Credentials(accessKeyId: LiveStore.credentials.accessKeyId, secretAccessKey: "x"))
            #expect(wrongSecret.status == 403)
            #expect(wrongSecret.errorCode == "SignatureDoesNotMatch")
            let skewed = try await s.send("GET", "/bkt6", date: Date().addingTimeInterval(-3600))
            #expect(skewed.status == 403)
            #expect(skewed.errorCode == "RequestTimeTooSkewed")
        }
    }

    @Test func malformedBodiesGetS3Errors() async throws {
        try await LiveStore.run { s in
            _ = try await s.send("PUT", "/bkt7")
            let delete = try await s.send(
                "POST", "/bkt7", query: [("delete", "")], body: Array("<Delete><Object>".utf8))
            #expect(delete.status == 400)
            #expect(delete.errorCode == "MalformedXML")
            let upload = try await s.send("POST", "/bkt7/k", query: [("uploads", "")])
            #expect(upload.status == 200)
            let uploadID = try #require(
                upload.text.components(separatedBy: "<UploadId>").last?.components(separatedBy: "</UploadId>").first)
            let complete = try await s.send(
                "POST", "/bkt7/k", query: [("uploadId", uploadID)], body: Array("<CompleteMultipartUpload><Part>".utf8))
            #expect(complete.errorCode == "MalformedXML")
            let wrongPart = try await s.send(
                "PUT", "/bkt7/k", query: [("partNumber", "0"), ("uploadId", uploadID)], body: [1])
            #expect(wrongPart.errorCode == "InvalidArgument")
            let noUpload = try await s.send(
                "PUT", "/bkt7/k", query: [("partNumber", "1"), ("uploadId", "missing")], body: [1])
            #expect(noUpload.status == 404)
            #expect(noUpload.errorCode == "NoSuchUpload")
            let notImplemented = try await s.send("GET", "/bkt7", query: [("policy", "")])
            #expect(notImplemented.status == 501)
            let badBucket = try await s.send("PUT", "/Bad_Bucket")
            #expect(badBucket.errorCode == "InvalidBucketName")
            let noBucket = try await s.send("PUT", "/missing-bucket/k", body: [1])
            #expect(noBucket.errorCode == "NoSuchBucket")
            let longKey = try await s.send("PUT", "/bkt7/" + String(repeating: "k", count: 1025), body: [1])
            #expect(longKey.errorCode == "KeyTooLongError")
        }
    }

    @Test func listingV2WithDelimiterAndContinuation() async throws {
        try await LiveStore.run { s in
            _ = try await s.send("PUT", "/bkt8")
            var keys: [String] = []
            for i in 0..<12 { keys.append("dir\(i % 3)/file\(i)") }
            keys += ["root-a", "root-b"]
            for key in keys { _ = try await s.send("PUT", "/bkt8/" + key, body: [1]) }
            var token: String?
            var prefixes: [String] = []
            var contents: [String] = []
            var pages = 0
            repeat {
                var query: [(name: String, value: String)] = [
                    ("list-type", "2"), ("delimiter", "/"), ("max-keys", "2"),
                ]
                if let token { query.append(("continuation-token", token)) }
                let page = try await s.send("GET", "/bkt8", query: query)
                #expect(page.status == 200)
                prefixes += page.text.components(separatedBy: "<CommonPrefixes><Prefix>").dropFirst()
                    .map { String($0.prefix { $0 != "<" }) }
                contents += page.text.components(separatedBy: "<Contents><Key>").dropFirst()
                    .map { String($0.prefix { $0 != "<" }) }
                token = page.text.components(separatedBy: "<NextContinuationToken>").dropFirst().first
                    .map { String($0.prefix { $0 != "<" }) }
                pages += 1
            } while token != nil && pages < 20
            #expect(prefixes == ["dir0/", "dir1/", "dir2/"])
            #expect(contents == ["root-a", "root-b"])
            #expect(pages == 3)
        }
    }

    @Test func corsPreflightAndRestrictedOrigins() async throws {
        try await LiveStore.run(configure: { $0.cors = CORSConfiguration(allowedOrigins: ["http://app.example"]) }) {
            s in
            let ok = try await s.send(
                "OPTIONS", "/bkt9/k",
                headers: [("origin", "http://app.example"), ("access-control-request-method", "PUT")], sign: false)
            #expect(ok.status == 200)
            #expect(ok.headers["access-control-allow-origin"] == "http://app.example")
            let refused = try await s.send(
                "OPTIONS", "/bkt9/k",
                headers: [("origin", "http://evil.example"), ("access-control-request-method", "PUT")], sign: false)
            #expect(refused.status == 403)
        }
    }

    @Test func virtualHostStyleAddressing() async throws {
        try await LiveStore.run(configure: { $0.virtualHostDomain = "s3.localhost" }) { s in
            _ = try await s.send("PUT", "/vhost")
            _ = try await s.send("PUT", "/vhost/key.txt", body: Array("hello".utf8))
            let signer = SigV4Signer(credentials: LiveStore.credentials, region: "us-east-1")
            let host = "vhost.s3.localhost:\(s.port)"
            let request = SigningRequest(
                method: "GET", path: "/key.txt", query: [], headers: [(name: "host", value: host)])
            let signed = signer.signedHeaders(for: request, payload: .sha256([]), date: Date())
            let reply = try await s.send("GET", "/key.txt", headers: [("host", host)] + signed, sign: false)
            #expect(reply.status == 200, "\(reply.text)")
            #expect(reply.text == "hello")
        }
    }
}
