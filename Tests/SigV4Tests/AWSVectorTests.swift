import Foundation
import SigV4
import Testing

/// The published examples of the S3 API reference: "Signature Calculations for the Authorization Header:
/// Transferring Payload in a Single Chunk", "Authenticating Requests: Using Query Parameters",
/// "... Transferring Payload in Multiple Chunks", "... Including Trailing Headers" (SigV4), and
/// "Signing and authenticating REST requests" (SigV2). Values are copied verbatim from those pages.
@Suite struct AWSSigV4HeaderExamples {
    let signer = SigV4Signer(credentials: exampleCredentials, region: "us-east-1")
    let host = "examplebucket.s3.amazonaws.com"

    func authorization(_ headers: [(name: String, value: String)]) -> String {
        headers.first { $0.name == "authorization" }!.value
    }

    @Test func getObjectWithRange() throws {
        let request = SigningRequest(
            method: "GET", path: "/test.txt", headers: [("Host", host), ("Range", "bytes=0-9")])
        let headers = signer.signedHeaders(for: request, payload: .sha256Hex(PayloadSignature.emptySHA256), date: may24)
        #expect(
            authorization(headers)
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        )
        #expect(headers.contains { $0 == ("x-amz-date", "20130524T000000Z") })
        #expect(headers.contains { $0 == ("x-amz-content-sha256", PayloadSignature.emptySHA256) })

        // The request exactly as the documentation shows it.
        let incoming = IncomingRequest(
            method: "GET", rawPath: "/test.txt",
            headers: [
                ("Host", host),
                ("x-amz-date", "20130524T000000Z"),
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
                ),
                ("Range", "bytes=0-9"),
                ("x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ])
        let verified = try exampleVerifier().verify(incoming, now: may24)
        #expect(verified.accessKeyId == exampleAccessKey)
        #expect(verified.scheme == .sigV4Header)
        #expect(verified.sha256Hex == PayloadSignature.emptySHA256)
    }

    @Test func putObject() throws {
        let body = Array("Welcome to Amazon S3.".utf8)
        let payload = PayloadSignature.sha256(body)
        #expect(payload.headerValue == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        #expect(S3URIEncoding.encodePath("/test$file.text") == "/test%24file.text")
        let request = SigningRequest(
            method: "PUT", path: "/test%24file.text",
            headers: [
                ("Host", host), ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ])
        let headers = signer.signedHeaders(for: request, payload: payload, date: may24)
        #expect(
            authorization(headers)
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class, Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        )
        // Verify the doc request; the path arrives with '$' encoded.
        let incoming = IncomingRequest(
            method: "PUT", rawPath: "/test%24file.text",
            headers: [
                ("Host", host), ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class,Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
                ),
                ("x-amz-date", "20130524T000000Z"), ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("x-amz-content-sha256", "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"),
            ])
        let verified = try exampleVerifier().verify(incoming, now: may24)
        let (data, result) = try decodeBody(verified.payload, headers: incoming.headers, body: body)
        #expect(data == body)
        #expect(result.sha256Hex == payload.headerValue)
        // The same request with the '$' sent raw verifies too (decoded once, re-encoded once).
        var raw = incoming
        raw.rawPath = "/test$file.text"
        _ = try exampleVerifier().verify(raw, now: may24)
    }

    @Test func getBucketLifecycle() throws {
        let request = SigningRequest(method: "GET", path: "/", query: [("lifecycle", "")], headers: [("Host", host)])
        let headers = signer.signedHeaders(for: request, payload: .sha256Hex(PayloadSignature.emptySHA256), date: may24)
        #expect(
            signature(ofAuthorization: authorization(headers))
                == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
        let incoming = IncomingRequest(
            method: "GET", rawPath: "/", rawQuery: "lifecycle", headers: [("Host", host)] + headers)
        #expect(try exampleVerifier().verify(incoming, now: may24).scheme == .sigV4Header)
    }

    @Test func getBucketListObjects() throws {
        // Given out of canonical order: the canonical query sorts it.
        let request = SigningRequest(
            method: "GET", path: "/", query: [("prefix", "J"), ("max-keys", "2")], headers: [("Host", host)])
        let headers = signer.signedHeaders(for: request, payload: .sha256Hex(PayloadSignature.emptySHA256), date: may24)
        #expect(
            authorization(headers)
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        )
        let incoming = IncomingRequest(
            method: "GET", rawPath: "/", rawQuery: "max-keys=2&prefix=J", headers: [("Host", host)] + headers)
        _ = try exampleVerifier().verify(incoming, now: may24)
    }

    @Test func presignedGetObject() throws {
        let request = SigningRequest(method: "GET", path: "/test.txt", headers: [("Host", host)])
        let items = try signer.presignedQuery(for: request, expires: 86400, date: may24)
        #expect(
            SigV4Signer.encodeQuery(items)
                == "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        )
        let incoming = IncomingRequest(
            method: "GET",
            target:
                "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
            headers: [("Host", host)])
        let verified = try exampleVerifier().verify(incoming, now: may24.addingTimeInterval(86400))
        #expect(verified.scheme == .sigV4Query)
        #expect(verified.isUnsigned)
        expectError(.accessDenied, "Request has expired") {
            _ = try exampleVerifier().verify(incoming, now: may24.addingTimeInterval(86401))
        }
    }
}

