import AsyncHTTPClient
import Foundation
import NIOCore
import S3Wire
import SigV4
import Testing
import WireFormat

@testable import S3Client

// AWS documentation example credentials ("Examples: Signature Calculations in AWS SigV4", S3).
let awsExampleCredentials = Credentials(
    accessKeyId: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)
let awsExampleDate = Date(timeIntervalSince1970: 1_369_353_600)  // 2013-05-24T00:00:00Z

func awsExampleClient() -> S3Client {
    S3Client(
        configuration: S3ClientConfiguration(
            endpoint: URL(string: "https://s3.amazonaws.com")!, credentials: awsExampleCredentials,
            addressing: .virtualHost
        )
    )
}

func localClient(_ endpoint: String = "http://127.0.0.1:9000", addressing: S3ClientConfiguration.Addressing = .path)
    -> S3Client
{
    S3Client(
        configuration: S3ClientConfiguration(
            endpoint: URL(string: endpoint)!, credentials: Credentials(accessKeyId: "AK", secretAccessKey: "SK"),
            addressing: addressing
        )
    )
}

@Suite("Signing and presigning")
struct SigningTests {
    @Test("GET object with Range signs like the AWS example")
    func getObjectExample() throws {
        var op = S3Operation("GetObject", "GET", bucket: "examplebucket", key: "test.txt")
        op.headers = [("range", "bytes=0-9")]
        let client = awsExampleClient()
        let request = try client.makeRequest(op, payload: client.payloadSignature(for: op), date: awsExampleDate)
        #expect(request.url == "https://examplebucket.s3.amazonaws.com/test.txt")
        #expect(request.headers.first(name: "host") == "examplebucket.s3.amazonaws.com")
        let auth = try #require(request.headers.first(name: "authorization"))
        #expect(
            auth
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        )
    }

    @Test("PUT object signs like the AWS example (key with $, body hash)")
    func putObjectExample() throws {
        var op = S3Operation(
            "PutObject", "PUT", bucket: "examplebucket", key: "test$file.text",
            body: ByteBuffer(string: "Welcome to Amazon S3.")
        )
        op.headers = [("date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")]
        let client = awsExampleClient()
        let request = try client.makeRequest(op, payload: client.payloadSignature(for: op), date: awsExampleDate)
        #expect(request.url == "https://examplebucket.s3.amazonaws.com/test%24file.text")
        #expect(
            request.headers.first(name: "x-amz-content-sha256")
                == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        )
        let auth = try #require(request.headers.first(name: "authorization"))
        #expect(auth.hasSuffix("Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"))
    }

    @Test("List objects signs like the AWS example (query)")
    func listObjectsExample() throws {
        let op = S3Operation(
            "ListObjects", "GET", bucket: "examplebucket", query: [("max-keys", "2"), ("prefix", "J")])
        let client = awsExampleClient()
        let request = try client.makeRequest(op, payload: client.payloadSignature(for: op), date: awsExampleDate)
        #expect(request.url == "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J")
        let auth = try #require(request.headers.first(name: "authorization"))
        #expect(auth.hasSuffix("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"))
    }

    @Test("presigned GET matches the AWS example")
    func presignedExample() throws {
        let url = try awsExampleClient().presignedURL(
            method: "GET", bucket: "examplebucket", key: "test.txt", expires: 86400, date: awsExampleDate
        )
        #expect(
            url.absoluteString
                == "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        )
    }

    @Test("presigned PUT with headers and query: shape and signature recomputed by the signer and verifier")
    func presignedPutShape() throws {
        let client = localClient("http://127.0.0.1:9000")
        let date = Date(timeIntervalSince1970: 1_700_000_000)
        let key = "dir/a b+c~ü.mp4"
        let url = try client.presignedURL(
            method: "put", bucket: "media", key: key, expires: 600, headers: ["Content-Type": "video/mp4"],
            query: [("x-id", "PutObject")], date: date
        )
        let components = try #require(URLComponents(url: url, resolvingAgainstBaseURL: false))
        #expect(components.scheme == "http")
        #expect(components.host == "127.0.0.1")
        #expect(components.port == 9000)
        #expect(components.percentEncodedPath == "/media/dir/a%20b%2Bc~%C3%BC.mp4")
        let query = S3URIEncoding.decodeQuery(components.percentEncodedQuery ?? "")
        let names = query.map(\.name)
        #expect(
            names == [
                "x-id", "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
                "X-Amz-Signature",
            ]
        )
        let dict = Dictionary(query.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        #expect(dict["X-Amz-Credential"] == "AK/20231114/us-east-1/s3/aws4_request")
        #expect(dict["X-Amz-Date"] == "20231114T221320Z")
        #expect(dict["X-Amz-Expires"] == "600")
        #expect(dict["X-Amz-SignedHeaders"] == "content-type;host")

        // Recompute independently with the signer.
        let signer = SigV4Signer(
            credentials: Credentials(accessKeyId: "AK", secretAccessKey: "SK"), region: "us-east-1")
        let expected = try signer.presignedQuery(
            for: SigningRequest(
                method: "PUT", path: "/media/" + S3URIEncoding.encodePath(key), query: [("x-id", "PutObject")],
                headers: [("host", "127.0.0.1:9000"), ("content-type", "video/mp4")]
            ),
            expires: 600, date: date
        )
        #expect(dict["X-Amz-Signature"] == expected.last?.value)

        // And the server-side verifier accepts it.
        let verifier = SigV4Verifier(region: "us-east-1") { $0 == "AK" ? "SK" : nil }
        let incoming = IncomingRequest(
            method: "PUT", rawPath: components.percentEncodedPath, rawQuery: components.percentEncodedQuery,
            headers: [("Host", "127.0.0.1:9000"), ("Content-Type", "video/mp4")]
        )
        let verified = try verifier.verify(incoming, now: date.addingTimeInterval(60))
        #expect(verified.accessKeyId == "AK")
        #expect(throws: (any Error).self) {
            try verifier.verify(incoming, now: date.addingTimeInterval(700))
        }
    }

    @Test("presigned UploadPart: partNumber and uploadId signed, Content-Length signed, other lengths refused")
    func presignedUploadPart() throws {
        let client = localClient("http://127.0.0.1:9000")
        let date = Date(timeIntervalSince1970: 1_700_000_000)
        let url = try client.presignedUploadPartURL(
            bucket: "ingest", key: "uploads/a_1.mp4", uploadId: "up/1+x", partNumber: 7, contentLength: 8_388_608,
            expires: 900, date: date)
        let components = try #require(URLComponents(url: url, resolvingAgainstBaseURL: false))
        let query = S3URIEncoding.decodeQuery(components.percentEncodedQuery ?? "")
        let dict = Dictionary(query.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        #expect(dict["partNumber"] == "7" && dict["uploadId"] == "up/1+x")
        #expect(dict["X-Amz-SignedHeaders"] == "content-length;host")
        let verifier = SigV4Verifier(region: "us-east-1") { $0 == "AK" ? "SK" : nil }
        func incoming(_ length: String) -> IncomingRequest {
            IncomingRequest(
                method: "PUT", rawPath: components.percentEncodedPath, rawQuery: components.percentEncodedQuery,
                headers: [("Host", "127.0.0.1:9000"), ("Content-Length", length)])
        }
        #expect(try verifier.verify(incoming("8388608"), now: date).accessKeyId == "AK")
        #expect(throws: (any Error).self) { try verifier.verify(incoming("8388607"), now: date) }
        #expect(throws: S3ClientError.self) {
            try client.presignedUploadPartURL(
                bucket: "ingest", key: "k", uploadId: "u", partNumber: 10_001, expires: 60)
        }
    }

    @Test("presign rejects expiries outside 1...604800")
    func presignExpiry() {
        let client = localClient()
        for expires in [0, -1, 604_801] {
            #expect(throws: S3ClientError.self) {
                try client.presignedURL(method: "GET", bucket: "b", key: "k", expires: expires)
            }
        }
        #expect(throws: Never.self) {
            try client.presignedURL(method: "GET", bucket: "b", key: "k", expires: 604_800)
        }
    }
}

