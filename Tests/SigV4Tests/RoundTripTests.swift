import Foundation
import SigV4
import Testing

@Suite struct HeaderRoundTrips {
    let credentials = Credentials(accessKeyId: "CINESCALEKEY", secretAccessKey: "s3cr3t/with+chars=")
    let now = utc(2025, 6, 1, 12, 30, 15)
    var signer: SigV4Signer { SigV4Signer(credentials: credentials, region: "eu-central-1") }
    var verifier: SigV4Verifier {
        let c = credentials
        return SigV4Verifier(region: "eu-central-1") { $0 == c.accessKeyId ? c.secretAccessKey : nil }
    }

    /// Signs a request for `key` and returns what the server would receive.
    func signed(
        method: String = "GET", key: String, query: [(name: String, value: String)] = [],
        extraHeaders: [(name: String, value: String)] = [], payload: PayloadSignature = .unsignedPayload,
        signer: SigV4Signer? = nil, date: Date? = nil
    ) -> IncomingRequest {
        let path = S3URIEncoding.encodePath("/media/" + key)
        let headers = [("Host", "localhost:9000")] + extraHeaders
        let request = SigningRequest(method: method, path: path, query: query, headers: headers)
        let added = (signer ?? self.signer).signedHeaders(for: request, payload: payload, date: date ?? now)
        let rawQuery = query.isEmpty ? nil : SigV4Signer.encodeQuery(query)
        return IncomingRequest(method: method, rawPath: path, rawQuery: rawQuery, headers: headers + added)
    }

    static let keys = [
        "plain.mp4", "a b/c+d~e", "vidéo/😀 clip.mov", "../up/../x", "double//slash", "trailing/", "%41 literal percent",
        "sym!*'();:@&=+$,?#[]", "tab\tand\nnewline", "",
    ]

    @Test(arguments: keys)
    func keyEncodings(key: String) throws {
        let request = signed(key: key, query: [("x-id", "GetObject"), ("a b", "c/d+e")])
        let v = try verifier.verify(request, now: now)
        #expect(v.accessKeyId == "CINESCALEKEY")
        #expect(v.scheme == .sigV4Header)
        #expect(v.isUnsigned)
    }

    @Test func encodesKeysLikeS3() {
        #expect(S3URIEncoding.encodePath("a b/c+d~e") == "a%20b/c%2Bd~e")
        #expect(S3URIEncoding.encodePath("/x/../y//z") == "/x/../y//z")
        #expect(S3URIEncoding.encodePath("vidéo/😀") == "vid%C3%A9o/%F0%9F%98%80")
        #expect(S3URIEncoding.encode("a/b c", encodeSlash: true) == "a%2Fb%20c")
        #expect(S3URIEncoding.encode("AZaz09-._~", encodeSlash: true) == "AZaz09-._~")
        #expect(S3URIEncoding.decode("a%20b/c%2Bd~e") == "a b/c+d~e")
        #expect(S3URIEncoding.decode("a+b") == "a+b")
        #expect(S3URIEncoding.decode("bad%2") == nil)
        #expect(S3URIEncoding.decode("bad%zz") == nil)
        #expect(S3URIEncoding.decode("%FF") == nil)  // not UTF-8
        let q = S3URIEncoding.decodeQuery("b=2&a&c=x+y%2Bz&&d=&e=%3D%26")
        #expect(q.map(\.name) == ["b", "a", "c", "d", "e"])
        #expect(q.map(\.value) == ["2", "", "x y+z", "", "=&"])
        #expect(SigV4Signer.encodeQuery([("a b", "c/d"), ("e", "")]) == "a%20b=c%2Fd&e=")
    }

    @Test func sessionTokenIsSignedAndReported() throws {
        let withToken = SigV4Signer(
            credentials: Credentials(
                accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey,
                sessionToken: "FwoGZXIvYXdzEJr//token=="),
            region: "eu-central-1")
        let request = signed(key: "k", signer: withToken)
        #expect(request.headers.contains { $0.name == "x-amz-security-token" })
        let v = try verifier.verify(request, now: now)
        #expect(v.sessionToken == "FwoGZXIvYXdzEJr//token==")
    }

    @Test func headerValuesAreCanonicalised() throws {
        var request = signed(key: "k", extraHeaders: [("X-Amz-Meta-Note", "  two   words\t here ")])
        _ = try verifier.verify(request, now: now)
        // Whitespace changes that canonicalise the same still verify; others do not.
        request.headers = request.headers.map {
            $0.name == "X-Amz-Meta-Note" ? ($0.name, "two words here") : $0
        }
        _ = try verifier.verify(request, now: now)
        request.headers = request.headers.map { $0.name == "X-Amz-Meta-Note" ? ($0.name, "two words there") : $0 }
        expectError(.signatureDoesNotMatch) { _ = try verifier.verify(request, now: now) }
    }