@Suite struct AWSStreamingExamples {
    static let chunk1 = [UInt8](repeating: UInt8(ascii: "a"), count: 65536)
    static let chunk2 = [UInt8](repeating: UInt8(ascii: "a"), count: 1024)

    static func request(authorization: String, contentSHA: String, trailer: Bool) -> IncomingRequest {
        var headers: [(name: String, value: String)] = [
            ("Host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("Authorization", authorization),
            ("x-amz-content-sha256", contentSHA),
            ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
        ]
        if trailer { headers.append(("x-amz-trailer", "x-amz-checksum-crc32c")) }
        headers.append(("Content-Length", "66824"))
        return IncomingRequest(method: "PUT", rawPath: "/examplebucket/chunkObject.txt", headers: headers)
    }

    static let signedRequest = request(
        authorization:
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        contentSHA: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", trailer: false)

    static func frame(_ data: [UInt8], _ sig: String) -> [UInt8] {
        Array("\(String(data.count, radix: 16));chunk-signature=\(sig)\r\n".utf8) + data + Array("\r\n".utf8)
    }

    static let signedBody: [UInt8] =
        frame(chunk1, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648")
        + frame(chunk2, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497")
        + frame([], "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9")

    @Test func seedAndChunkSignatures() throws {
        #expect(Self.signedBody.count == 66824)  // the example's Content-Length
        let verified = try exampleVerifier().verify(Self.signedRequest, now: may24)
        let context = try #require(verified.chunkedContext)
        #expect(context.mode == .signed)
        #expect(context.seedSignature == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")

        // The client side reproduces the seed and the chunk signatures.
        let signer = SigV4Signer(credentials: exampleCredentials, region: "us-east-1")
        let signing = SigningRequest(
            method: "PUT", path: "/examplebucket/chunkObject.txt",
            headers: [
                ("Host", "s3.amazonaws.com"), ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                ("Content-Encoding", "aws-chunked"), ("x-amz-decoded-content-length", "66560"),
                ("Content-Length", "66824"),
            ])
        let seed = signer.sign(signing, payload: .streamingSigned, date: may24).signature
        #expect(seed == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")
        var chunks = signer.chunkSigner(seedSignature: seed, date: may24)
        #expect(chunks.sign(chunk: Self.chunk1) == "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648")
        #expect(chunks.sign(chunk: Self.chunk2) == "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497")
        #expect(chunks.sign(chunk: [UInt8]()) == "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9")
        var framer = signer.chunkSigner(seedSignature: seed, date: may24)
        #expect(
            framer.frame(chunk: Self.chunk1) + framer.frame(chunk: Self.chunk2) + framer.frame(chunk: [])
                == Self.signedBody)
    }

    @Test(arguments: [nil, 1, 2, 3] as [UInt64?])
    func decodesSignedBody(seed: UInt64?) throws {
        let verified = try exampleVerifier().verify(Self.signedRequest, now: may24)
        let (data, result) = try decodeBody(
            verified.payload, headers: Self.signedRequest.headers, body: Self.signedBody, seed: seed)
        #expect(data == Self.chunk1 + Self.chunk2)
        #expect(result.decodedLength == 66560)
        #expect(result.trailers.isEmpty)
    }

    @Test func signedBodyTampering() throws {
        let verified = try exampleVerifier().verify(Self.signedRequest, now: may24)
        var flipped = Self.signedBody
        flipped[100] = UInt8(ascii: "b")
        expectError(.signatureDoesNotMatch) {
            _ = try decodeBody(verified.payload, headers: Self.signedRequest.headers, body: flipped)
        }
        // Drop the final chunk: the chain is incomplete.
        let truncated = Array(Self.signedBody.dropLast(86))
        expectError(.incompleteBody) {
            _ = try decodeBody(verified.payload, headers: Self.signedRequest.headers, body: truncated)
        }
        // Swap the two data chunks (each keeps its own signature): the chain breaks.
        let swapped =
            Self.frame(Self.chunk2, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497")
            + Self.frame(Self.chunk1, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648")
            + Self.frame([], "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9")
        expectError(.signatureDoesNotMatch) {
            _ = try decodeBody(verified.payload, headers: Self.signedRequest.headers, body: swapped)
        }
    }

    // "Including Trailing Headers" example. The documentation's canonical request signs
    // content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer
    // (its "resulting Authorization header" line lists a different set, inconsistent with the seed it shows;
    // the seed 106e2a8a... matches the canonical request, so that list is used here).
    static let trailerRequest = request(
        authorization:
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer,Signature=106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
        contentSHA: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", trailer: true)

    static let trailerBody: [UInt8] =
        frame(chunk1, "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2")
        + frame(chunk2, "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7")
        + Array("0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n".utf8)
        + Array("x-amz-checksum-crc32c:sOO8/Q==\r\n".utf8)
        + Array("x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n\r\n".utf8)

    @Test(arguments: [nil, 7, 8] as [UInt64?])
    func signedTrailer(seed: UInt64?) throws {
        let verified = try exampleVerifier().verify(Self.trailerRequest, now: may24)
        #expect(verified.chunkedContext?.mode == .signedWithTrailer)
        let (data, result) = try decodeBody(
            verified.payload, headers: Self.trailerRequest.headers, body: Self.trailerBody, seed: seed)
        #expect(data.count == 66560)
        #expect(result.trailers.count == 1)
        #expect(result.trailers.first! == ("x-amz-checksum-crc32c", "sOO8/Q=="))
        #expect(result.checksums == ["x-amz-checksum-crc32c": "sOO8/Q=="])
        #expect(Checksums.base64(.crc32c, data) == "sOO8/Q==")
    }

    @Test func signedTrailerClientSide() throws {
        let signer = SigV4Signer(credentials: exampleCredentials, region: "us-east-1")
        var chunks = signer.chunkSigner(
            seedSignature: "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e", date: may24)
        #expect(chunks.sign(chunk: Self.chunk1) == "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2")
        #expect(chunks.sign(chunk: Self.chunk2) == "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7")
        #expect(chunks.sign(chunk: [UInt8]()) == "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992")
        #expect(
            chunks.signTrailer([("x-amz-checksum-crc32c", "sOO8/Q==")])
                == "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435")
    }

    @Test func signedTrailerVariantsAndTampering() throws {
        let verified = try exampleVerifier().verify(Self.trailerRequest, now: may24)
        let headers = Self.trailerRequest.headers
        // As the documentation lists it: no blank line after the trailer signature.
        _ = try decodeBody(verified.payload, headers: headers, body: Array(Self.trailerBody.dropLast(2)))
        // A blank line between the final chunk and the trailers is tolerated.
        let prefix =
            Self.frame(Self.chunk1, "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2")
            + Self.frame(Self.chunk2, "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7")
        let finalChunk = Array(
            "0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n".utf8)
        let sigLine = Array(
            "x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n".utf8)
        _ = try decodeBody(
            verified.payload, headers: headers,
            body: prefix + finalChunk + Array("\r\nx-amz-checksum-crc32c:sOO8/Q==\r\n".utf8) + sigLine, seed: 3)
        // A different checksum value breaks the trailer signature.
        expectError(.signatureDoesNotMatch) {
            _ = try decodeBody(
                verified.payload, headers: headers,
                body: prefix + finalChunk + Array("x-amz-checksum-crc32c:AAAAAA==\r\n".utf8) + sigLine)
        }
        // No trailer signature.
        expectError(.signatureDoesNotMatch) {
            _ = try decodeBody(
                verified.payload, headers: headers,
                body: prefix + finalChunk + Array("x-amz-checksum-crc32c:sOO8/Q==\r\n\r\n".utf8))
        }
        // Checksum sent and signed correctly but over other data: rebuild the chain with ChunkSigner.
        let signer = SigV4Signer(credentials: exampleCredentials, region: "us-east-1")
        var chain = signer.chunkSigner(
            seedSignature: "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e", date: may24)
        let body =
            chain.frame(chunk: Self.chunk1) + chain.frame(chunk: Self.chunk2)
            + chain.frameFinalChunkBeforeTrailer()
            + chain.frameTrailer([("x-amz-checksum-crc32c", Checksums.base64(.crc32c, Array("other".utf8)))])
        expectError(.badDigest, "The CRC32C you specified did not match the calculated checksum.") {
            _ = try decodeBody(verified.payload, headers: headers, body: body)
        }
    }
}

@Suite struct AWSSigV2Examples {
    func verify(
        _ method: String, _ target: String, _ headers: [(name: String, value: String)], bucket: String? = nil,
        now: Date
    ) throws -> VerifiedRequest {
        var request = IncomingRequest(method: method, target: target, headers: headers)
        request.virtualHostedBucket = bucket
        return try exampleVerifier().verify(request, now: now)
    }

    @Test func objectGet() throws {
        let v = try verify(
            "GET", "/photos/puppy.jpg",
            [
                ("Host", "awsexamplebucket1.us-west-1.s3.amazonaws.com"), ("Date", "Tue, 27 Mar 2007 19:36:42 +0000"),
                ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:qgk2+6Sv9/oM7G3qLEjTH1a1l1g="),
            ], bucket: "awsexamplebucket1", now: utc(2007, 3, 27, 19, 40))
        #expect(v.scheme == .sigV2Header)
        #expect(v.accessKeyId == exampleAccessKey)
        #expect(v.isUnsigned)
        // Without the bucket in the canonical resource it does not verify.
        expectError(.signatureDoesNotMatch) {
            _ = try verify(
                "GET", "/photos/puppy.jpg",
                [
                    ("Date", "Tue, 27 Mar 2007 19:36:42 +0000"),
                    ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:qgk2+6Sv9/oM7G3qLEjTH1a1l1g="),
                ], now: utc(2007, 3, 27, 19, 40))
        }
        expectError(.requestTimeTooSkewed) {
            _ = try verify(
                "GET", "/photos/puppy.jpg",
                [
                    ("Date", "Tue, 27 Mar 2007 19:36:42 +0000"),
                    ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:qgk2+6Sv9/oM7G3qLEjTH1a1l1g="),
                ], bucket: "awsexamplebucket1", now: utc(2007, 3, 27, 20, 0))
        }
    }

    @Test func objectPut() throws {
        _ = try verify(
            "PUT", "/photos/puppy.jpg",
            [
                ("Content-Type", "image/jpeg"), ("Content-Length", "94328"),
                ("Host", "awsexamplebucket1.s3.us-west-1.amazonaws.com"), ("Date", "Tue, 27 Mar 2007 21:15:45 +0000"),
                ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:iqRzw+ileNPu1fhspnRs8nOjjIA="),
            ], bucket: "awsexamplebucket1", now: utc(2007, 3, 27, 21, 15, 45))
    }

    @Test func list() throws {
        _ = try verify(
            "GET", "/?prefix=photos&max-keys=50&marker=puppy",
            [
                ("User-Agent", "Mozilla/5.0"), ("Host", "awsexamplebucket1.s3.us-west-1.amazonaws.com"),
                ("Date", "Tue, 27 Mar 2007 19:42:41 +0000"),
                ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:m0WP8eCtspQl5Ahe6L1SozdX9YA="),
            ], bucket: "awsexamplebucket1", now: utc(2007, 3, 27, 19, 42, 41))
    }

    @Test func fetchACL() throws {
        _ = try verify(
            "GET", "/?acl",
            [
                ("Host", "awsexamplebucket1.s3.us-west-1.amazonaws.com"), ("Date", "Tue, 27 Mar 2007 19:44:46 +0000"),
                ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:82ZHiFIjc+WbcwFKGUVEQspPn+0="),
            ], bucket: "awsexamplebucket1", now: utc(2007, 3, 27, 19, 44, 46))
    }

    @Test func deleteWithXAmzDate() throws {
        // Path style; x-amz-date overrides Date. The documentation's string to sign puts the x-amz-date value in
        // the Date position, which the verifier accepts besides the usual form (empty Date, x-amz-date header).
        _ = try verify(
            "DELETE", "/awsexamplebucket1/photos/puppy.jpg",
            [
                ("User-Agent", "dotnet"), ("Host", "s3.us-west-1.amazonaws.com"),
                ("Date", "Tue, 27 Mar 2007 21:20:27 +0000"), ("x-amz-date", "Tue, 27 Mar 2007 21:20:26 +0000"),
                ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:XbyTlbQdu9Xw5o8P4iMwPktxQd8="),
            ], now: utc(2007, 3, 27, 21, 20, 26))
    }

    @Test func uploadWithMetadata() throws {
        _ = try verify(
            "PUT", "/db-backup.dat.gz",
            [
                ("User-Agent", "curl/7.15.5"), ("Host", "static.awsexamplebucket1.net:8080"),
                ("Date", "Tue, 27 Mar 2007 21:06:08 +0000"), ("x-amz-acl", "public-read"),
                ("content-type", "application/x-download"), ("Content-MD5", "4gJE4saaMU4BqNR0kLY+lw=="),
                ("X-Amz-Meta-ReviewedBy", "joe@awsexamplebucket1.net"),
                ("X-Amz-Meta-ReviewedBy", "jane@awsexamplebucket1.net"),
                ("X-Amz-Meta-FileChecksum", "0x02661779"), ("X-Amz-Meta-ChecksumAlgorithm", "crc32"),
                ("Content-Disposition", "attachment; filename=database.dat"), ("Content-Encoding", "gzip"),
                ("Content-Length", "5913339"),
                ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:dKZcB+bz2EPXgSdXZp9ozGeOM4I="),
            ], bucket: "static.awsexamplebucket1.net", now: utc(2007, 3, 27, 21, 6, 8))
    }

    @Test func listAllMyBuckets() throws {
        _ = try verify(
            "GET", "/",
            [
                ("Host", "s3.us-west-1.amazonaws.com"), ("Date", "Wed, 28 Mar 2007 01:29:59 +0000"),
                ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:qGdzdERIC03wnaRNKh6OqZehG9s="),
            ], now: utc(2007, 3, 28, 1, 29, 59))
    }

    @Test func unicodeKeysTakenLiterally() throws {
        _ = try verify(
            "GET", "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re",
            [
                ("Host", "s3.us-west-1.amazonaws.com"), ("Date", "Wed, 28 Mar 2007 01:49:49 +0000"),
                ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:DNEZGsoieTZ92F3bUfSPQcbGmlM="),
            ], now: utc(2007, 3, 28, 1, 49, 49))
    }

    @Test func queryStringAuthentication() throws {
        // The documentation's query example (Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D, Expires=1175139620) was
        // computed for the resource /johnsmith/photos/puppy.jpg (the bucket the page used before it was renamed
        // awsexamplebucket1; recomputed with Python hmac/hashlib: only "johnsmith" yields this value).
        let target =
            "/photos/puppy.jpg?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D&Expires=1175139620"
        let headers: [(name: String, value: String)] = [("Host", "johnsmith.s3.amazonaws.com")]
        let before = Date(timeIntervalSince1970: 1_175_139_000)
        let v = try verify("GET", target, headers, bucket: "johnsmith", now: before)
        #expect(v.scheme == .sigV2Query)
        #expect(v.accessKeyId == exampleAccessKey)
        expectError(.accessDenied, "Request has expired") {
            _ = try verify("GET", target, headers, bucket: "johnsmith", now: Date(timeIntervalSince1970: 1_175_139_621))
        }
        expectError(.signatureDoesNotMatch) {
            _ = try verify("GET", target, headers, bucket: "awsexamplebucket1", now: before)
        }
    }
}