@Suite("Addressing and key encoding")
struct AddressingTests {
    @Test(
        "keys are encoded once per segment and round-trip",
        arguments: [
            ("a b/c+d~e", "/bkt/a%20b/c%2Bd~e"),
            ("..", "/bkt/.."),
            ("../x/./y", "/bkt/../x/./y"),
            ("ünïcødé/文件.mp4", "/bkt/%C3%BCn%C3%AFc%C3%B8d%C3%A9/%E6%96%87%E4%BB%B6.mp4"),
            ("x%2Fy", "/bkt/x%252Fy"),
            ("dir/", "/bkt/dir/"),
            ("/lead//double", "/bkt//lead//double"),
            ("q?a=b&c#f", "/bkt/q%3Fa%3Db%26c%23f"),
            ("*'()!$,;=:@", "/bkt/%2A%27%28%29%21%24%2C%3B%3D%3A%40"),
        ]
    )
    func keyEncoding(key: String, expectedPath: String) throws {
        let target = try localClient().target(bucket: "bkt", key: key)
        #expect(target.path == expectedPath)
        #expect(target.authority == "127.0.0.1:9000")
        #expect(S3URIEncoding.decode(target.path) == "/bkt/" + key)
        // AsyncHTTPClient sends the path from URL.percentEncodedPath: check it is unchanged.
        let url = try #require(URL(string: target.url(query: [])))
        let components = try #require(URLComponents(url: url, resolvingAgainstBaseURL: true))
        #expect(components.percentEncodedPath == expectedPath)
    }

    @Test func virtualHostAddressing() throws {
        let client = localClient("https://s3.example.com", addressing: .virtualHost)
        let t1 = try client.target(bucket: "media", key: "a/b.mp4")
        #expect(t1.authority == "media.s3.example.com")
        #expect(t1.path == "/a/b.mp4")
        let t2 = try client.target(bucket: "media", key: nil)
        #expect(t2.path == "/")
        // Not DNS-compatible: falls back to path style.
        let t3 = try client.target(bucket: "my.bucket", key: "k")
        #expect(t3.authority == "s3.example.com")
        #expect(t3.path == "/my.bucket/k")
        let t4 = try client.target(bucket: nil, key: nil)
        #expect(t4.path == "/")
    }

    @Test func endpointVariants() throws {
        #expect(try localClient("http://localhost").target(bucket: "b", key: nil).authority == "localhost")
        #expect(try localClient("https://h:443/").target(bucket: "b", key: nil).authority == "h")
        #expect(try localClient("http://[::1]:9000").target(bucket: "b", key: "k").authority == "[::1]:9000")
        let prefixed = try localClient("http://h:1/s3/").target(bucket: "b", key: "k")
        #expect(prefixed.path == "/s3/b/k")
        #expect(throws: S3ClientError.self) { try localClient("ftp://h").target(bucket: "b", key: nil) }
        #expect(throws: S3ClientError.self) { try localClient().target(bucket: "", key: nil) }
        #expect(throws: S3ClientError.self) { try localClient().target(bucket: "b", key: "") }
    }
}
