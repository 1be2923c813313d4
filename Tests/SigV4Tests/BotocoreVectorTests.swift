import Foundation
import SigV4
import Testing

/// Requests produced by botocore 1.43.11 (Python) with the AWS example credentials against custom endpoints
/// (path-style), captured before sending, and pasted here as fixed vectors. Bodies are `patternData(n)`.
/// Generated at 2026-11-25T15:22:13Z (epoch 1795620133).
@Suite struct BotocoreVectors {
    static let when = Date(timeIntervalSince1970: 1_795_620_133)

    @Test func putObjectOverHTTPSUsesUnsignedTrailerWithCRC32() throws {
        let headers: [(name: String, value: String)] = [
            ("Host", "127.0.0.1:9443"),
            ("x-amz-sdk-checksum-algorithm", "CRC32"),
            ("User-Agent", "Botocore/1.43.11 ua/2.1 os/linux md/arch#x86_64 lang/python#3.11.7"),
            ("Expect", "100-continue"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Encoding", "aws-chunked"),
            ("X-Amz-Trailer", "x-amz-checksum-crc32"),
            ("X-Amz-Decoded-Content-Length", "2500000"),
            ("X-Amz-Date", "20261125T152213Z"),
            ("X-Amz-Content-SHA256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261125/us-east-1/s3/aws4_request, SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-sdk-checksum-algorithm;x-amz-trailer, Signature=7f2affdd504d5694cc4a4d4848b4d519107b1b7681b0c14a6c9dd7f3b4ab0ddb"
            ),
            ("amz-sdk-invocation-id", "82c06689-6022-4398-9b59-bd63a089c903"),
            ("amz-sdk-request", "attempt=1"),
        ]
        let request = IncomingRequest(method: "PUT", rawPath: "/bkt/vid/a%20b.mp4", headers: headers)
        let verified = try exampleVerifier().verify(request, now: Self.when.addingTimeInterval(30))
        #expect(verified.chunkedContext?.mode == .unsignedWithTrailer)

        // botocore's framing: 1 MiB chunks, "hex\r\n data \r\n", "0\r\n", trailer, blank line.
        let data = patternData(2_500_000)
        var body = [UInt8]()
        for start in stride(from: 0, to: data.count, by: 0x100000) {
            body += AWSChunkedEncoding.frameUnsigned(chunk: data[start..<min(start + 0x100000, data.count)])
        }
        body += Array("0\r\nx-amz-checksum-crc32:U1nQ+g==\r\n\r\n".utf8)
        #expect(body.count == 2_500_065)  // botocore's encoded length
        #expect(Array(body.prefix(8)) == Array("100000\r\n".utf8))
        let (decoded, result) = try decodeBody(verified.payload, headers: headers, body: body, seed: 42)
        #expect(decoded == data)
        #expect(result.checksums == ["x-amz-checksum-crc32": "U1nQ+g=="])

        var bad = body
        bad[500_000] ^= 1
        expectError(.badDigest, "The CRC32 you specified did not match the calculated checksum.") {
            _ = try decodeBody(verified.payload, headers: headers, body: bad)
        }
    }

    static let putHeaders: [(name: String, value: String)] = [
        ("Host", "127.0.0.1:9000"),
        ("x-amz-meta-title", "  spaced   out  "),
        ("Content-Type", "video/quicktime"),
        ("User-Agent", "Botocore/1.43.11"),
        ("Expect", "100-continue"),
        ("x-amz-checksum-crc32", "ovknYw=="),
        ("x-amz-sdk-checksum-algorithm", "CRC32"),
        ("X-Amz-Date", "20261125T152213Z"),
        ("X-Amz-Content-SHA256", "a9425c416f534025a4e2422bd14adba4ec3d4a68d10c3329be8df612964d2b6e"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261125/eu-west-3/s3/aws4_request, SignedHeaders=content-type;host;x-amz-checksum-crc32;x-amz-content-sha256;x-amz-date;x-amz-meta-title;x-amz-sdk-checksum-algorithm, Signature=6f9b98921a8f6a81db57d773c48bbf78d6052e458217db7ea00492706ed6af1d"
        ),
        ("amz-sdk-invocation-id", "a49e513d-6fca-4757-a02c-12189f14b33d"),
        ("amz-sdk-request", "attempt=1"),
        ("Content-Length", "1000"),
    ]

    @Test func putObjectWithUnicodeKeySignedPayloadAndChecksumHeader() throws {
        let request = IncomingRequest(
            method: "PUT", rawPath: "/bkt/dir/%C3%BCn%C3%AF%20code%2Bx~y.mov", headers: Self.putHeaders)
        let verifier = exampleVerifier(region: "eu-west-3")
        let verified = try verifier.verify(request, now: Self.when)
        #expect(verified.sha256Hex == "a9425c416f534025a4e2422bd14adba4ec3d4a68d10c3329be8df612964d2b6e")
        let (data, result) = try decodeBody(
            verified.payload, headers: Self.putHeaders, body: patternData(1000), seed: 5)
        #expect(data == patternData(1000))
        #expect(result.checksums["x-amz-checksum-crc32"] == "ovknYw==")

        var other = patternData(1000)
        other[999] ^= 0xFF
        expectError(.xAmzContentSHA256Mismatch) {
            _ = try decodeBody(verified.payload, headers: Self.putHeaders, body: other)
        }
        // Our signer produces the same signature for the same request.
        let signer = SigV4Signer(credentials: exampleCredentials, region: "eu-west-3")
        let signing = SigningRequest(
            method: "PUT", path: S3URIEncoding.encodePath("/bkt/dir/ünï code+x~y.mov"),
            headers: Self.putHeaders.filter {
                ["host", "x-amz-meta-title", "content-type", "x-amz-checksum-crc32", "x-amz-sdk-checksum-algorithm"]
                    .contains($0.name.lowercased())
            })
        #expect(signing.path == "/bkt/dir/%C3%BCn%C3%AF%20code%2Bx~y.mov")
        let auth = signer.signedHeaders(
            for: signing, payload: .sha256(patternData(1000)), date: Self.when
        ).first { $0.name == "authorization" }!.value
        #expect(signature(ofAuthorization: auth) == "6f9b98921a8f6a81db57d773c48bbf78d6052e458217db7ea00492706ed6af1d")
        // Wrong region configured: AuthorizationHeaderMalformed.
        expectError(.authorizationHeaderMalformed) {
            _ = try exampleVerifier(region: "us-east-1").verify(request, now: Self.when)
        }
    }

    @Test func listObjectsV2WithEncodedQuery() throws {
        let request = IncomingRequest(
            method: "GET",
            target: "/bkt?list-type=2&prefix=a%20b%2F&delimiter=%2F&start-after=x%3Dy%26z&encoding-type=url",
            headers: [
                ("Host", "127.0.0.1:9000"),
                ("User-Agent", "Botocore/1.43.11"),
                ("X-Amz-Date", "20261125T152213Z"),
                ("X-Amz-Content-SHA256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261125/eu-west-3/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=71bcfe067458ad3628cbfa7f209d1e7e8006f01ce0d3df56922167c6ee9e142e"
                ),
            ])
        _ = try exampleVerifier(region: "eu-west-3").verify(request, now: Self.when)
    }

    @Test func presignedSigV4WithResponseOverride() throws {
        let target =
            "/bkt/a%20b/c%2Bd~e?response-content-disposition=attachment%3B%20filename%3D%22x%20y.mp4%22&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261125%2Feu-west-3%2Fs3%2Faws4_request&X-Amz-Date=20261125T152213Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=67b8f9319885c5ce57effded5f6caac89cd39877ba5a3b3209672c74f518d3ed"
        let request = IncomingRequest(method: "GET", target: target, headers: [("Host", "127.0.0.1:9000")])
        let verifier = exampleVerifier(region: "eu-west-3")
        #expect(try verifier.verify(request, now: Self.when.addingTimeInterval(900)).scheme == .sigV4Query)
        expectError(.accessDenied, "Request has expired") {
            _ = try verifier.verify(request, now: Self.when.addingTimeInterval(901))
        }
        // Our presigner produces the same URL.
        let signer = SigV4Signer(credentials: exampleCredentials, region: "eu-west-3")
        let items = try signer.presignedQuery(
            for: SigningRequest(
                method: "GET", path: S3URIEncoding.encodePath("/bkt/a b/c+d~e"),
                query: [("response-content-disposition", "attachment; filename=\"x y.mp4\"")],
                headers: [("host", "127.0.0.1:9000")]),
            expires: 900, date: Self.when)
        #expect("/bkt/a%20b/c%2Bd~e?" + SigV4Signer.encodeQuery(items) == target)
    }

    @Test func sigV2HeaderGet() throws {
        let request = IncomingRequest(
            method: "GET", rawPath: "/bkt/a%20b/%C3%BCn%C3%AF%2B~",
            headers: [
                ("Host", "127.0.0.1:9000"),
                ("Range", "bytes=0-9"),
                ("x-amz-checksum-mode", "ENABLED"),
                ("User-Agent", "Botocore/1.43.11"),
                ("Date", "Wed, 25 Nov 2026 15:22:13 GMT"),
                ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:xYRK7tEuPW/Fkw6jaq5VNPVa3bQ="),
            ])
        let v = try exampleVerifier().verify(request, now: Self.when)
        #expect(v.scheme == .sigV2Header)
    }

    @Test func sigV2HeaderPut() throws {
        let headers: [(name: String, value: String)] = [
            ("Host", "127.0.0.1:9000"),
            ("Content-Type", "text/plain"),
            ("x-amz-meta-a", "b"),
            ("Expect", "100-continue"),
            ("x-amz-checksum-crc32", "NhCmhg=="),
            ("x-amz-sdk-checksum-algorithm", "CRC32"),
            ("Date", "Wed, 25 Nov 2026 15:22:13 GMT"),
            ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:/1dB0DFopUUTfu01nVGVPpGkuxU="),
            ("Content-Length", "5"),
        ]
        let v = try exampleVerifier().verify(
            IncomingRequest(method: "PUT", rawPath: "/bkt/k", headers: headers), now: Self.when)
        // SigV2 does not sign the body, but the checksum header is still checked.
        let (_, result) = try decodeBody(v.payload, headers: headers, body: Array("hello".utf8))
        #expect(result.checksums["x-amz-checksum-crc32"] == "NhCmhg==")
        expectError(.badDigest) { _ = try decodeBody(v.payload, headers: headers, body: Array("hellO".utf8)) }
    }

    @Test func sigV2PresignedGetWithSubresource() throws {
        // botocore HmacV1QueryAuth (generate_presigned_url with signature_version='s3'): the canonical resource
        // is the encoded path plus "?versionId=v/1+2" (value decoded).
        let target =
            "/bkt/a%20b/c%2Bd~e?versionId=v%2F1%2B2&AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=UzAwdtY8glxA4pc0X5K29lLHw70%3D&Expires=1795623733"
        let request = IncomingRequest(method: "GET", target: target, headers: [("Host", "127.0.0.1:9000")])
        let v = try exampleVerifier().verify(request, now: Self.when)
        #expect(v.scheme == .sigV2Query)
        expectError(.accessDenied, "Request has expired") {
            _ = try exampleVerifier().verify(request, now: Date(timeIntervalSince1970: 1_795_623_734))
        }
        var tampered = request
        tampered.rawPath = "/bkt/a%20b/c%2Bd~f"
        expectError(.signatureDoesNotMatch) { _ = try exampleVerifier().verify(tampered, now: Self.when) }
    }

    /// `generate_presigned_url('get_object', ...)` with a custom endpoint and the default config (region
    /// us-east-1) gives a SigV2 (HmacV1QueryAuth) URL; the same signature results path-style and
    /// virtual-hosted ("bkt.s3.local"), and with a session token it travels as x-amz-security-token.
    @Test func sigV2PresignedDefaultConfig() throws {
        let now = Date(timeIntervalSince1970: 1_795_621_334)
        let query = "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=nlyj%2BPHWRrz8oqGKM3FC4JAGwaY%3D&Expires=1795624934"
        let pathStyle = IncomingRequest(
            method: "GET", target: "/bkt/a%20b/c%2Bd~e?" + query, headers: [("Host", "127.0.0.1:9000")])
        #expect(try exampleVerifier().verify(pathStyle, now: now).scheme == .sigV2Query)
        var virtualHosted = IncomingRequest(
            method: "GET", target: "/a%20b/c%2Bd~e?" + query, headers: [("Host", "bkt.s3.local:9000")])
        virtualHosted.virtualHostedBucket = "bkt"
        #expect(try exampleVerifier().verify(virtualHosted, now: now).scheme == .sigV2Query)
        let withToken = IncomingRequest(
            method: "GET",
            target:
                "/bkt/k?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=JFliCFOvl%2FeybHVlWl6fEVouk%2FE%3D&x-amz-security-token=SESSIONTOKEN%2F%2B%3D&Expires=1795624934",
            headers: [("Host", "127.0.0.1:9000")])
        let v = try exampleVerifier().verify(withToken, now: now)
        #expect(v.sessionToken == "SESSIONTOKEN/+=")
        expectError(.accessDenied, "Request has expired") {
            _ = try exampleVerifier().verify(pathStyle, now: Date(timeIntervalSince1970: 1_795_624_935))
        }
    }

    @Test func sigV2PresignedPutWithContentType() throws {
        // botocore moves the signed Content-Type into the query string ("content-type=video%2Fmp4").
        let target =
            "/bkt/up.mp4?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=dDPzeQUiNxQtzzSHHEpM8BHqGaU%3D&content-type=video%2Fmp4&Expires=1795623733"
        for headers in [[("Host", "127.0.0.1:9000")], [("Host", "127.0.0.1:9000"), ("Content-Type", "video/mp4")]] {
            let v = try exampleVerifier().verify(
                IncomingRequest(method: "PUT", target: target, headers: headers), now: Self.when)
            #expect(v.scheme == .sigV2Query)
        }
    }
}
