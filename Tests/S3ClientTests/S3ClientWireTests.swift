import AsyncHTTPClient
import FakeHTTPServer
import Foundation
import NIOCore
import SigV4
import Testing
import WireFormat

@testable import S3Client

func fakeClient(
    _ endpoint: URL, retry: S3RetryPolicy = S3RetryPolicy(baseDelay: .milliseconds(1)),
    tune: (inout S3ClientConfiguration) -> Void = { _ in }
) -> S3Client {
    var config = S3ClientConfiguration(
        endpoint: endpoint, credentials: Credentials(accessKeyId: fakeAccessKey, secretAccessKey: fakeSecretKey),
        retry: retry
    )
    tune(&config)
    return S3Client(configuration: config)
}

func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("s3client-tests-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

func randomBytes(_ count: Int, seed: UInt64 = 42) -> [UInt8] {
    var state = seed
    var out = [UInt8](repeating: 0, count: count)
    for i in 0..<count {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        out[i] = UInt8(truncatingIfNeeded: state >> 33)
    }
    return out
}

@Suite("Client against a scripted local server (signatures verified server-side)")
struct WireTests {
    @Test("put/get/head/delete round-trip awkward keys; the wire path decodes to the key")
    func awkwardKeys() async throws {
        let store = MemoryS3()
        try await withFakeServer(store.handle) { endpoint, recorder in
            let client = fakeClient(endpoint)
            let keys = [
                "a b/c+d~e", "..", "../x/./y", "ünïcødé/文件.mp4", "x%2Fy", "dir/", "/lead//double", "q?a=b&c#f",
                "*'()!$,;=:@", "tab\there", "emoji 🎬.mov",
            ]
            for (i, key) in keys.enumerated() {
                let body = ByteBuffer(bytes: randomBytes(100 + i, seed: UInt64(i)))
                let put = try await client.putObject(
                    bucket: "bkt", key: key, body: body, contentType: "video/mp4", metadata: ["Index": "\(i)"]
                )
                #expect(put.etag == Hex.encode(MD5.hash(body)))
                #expect(recorder.requests.last?.decodedPath == "/bkt/" + key)
                let got = try await client.getObject(bucket: "bkt", key: key)
                #expect(got.body == body)
                #expect(got.head.contentType == "video/mp4")
                #expect(got.head.userMetadata == ["index": "\(i)"])
                #expect(got.head.etag == put.etag)
                let head = try await client.headObject(bucket: "bkt", key: key)
                #expect(head.size == body.readableBytes)
                #expect(head.lastModified == Date(timeIntervalSince1970: 1_445_412_480))
                try await client.deleteObject(bucket: "bkt", key: key)
                #expect(store.object("bkt", key) == nil)
            }
            #expect(recorder.failures == [])
        }
    }

    @Test("retries 503 SlowDown and dropped connections, then succeeds")
    func retries() async throws {
        let store = MemoryS3()
        let calls = Recorder()
        store.intercept = { request in
            guard request.method == "GET" else { return nil }
            calls.append(request)
            switch calls.requests.count {
            case 1: return .error(503, code: "SlowDown", message: "Please reduce your request rate.")
            case 2: return .dropped
            default: return nil
            }
        }
        try await withFakeServer(store.handle) { endpoint, recorder in
            let client = fakeClient(endpoint)
            try await client.putObject(bucket: "b", key: "k", body: ByteBuffer(string: "hello"))
            let got = try await client.getObject(bucket: "b", key: "k")
            #expect(String(buffer: got.body) == "hello")
            #expect(calls.requests.count == 3)
            #expect(recorder.failures == [])
        }
    }

    @Test("gives up after maxAttempts and surfaces the S3 error")
    func retriesExhausted() async throws {
        try await withFakeServer({ _ in .error(500, code: "InternalError", message: "boom", requestId: "RID") }) {
            endpoint, recorder in
            let client = fakeClient(endpoint, retry: S3RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(1)))
            let error = await #expect(throws: S3Error.self) {
                try await client.getObject(bucket: "b", key: "k")
            }
            #expect(error?.code == "InternalError")
            #expect(error?.requestId == "RID")
            #expect(error?.statusCode == 500)
            #expect(recorder.requests.count == 3)
        }
    }

    @Test("4xx errors are mapped and not retried; HEAD 404 has no body")
    func errorMapping() async throws {
        let store = MemoryS3()
        store.intercept = { request in
            request.decodedPath?.hasPrefix("/nobucket") == true
                ? .error(404, code: "NoSuchBucket", message: "The specified bucket does not exist") : nil
        }
        try await withFakeServer(store.handle) { endpoint, recorder in
            let client = fakeClient(endpoint)
            let noKey = await #expect(throws: S3Error.self) { try await client.getObject(bucket: "b", key: "missing") }
            #expect(noKey?.isNoSuchKey == true)
            #expect(noKey?.code == "NoSuchKey")
            let noBucket = await #expect(throws: S3Error.self) {
                try await client.listObjectsV2(bucket: "nobucket")
            }
            #expect(noBucket?.isNoSuchBucket == true)
            let head = await #expect(throws: S3Error.self) { try await client.headObject(bucket: "b", key: "missing") }
            #expect(head?.code == "NotFound")
            #expect(head?.statusCode == 404)
            #expect(head?.isNoSuchKey == true)
            #expect(recorder.requests.count == 3)
        }
    }

    @Test("an ETag that is not the MD5 of the bytes sent is an integrity error")
    func etagMismatch() async throws {
        try await withFakeServer({ _ in
            FakeResponse(status: 200, headers: [("ETag", "\"00000000000000000000000000000000\"")])
        }) {
            endpoint, _ in
            let client = fakeClient(endpoint)
            let error = await #expect(throws: S3ClientError.self) {
                try await client.putObject(bucket: "b", key: "k", body: ByteBuffer(string: "x"))
            }
            #expect(error?.kind == .integrity)
            var config = client.configuration
            config.verifyUploadETag = false
            try await S3Client(configuration: config).putObject(bucket: "b", key: "k", body: ByteBuffer(string: "x"))
        }
    }

    @Test("conditional PUT sends If-None-Match and is not retried")
    func conditionalPut() async throws {
        try await withFakeServer({ _ in .error(412, code: "PreconditionFailed") }) { endpoint, recorder in
            let client = fakeClient(endpoint)
            let error = await #expect(throws: S3Error.self) {
                try await client.putObject(bucket: "b", key: "k", body: ByteBuffer(string: "x"), ifNoneMatch: "*")
            }
            #expect(error?.isPreconditionFailed == true)
            #expect(recorder.requests.count == 1)
            #expect(recorder.requests[0].header("if-none-match") == "*")
        }
    }

    @Test("ranged GET: 206, a store that ignores Range, and a 200 with Content-Range")
    func ranges() async throws {
        let store = MemoryS3()
        try await withFakeServer(store.handle) { endpoint, _ in
            let client = fakeClient(endpoint)
            let bytes = randomBytes(1000)
            try await client.putObject(bucket: "b", key: "k", body: ByteBuffer(bytes: bytes))
            for mode in [MemoryS3.RangeMode.standard, .ignore, .status200] {
                store.rangeMode = mode
                let mid = try await client.getObject(bucket: "b", key: "k", range: ByteRange(from: 100, to: 199))
                #expect(Array(buffer: mid.body) == Array(bytes[100..<200]))
                #expect(mid.head.contentRange == ContentRange(first: 100, last: 199, total: 1000))
                #expect(mid.head.size == 1000)
                #expect(mid.head.contentLength == 100)
                let tail = try await client.getObject(bucket: "b", key: "k", range: .suffix(10))
                #expect(Array(buffer: tail.body) == Array(bytes[990...]))
                let from = try await client.getObject(bucket: "b", key: "k", range: .from(995))
                #expect(Array(buffer: from.body) == Array(bytes[995...]))
            }
            store.rangeMode = .standard
            let (head, body) = try await client.getObjectStream(bucket: "b", key: "k", range: ByteRange(0..<10))
            #expect(head.contentLength == 10)
            #expect(Array(buffer: try await body.collect(upTo: 100)) == Array(bytes[0..<10]))
        }
    }

    @Test("CompleteMultipartUpload: a 200 carrying <Error> is an error, retried")
    func embeddedError() async throws {
        let store = MemoryS3()
        let completes = Recorder()
        store.intercept = { request in
            guard request.method == "POST", request.queryValue("uploadId") != nil else { return nil }
            completes.append(request)
            return completes.requests.count == 1
                ? .xml(
                    200, "<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"
                )
                : nil
        }
        try await withFakeServer(store.handle) { endpoint, _ in
            let client = fakeClient(endpoint)
            let id = try await client.createMultipartUpload(bucket: "b", key: "k")
            let p1 = try await client.uploadPart(
                bucket: "b", key: "k", uploadId: id, partNumber: 1, body: ByteBuffer(string: "abc"))
            let out = try await client.completeMultipartUpload(bucket: "b", key: "k", uploadId: id, parts: [p1])
            #expect(out.etag.hasSuffix("-1"))
            #expect(completes.requests.count == 2)
            #expect(store.object("b", "k")?.body == Array("abc".utf8))
        }
    }

    @Test("uploadFile: multipart, parallel, bounded, byte-exact; downloadObject round trip")
    func uploadAndDownloadFile() async throws {
        let store = MemoryS3()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let size = 23 * 1024 * 1024 + 12345
        let bytes = randomBytes(size)
        let source = dir.appendingPathComponent("in.bin")
        try Data(bytes).write(to: source)
        try await withFakeServer(store.handle) { endpoint, recorder in
            let client = fakeClient(endpoint) {
                $0.multipartThreshold = 8 * 1024 * 1024
                $0.partSize = 5 * 1024 * 1024
                $0.multipartConcurrency = 3
            }
            let out = try await client.uploadFile(
                bucket: "b", key: "big file.bin", path: source.path, contentType: "application/octet-stream")
            #expect(out.etag.hasSuffix("-5"))
            #expect(store.object("b", "big file.bin")?.body == bytes)
            let parts = recorder.requests.filter { $0.queryValue("partNumber") != nil }
            #expect(
                parts.map(\.body.count).sorted() == [size - 4 * 5 * 1024 * 1024]
                    + Array(repeating: 5 * 1024 * 1024, count: 4))
            #expect(store.peakParts >= 2)
            #expect(store.peakParts <= 3)
            #expect(recorder.failures == [])

            let target = dir.appendingPathComponent("out.bin")
            try Data("old".utf8).write(to: target)
            let head = try await client.downloadObject(bucket: "b", key: "big file.bin", to: target.path)
            #expect(head.size == size)
            #expect(try Data(contentsOf: target) == Data(bytes))
            let ranged = dir.appendingPathComponent("ranged.bin")
            try await client.downloadObject(bucket: "b", key: "big file.bin", to: ranged.path, range: .suffix(1000))
            #expect(try Data(contentsOf: ranged) == Data(bytes[(size - 1000)...]))
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".") }
            #expect(leftovers == [])

            // Small file: single PUT.
            let small = dir.appendingPathComponent("small.bin")
            try Data(bytes[0..<1000]).write(to: small)
            let before = recorder.requests.count
            let smallOut = try await client.uploadFile(bucket: "b", key: "small", path: small.path)
            #expect(recorder.requests.count == before + 1)
            #expect(smallOut.etag == Hex.encode(MD5.hash(Array(bytes[0..<1000]))))
            // Empty file.
            let empty = dir.appendingPathComponent("empty.bin")
            try Data().write(to: empty)
            try await client.uploadFile(bucket: "b", key: "empty", path: empty.path)
            #expect(store.object("b", "empty")?.body == [])
        }
    }

    @Test("uploadFile aborts the multipart upload when a part fails")
    func uploadFileAbortsOnFailure() async throws {
        let store = MemoryS3()
        store.intercept = { request in
            request.queryValue("partNumber") == "3" ? .error(400, code: "InvalidArgument", message: "bad part") : nil
        }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let source = dir.appendingPathComponent("in.bin")
        try Data(randomBytes(16 * 1024 * 1024)).write(to: source)
        try await withFakeServer(store.handle) { endpoint, _ in
            let client = fakeClient(endpoint) {
                $0.multipartThreshold = 5 * 1024 * 1024
                $0.partSize = 5 * 1024 * 1024
            }
            let error = await #expect(throws: S3Error.self) {
                try await client.uploadFile(bucket: "b", key: "k", path: source.path)
            }
            #expect(error?.code == "InvalidArgument")
            #expect(store.abortedUploads == ["up-1"])
            #expect(store.openUploads == 0)
            #expect(store.object("b", "k") == nil)
        }
    }

    @Test("downloadObject leaves nothing behind when the body is cut short")
    func downloadTruncated() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        try await withFakeServer({ _ in
            var r = FakeResponse(status: 200, body: Array(repeating: 7, count: 1000))
            r.declaredLength = 5000
            return r
        }) { endpoint, _ in
            let client = fakeClient(endpoint)
            let target = dir.appendingPathComponent("out.bin")
            try Data("previous".utf8).write(to: target)
            await #expect(throws: (any Error).self) {
                try await client.downloadObject(bucket: "b", key: "k", to: target.path)
            }
            #expect(try Data(contentsOf: target) == Data("previous".utf8))
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out.bin"])
        }
    }

    @Test("listObjectsV2 pages, url-encoded keys decoded; listAllObjects follows tokens")
    func listing() async throws {
        let store = MemoryS3()
        store.pageSize = 7
        try await withFakeServer(store.handle) { endpoint, recorder in
            let client = fakeClient(endpoint)
            var expected: [String] = []
            for i in 0..<30 {
                let key = String(format: "p/%02d a+b%%~ü", i)
                expected.append(key)
                try await client.putObject(bucket: "b", key: key, body: ByteBuffer(string: "\(i)"))
            }
            try await client.putObject(bucket: "b", key: "other", body: ByteBuffer(string: "x"))
            let first = try await client.listObjectsV2(bucket: "b", prefix: "p/", maxKeys: 7)
            #expect(first.objects.map(\.key) == Array(expected[0..<7]))
            #expect(first.isTruncated)
            #expect(first.nextContinuationToken != nil)
            var all: [String] = []
            for try await object in client.listAllObjects(bucket: "b", prefix: "p/") {
                all.append(object.key)
            }
            #expect(all == expected)
            let lists = recorder.requests.filter { $0.queryValue("list-type") == "2" }
            #expect(lists.last?.queryValue("encoding-type") == "url")
            #expect(recorder.failures == [])
        }
    }

    @Test("deleteObjects: batches of 1000 with Content-MD5, per-key errors returned")
    func deleteObjectsBatches() async throws {
        let bodies = Recorder()
        try await withFakeServer({ request in
            bodies.append(request)
            let root = try! S3XML.parse(Data(request.body))
            let keys = root.children("Object").compactMap { $0.string("Key") }
            let errors = keys.filter { $0.hasSuffix("7") }.map {
                "<Error><Key>\(S3XML.escape($0))</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            }
            return .xml(200, "<DeleteResult>\(errors.joined())</DeleteResult>")
        }) { endpoint, recorder in
            let client = fakeClient(endpoint)
            let keys = (0..<2500).map { "k<&>/\($0)" }
            let errors = try await client.deleteObjects(bucket: "b", keys: keys)
            #expect(errors.count == 250)
            #expect(errors.first == DeleteObjectError(key: "k<&>/7", code: "AccessDenied", message: "Access Denied"))
            let requests = bodies.requests
            #expect(requests.count == 3)
            for request in requests {
                #expect(request.method == "POST")
                #expect(request.query.map(\.name) == ["delete"])
                #expect(request.header("content-md5") == Data(MD5.hash(request.body)).base64EncodedString())
            }
            let counts = try requests.map { try S3XML.parse(Data($0.body)).children("Object").count }
            #expect(counts == [1000, 1000, 500])
            #expect(recorder.failures == [])
            #expect(try await client.deleteObjects(bucket: "b", keys: []) == [])
        }
    }

    @Test("copyObject sends an encoded x-amz-copy-source and the metadata directive")
    func copy() async throws {
        try await withFakeServer({ _ in
            .xml(
                200,
                "<CopyObjectResult><LastModified>2009-10-28T22:32:00Z</LastModified><ETag>\"9b2cf535f27731c974343645a3985328\"</ETag></CopyObjectResult>"
            )
        }) { endpoint, recorder in
            let client = fakeClient(endpoint)
            let out = try await client.copyObject(
                sourceBucket: "src", sourceKey: "a b/ü+.mp4", bucket: "dst", key: "c",
                metadata: .replace(metadata: ["x": "1"], contentType: "video/mp4")
            )
            #expect(out.etag == "9b2cf535f27731c974343645a3985328")
            let request = try #require(recorder.requests.first)
            #expect(request.header("x-amz-copy-source") == "/src/a%20b/%C3%BC%2B.mp4")
            #expect(request.header("x-amz-metadata-directive") == "REPLACE")
            #expect(request.header("x-amz-meta-x") == "1")
            #expect(request.header("content-type") == "video/mp4")
            #expect(recorder.failures == [])
        }
    }

    @Test("bucket operations")
    func buckets() async throws {
        try await withFakeServer({ request in
            switch (request.method, request.rawPath) {
            case ("GET", "/"):
                return .xml(
                    200,
                    "<ListAllMyBucketsResult><Buckets><Bucket><Name>a</Name><CreationDate>2020-01-01T00:00:00Z</CreationDate></Bucket></Buckets></ListAllMyBucketsResult>"
                )
            case ("HEAD", "/missing"): return FakeResponse(status: 404)
            case ("HEAD", "/forbidden"): return FakeResponse(status: 403)
            default: return FakeResponse(status: 200)
            }
        }) { endpoint, recorder in
            let client = fakeClient(endpoint)
            try await client.createBucket("newbucket")
            #expect(recorder.requests.last?.method == "PUT")
            #expect(recorder.requests.last?.rawPath == "/newbucket")
            #expect(try await client.listBuckets().map(\.name) == ["a"])
            #expect(try await client.headBucket("present"))
            #expect(try await !client.headBucket("missing"))
            await #expect(throws: S3Error.self) { try await client.headBucket("forbidden") }
            try await client.deleteBucket("newbucket")
            #expect(recorder.requests.last?.method == "DELETE")
            #expect(recorder.failures == [])
        }
    }
}