    @Test func duplicateHeadersAreJoined() throws {
        let request = signed(key: "k", extraHeaders: [("x-amz-meta-tag", "a"), ("X-Amz-Meta-Tag", "b")])
        _ = try verifier.verify(request, now: now)
        var swapped = request
        swapped.headers = request.headers.map {
            $0.name == "x-amz-meta-tag" ? ($0.name, "b") : $0.name == "X-Amz-Meta-Tag" ? ($0.name, "a") : $0
        }
        expectError(.signatureDoesNotMatch) { _ = try verifier.verify(swapped, now: now) }
    }

    @Test func tamperingIsRejected() throws {
        let base = signed(
            method: "PUT", key: "movie.mp4", query: [("partNumber", "1")],
            extraHeaders: [("x-amz-meta-x", "1")], payload: .sha256(Array("body".utf8)))
        _ = try verifier.verify(base, now: now)

        func mutateHeader(_ name: String, _ f: (String) -> String) -> IncomingRequest {
            var r = base
            r.headers = r.headers.map { $0.name.lowercased() == name ? ($0.name, f($0.value)) : $0 }
            return r
        }
        // Signature
        let badSig = mutateHeader("authorization") { v in
            let last = v.last == "0" ? "1" : "0"
            return String(v.dropLast()) + last
        }
        expectError(.signatureDoesNotMatch) { _ = try verifier.verify(badSig, now: now) }
        // Date moved by one second (same day, within skew).
        let badDate = mutateHeader("x-amz-date") { _ in "20250601T123016Z" }
        expectError(.signatureDoesNotMatch) { _ = try verifier.verify(badDate, now: now) }
        // Date of another day: the credential scope no longer matches.
        let otherDay = mutateHeader("x-amz-date") { _ in "20250602T123015Z" }
        expectError(.authorizationHeaderMalformed) { _ = try verifier.verify(otherDay, now: now) }
        // Path
        var badPath = base
        badPath.rawPath = "/media/movie.mp5"
        expectError(.signatureDoesNotMatch) { _ = try verifier.verify(badPath, now: now) }
        // Query
        var badQuery = base
        badQuery.rawQuery = "partNumber=2"
        expectError(.signatureDoesNotMatch) { _ = try verifier.verify(badQuery, now: now) }
        // Signed header
        expectError(.signatureDoesNotMatch) {
            _ = try verifier.verify(mutateHeader("x-amz-meta-x") { _ in "2" }, now: now)
        }
        expectError(.signatureDoesNotMatch) {
            _ = try verifier.verify(mutateHeader("host") { _ in "evil:9000" }, now: now)
        }
        // Payload hash
        let badHash = mutateHeader("x-amz-content-sha256") { _ in PayloadSignature.emptySHA256 }
        expectError(.signatureDoesNotMatch) { _ = try verifier.verify(badHash, now: now) }
        // Method
        var badMethod = base
        badMethod.method = "DELETE"
        expectError(.signatureDoesNotMatch) { _ = try verifier.verify(badMethod, now: now) }
        // Wrong secret
        let wrong = SigV4Verifier(region: "eu-central-1") { _ in "another secret" }
        let e = expectError(.signatureDoesNotMatch) { _ = try wrong.verify(base, now: now) }
        #expect(e?.canonicalRequest?.hasPrefix("PUT\n/media/movie.mp4\npartNumber=1\n") == true)
        #expect(e?.httpStatus == 403)
        // Unknown key
        let none = SigV4Verifier(region: "eu-central-1") { _ in nil }
        expectError(.invalidAccessKeyId) { _ = try none.verify(base, now: now) }
        // Region
        let otherRegion = SigV4Verifier(region: "us-east-1") { _ in "x" }
        expectError(.authorizationHeaderMalformed) { _ = try otherRegion.verify(base, now: now) }
        // Body
        let v = try verifier.verify(base, now: now)
        expectError(.xAmzContentSHA256Mismatch) {
            _ = try decodeBody(v.payload, headers: base.headers, body: Array("bodY".utf8))
        }
        _ = try decodeBody(v.payload, headers: base.headers, body: Array("body".utf8), seed: 1)
    }

    @Test func clockSkew() throws {
        let request = signed(key: "k")
        _ = try verifier.verify(request, now: now.addingTimeInterval(900))
        _ = try verifier.verify(request, now: now.addingTimeInterval(-900))
        expectError(.requestTimeTooSkewed) { _ = try verifier.verify(request, now: now.addingTimeInterval(901)) }
        expectError(.requestTimeTooSkewed) { _ = try verifier.verify(request, now: now.addingTimeInterval(-901)) }
    }

    @Test func requiredPieces() throws {
        let request = signed(key: "k")
        func without(_ name: String) -> IncomingRequest {
            var r = request
            r.headers.removeAll { $0.name.lowercased() == name }
            return r
        }
        expectError(.invalidRequest, "Missing required header for this request: x-amz-content-sha256") {
            _ = try verifier.verify(without("x-amz-content-sha256"), now: now)
        }
        expectError(.accessDenied) { _ = try verifier.verify(without("x-amz-date"), now: now) }
        // Anonymous
        let anonymous = without("authorization")
        #expect(SigV4Verifier.isAnonymous(anonymous))
        #expect(!SigV4Verifier.isAnonymous(request))
        expectError(.accessDenied, "Anonymous access is not allowed") { _ = try verifier.verify(anonymous, now: now) }
        // host must be signed
        var unsignedHost = request
        unsignedHost.headers = request.headers.map {
            $0.name == "authorization"
                ? ($0.name, $0.value.replacingOccurrences(of: "SignedHeaders=host;", with: "SignedHeaders=")) : $0
        }
        expectError(.authorizationHeaderMalformed) { _ = try verifier.verify(unsignedHost, now: now) }
        // Garbage authorization
        var garbage = request
        garbage.headers = request.headers.map {
            $0.name == "authorization" ? ($0.name, "AWS4-HMAC-SHA256 nonsense") : $0
        }
        expectError(.authorizationHeaderMalformed) { _ = try verifier.verify(garbage, now: now) }
        garbage.headers = request.headers.map { $0.name == "authorization" ? ($0.name, "Bearer abc") : $0 }
        expectError(.invalidArgument) { _ = try verifier.verify(garbage, now: now) }
        garbage.headers = request.headers.map {
            $0.name == "authorization" ? ($0.name, "AWS4-ECDSA-P256-SHA256 Credential=x") : $0
        }
        let e = expectError(.notImplemented) { _ = try verifier.verify(garbage, now: now) }
        #expect(e?.httpStatus == 501)
        // Malformed x-amz-content-sha256
        let bad = signed(key: "k", payload: .sha256Hex("not-a-hash"))
        expectError(.invalidArgument) { _ = try verifier.verify(bad, now: now) }
    }

    @Test func dateHeaderInsteadOfXAmzDate() throws {
        // A client that sends only Date: the string to sign still uses the ISO 8601 form.
        let signing = SigningRequest(
            method: "GET", path: "/media/k", headers: [("Host", "h"), ("Date", "Sun, 01 Jun 2025 12:30:15 GMT")])
        let added = signer.signedHeaders(for: signing, payload: .unsignedPayload, date: now)
        let headers = signing.headers + added.filter { $0.name != "x-amz-date" }
        // Without x-amz-date the signature (which covered x-amz-date) no longer matches...
        let auth = added.first { $0.name == "authorization" }!.value
        #expect(auth.contains("x-amz-date"))
        expectError(.signatureDoesNotMatch) {
            _ = try verifier.verify(IncomingRequest(method: "GET", rawPath: "/media/k", headers: headers), now: now)
        }
    }
}

@Suite struct PresignedRoundTrips {
    let now = utc(2025, 6, 1, 8, 0, 0)
    let signer = SigV4Signer(credentials: exampleCredentials, region: "us-east-1")

    func presigned(
        key: String, expires: Int, method: String = "GET", date: Date? = nil,
        query: [(name: String, value: String)] = [], signer: SigV4Signer? = nil
    ) throws -> IncomingRequest {
        let path = S3URIEncoding.encodePath("/bucket/" + key)
        let items = try (signer ?? self.signer).presignedQuery(
            for: SigningRequest(method: method, path: path, query: query, headers: [("host", "media.local")]),
            expires: expires, date: date ?? now)
        return IncomingRequest(
            method: method, rawPath: path, rawQuery: SigV4Signer.encodeQuery(items), headers: [("Host", "media.local")])
    }

    @Test(arguments: HeaderRoundTrips.keys)
    func keys(key: String) throws {
        let request = try presigned(key: key, expires: 3600, query: [("response-content-type", "video/mp4; q=1")])
        let v = try exampleVerifier().verify(request, now: now.addingTimeInterval(10))
        #expect(v.scheme == .sigV4Query)
        #expect(v.isUnsigned)
    }

    @Test func expiry() throws {
        let request = try presigned(key: "a.mp4", expires: 60)
        _ = try exampleVerifier().verify(request, now: now.addingTimeInterval(60))
        expectError(.accessDenied, "Request has expired") {
            _ = try exampleVerifier().verify(request, now: now.addingTimeInterval(61))
        }
        // Dated in the future beyond the allowed skew.
        let future = try presigned(key: "a.mp4", expires: 60, date: now.addingTimeInterval(901))
        expectError(.accessDenied, "Request is not valid yet") { _ = try exampleVerifier().verify(future, now: now) }
        _ = try exampleVerifier().verify(
            try presigned(key: "a.mp4", expires: 60, date: now.addingTimeInterval(900)), now: now)
    }

    @Test func expiresBounds() throws {
        let request = SigningRequest(method: "GET", path: "/b/k", headers: [("host", "h")])
        for bad in [0, -1, 604_801] {
            let e = expectError(.authorizationQueryParametersError) {
                _ = try signer.presignedQuery(for: request, expires: bad, date: now)
            }
            #expect(e?.httpStatus == 400)
        }
        _ = try signer.presignedQuery(for: request, expires: 1, date: now)
        _ = try signer.presignedQuery(for: request, expires: 604_800, date: now)
        // A URL whose X-Amz-Expires was raised past a week is refused before the signature is checked.
        var tooLong = try presigned(key: "k", expires: 604_800)
        tooLong.rawQuery = tooLong.rawQuery!.replacingOccurrences(
            of: "X-Amz-Expires=604800", with: "X-Amz-Expires=604801")
        expectError(.authorizationQueryParametersError) { _ = try exampleVerifier().verify(tooLong, now: now) }
        var zero = try presigned(key: "k", expires: 60)
        zero.rawQuery = zero.rawQuery!.replacingOccurrences(of: "X-Amz-Expires=60", with: "X-Amz-Expires=0")
        expectError(.authorizationQueryParametersError) { _ = try exampleVerifier().verify(zero, now: now) }
    }

    @Test func tampering() throws {
        let request = try presigned(key: "clip.mp4", expires: 600, method: "PUT")
        _ = try exampleVerifier().verify(request, now: now)
        func edit(_ f: (inout IncomingRequest) -> Void) -> IncomingRequest {
            var r = request
            f(&r)
            return r
        }
        let longer = edit {
            $0.rawQuery = $0.rawQuery!.replacingOccurrences(of: "X-Amz-Expires=600", with: "X-Amz-Expires=6000")
        }
        expectError(.signatureDoesNotMatch) { _ = try exampleVerifier().verify(longer, now: now) }
        expectError(.signatureDoesNotMatch) {
            _ = try exampleVerifier().verify(edit { $0.rawPath = "/bucket/other.mp4" }, now: now)
        }
        expectError(.signatureDoesNotMatch) { _ = try exampleVerifier().verify(edit { $0.method = "GET" }, now: now) }
        expectError(.signatureDoesNotMatch) {
            _ = try exampleVerifier().verify(edit { $0.rawQuery! += "&extra=1" }, now: now)
        }
        expectError(.signatureDoesNotMatch) {
            _ = try exampleVerifier().verify(edit { $0.headers = [("Host", "other.local")] }, now: now)
        }
        let moved = edit {
            $0.rawQuery = $0.rawQuery!.replacingOccurrences(
                of: "X-Amz-Date=20250601T080000Z", with: "X-Amz-Date=20250601T080001Z")
        }
        expectError(.signatureDoesNotMatch) { _ = try exampleVerifier().verify(moved, now: now) }
        let missing = edit {
            $0.rawQuery = $0.rawQuery!.components(separatedBy: "&").filter { !$0.hasPrefix("X-Amz-Date=") }.joined(
                separator: "&")
        }
        expectError(.authorizationQueryParametersError) { _ = try exampleVerifier().verify(missing, now: now) }
        // Both header and query authentication.
        let both = edit { $0.headers.append(("Authorization", "AWS4-HMAC-SHA256 Credential=x")) }
        expectError(.invalidArgument) { _ = try exampleVerifier().verify(both, now: now) }
        #expect(!SigV4Verifier.isAnonymous(request))
    }

    @Test func sessionToken() throws {
        let withToken = SigV4Signer(
            credentials: Credentials(
                accessKeyId: exampleAccessKey, secretAccessKey: exampleSecret, sessionToken: "tok/en+="),
            region: "us-east-1")
        let request = try presigned(key: "k", expires: 60, signer: withToken)
        #expect(request.rawQuery!.contains("X-Amz-Security-Token=tok%2Fen%2B%3D"))
        #expect(try exampleVerifier().verify(request, now: now).sessionToken == "tok/en+=")
        var dropped = request
        dropped.rawQuery = request.rawQuery!.replacingOccurrences(of: "&X-Amz-Security-Token=tok%2Fen%2B%3D", with: "")
        expectError(.signatureDoesNotMatch) { _ = try exampleVerifier().verify(dropped, now: now) }
    }
}

@Suite struct SigV2Verification {
    @Test func tamperedV2() throws {
        let headers: [(name: String, value: String)] = [
            ("Date", "Tue, 27 Mar 2007 19:36:42 +0000"),
            ("Authorization", "AWS AKIAIOSFODNN7EXAMPLE:qgk2+6Sv9/oM7G3qLEjTH1a1l1g="),
        ]
        let now = utc(2007, 3, 27, 19, 36, 42)
        var request = IncomingRequest(method: "GET", rawPath: "/awsexamplebucket1/photos/puppy.jpg", headers: headers)
        _ = try exampleVerifier().verify(request, now: now)
        request.rawPath = "/awsexamplebucket1/photos/kitten.jpg"
        expectError(.signatureDoesNotMatch) { _ = try exampleVerifier().verify(request, now: now) }
        request.rawPath = "/awsexamplebucket1/photos/puppy.jpg"
        request.headers = [("Date", "Tue, 27 Mar 2007 19:36:43 +0000"), headers[1]]
        expectError(.signatureDoesNotMatch) { _ = try exampleVerifier().verify(request, now: now) }
        request.headers = [headers[1]]
        expectError(.accessDenied) { _ = try exampleVerifier().verify(request, now: now) }
        request.headers = [headers[0], ("Authorization", "AWS nocolon")]
        expectError(.invalidArgument) { _ = try exampleVerifier().verify(request, now: now) }
        request.headers = [headers[0], ("Authorization", "AWS SOMEONEELSE:qgk2+6Sv9/oM7G3qLEjTH1a1l1g=")]
        expectError(.invalidAccessKeyId) { _ = try exampleVerifier().verify(request, now: now) }
        // A sub-resource is part of the string to sign; other parameters are not.
        request = IncomingRequest(
            method: "GET", rawPath: "/awsexamplebucket1/photos/puppy.jpg", rawQuery: "foo=bar", headers: headers)
        _ = try exampleVerifier().verify(request, now: now)
        request.rawQuery = "acl"
        expectError(.signatureDoesNotMatch) { _ = try exampleVerifier().verify(request, now: now) }
    }

    @Test func v2QueryMissingParameters() throws {
        let request = IncomingRequest(
            method: "GET", target: "/b/k?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1", headers: [])
        expectError(.accessDenied) { _ = try exampleVerifier().verify(request, now: Date(timeIntervalSince1970: 0)) }
        let badExpires = IncomingRequest(
            method: "GET", target: "/b/k?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=soon&Signature=x", headers: [])
        expectError(.accessDenied) { _ = try exampleVerifier().verify(badExpires, now: Date(timeIntervalSince1970: 0)) }
    }
}

@Suite struct ErrorShape {
    @Test func statuses() {
        #expect(SigV4Error(.signatureDoesNotMatch, "").httpStatus == 403)
        #expect(SigV4Error(.accessDenied, "").httpStatus == 403)
        #expect(SigV4Error(.invalidAccessKeyId, "").httpStatus == 403)
        #expect(SigV4Error(.requestTimeTooSkewed, "").httpStatus == 403)
        #expect(SigV4Error(.notImplemented, "").httpStatus == 501)
        for code: SigV4Error.Code in [
            .authorizationHeaderMalformed, .authorizationQueryParametersError, .xAmzContentSHA256Mismatch, .badDigest,
            .invalidDigest, .incompleteBody, .invalidRequest, .invalidArgument, .missingSecurityHeader,
        ] {
            #expect(SigV4Error(code, "").httpStatus == 400)
        }
        #expect(SigV4Error.Code.xAmzContentSHA256Mismatch.rawValue == "XAmzContentSHA256Mismatch")
        #expect(SigV4Error(.badDigest, "m").description == "BadDigest: m")
    }
}
