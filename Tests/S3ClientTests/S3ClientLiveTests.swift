import AsyncHTTPClient
import Foundation
import NIOCore
import SigV4
import Testing

@testable import S3Client

/// Integration tests against a real S3-compatible endpoint, configured with
/// `CINESCALE_TEST_S3_ENDPOINT`, `CINESCALE_TEST_S3_ACCESS_KEY`, `CINESCALE_TEST_S3_SECRET_KEY`
/// (optional: `CINESCALE_TEST_S3_REGION`, `CINESCALE_TEST_S3_ADDRESSING=virtualHost`).
/// Skipped when the endpoint variable is absent. Each test works in its own new bucket and
/// deletes it afterwards.
enum LiveS3 {
    static let environment = ProcessInfo.processInfo.environment
    static var isConfigured: Bool { environment["CINESCALE_TEST_S3_ENDPOINT"].map { !$0.isEmpty } ?? false }

    static func client(_ tune: (inout S3ClientConfiguration) -> Void = { _ in }) -> S3Client {
        var config = S3ClientConfiguration(
            endpoint: URL(string: environment["CINESCALE_TEST_S3_ENDPOINT"]!)!,
            region: environment["CINESCALE_TEST_S3_REGION"] ?? "us-east-1",
            credentials: Credentials(
                accessKeyId: environment["CINESCALE_TEST_S3_ACCESS_KEY"] ?? "",
                secretAccessKey: environment["CINESCALE_TEST_S3_SECRET_KEY"] ?? ""
            ),
            addressing: environment["CINESCALE_TEST_S3_ADDRESSING"] == "virtualHost" ? .virtualHost : .path
        )
        tune(&config)
        return S3Client(configuration: config)
    }

    static func bucketName() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return "cinescale-test-" + String((0..<12).map { _ in alphabet.randomElement()! })
    }

    /// Creates a fresh bucket, runs `body`, then empties and deletes the bucket.
    static func withBucket(
        _ client: S3Client = client(),
        _ body: (S3Client, String) async throws -> Void
    ) async throws {
        let bucket = bucketName()
        try await client.createBucket(bucket)
        do {
            try await body(client, bucket)
        } catch {
            await cleanUp(client, bucket)
            throw error
        }
        await cleanUp(client, bucket)
    }

    static func cleanUp(_ client: S3Client, _ bucket: String) async {
        do {
            var keys: [String] = []
            for try await object in client.listAllObjects(bucket: bucket) { keys.append(object.key) }
            try await client.deleteObjects(bucket: bucket, keys: keys)
            try await client.deleteBucket(bucket)
        } catch {
            Issue.record("cleanup of \(bucket) failed: \(error)")
        }
    }
}

@Suite("Live S3 endpoint", .enabled(if: LiveS3.isConfigured), .serialized)
struct LiveTests {
    @Test func bucketLifecycle() async throws {
        let client = LiveS3.client()
        let bucket = LiveS3.bucketName()
        #expect(try await !client.headBucket(bucket))
        try await client.createBucket(bucket)
        #expect(try await client.headBucket(bucket))
        #expect(try await client.listBuckets().contains { $0.name == bucket })
        try await client.deleteBucket(bucket)
        #expect(try await !client.headBucket(bucket))
        #expect(try await !client.listBuckets().contains { $0.name == bucket })
    }

    @Test func putGetHeadDelete() async throws {
        try await LiveS3.withBucket { client, bucket in
            let keys = ["plain.txt", "a b/c+d~e", "ünïcødé/文件.mp4", "dir/sub/x=1&y=2;z", "(paren)'quote'!*.bin"]
            for (i, key) in keys.enumerated() {
                let body = ByteBuffer(bytes: randomBytes(1000 + i, seed: UInt64(i)))
                let put = try await client.putObject(
                    bucket: bucket, key: key, body: body, contentType: "video/mp4",
                    metadata: ["Title": "clip \(i)", "lang": "en"]
                )
                #expect(put.etag.isEmpty == false)
                let got = try await client.getObject(bucket: bucket, key: key)
                #expect(got.body == body, "body of \(key)")
                #expect(got.head.contentType == "video/mp4")
                #expect(got.head.etag == put.etag)
                #expect(got.head.userMetadata["title"] == "clip \(i)")
                #expect(got.head.userMetadata["lang"] == "en")
                let head = try await client.headObject(bucket: bucket, key: key)
                #expect(head.size == body.readableBytes)
                #expect(head.etag == put.etag)
                #expect(head.lastModified != nil)
            }
            let listed = try await client.listObjectsV2(bucket: bucket)
            #expect(Set(listed.objects.map(\.key)) == Set(keys))
            for key in keys {
                try await client.deleteObject(bucket: bucket, key: key)
                let error = await #expect(throws: S3Error.self) {
                    try await client.headObject(bucket: bucket, key: key)
                }
                #expect(error?.isNoSuchKey == true)
            }
            // Deleting a missing key succeeds.
            try await client.deleteObject(bucket: bucket, key: "never-existed")
            // Zero-byte object.
            try await client.putObject(bucket: bucket, key: "empty", body: ByteBuffer())
            #expect(try await client.getObject(bucket: bucket, key: "empty").body.readableBytes == 0)
        }
    }

    @Test func rangeGet() async throws {
        try await LiveS3.withBucket { client, bucket in
            let bytes = randomBytes(10_000)
            try await client.putObject(bucket: bucket, key: "r", body: ByteBuffer(bytes: bytes))
            let mid = try await client.getObject(bucket: bucket, key: "r", range: ByteRange(from: 1000, to: 1999))
            #expect(Array(buffer: mid.body) == Array(bytes[1000..<2000]))
            #expect(mid.head.contentRange == ContentRange(first: 1000, last: 1999, total: 10_000))
            #expect(mid.head.size == 10_000)
            #expect(mid.head.contentLength == 1000)
            let tail = try await client.getObject(bucket: bucket, key: "r", range: .suffix(100))
            #expect(Array(buffer: tail.body) == Array(bytes[9900...]))
            let from = try await client.getObject(bucket: bucket, key: "r", range: .from(9990))
            #expect(Array(buffer: from.body) == Array(bytes[9990...]))
            let (head, stream) = try await client.getObjectStream(bucket: bucket, key: "r", range: ByteRange(0..<10))
            #expect(head.contentLength == 10)
            #expect(Array(buffer: try await stream.collect(upTo: 100)) == Array(bytes[0..<10]))
            let error = await #expect(throws: S3Error.self) {
                try await client.getObject(bucket: bucket, key: "r", range: .from(20_000))
            }
            #expect(error?.isInvalidRange == true)
        }
    }

    @Test("40 MB uploadFile (multipart) and downloadObject round trip")
    func multipartFileRoundTrip() async throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let size = 40 * 1024 * 1024 + 4321
        let bytes = randomBytes(size, seed: 7)
        let source = dir.appendingPathComponent("video.mp4")
        try Data(bytes).write(to: source)
        try await LiveS3.withBucket { client, bucket in
            let out = try await client.uploadFile(
                bucket: bucket, key: "videos/big video.mp4", path: source.path, contentType: "video/mp4",
                metadata: ["source": "test"]
            )
            #expect(out.etag.hasSuffix("-6"), "40 MB in 8 MiB parts: \(out.etag)")
            let head = try await client.headObject(bucket: bucket, key: "videos/big video.mp4")
            #expect(head.size == size)
            #expect(head.contentType == "video/mp4")
            #expect(head.userMetadata["source"] == "test")
            let target = dir.appendingPathComponent("downloaded.mp4")
            let downloaded = try await client.downloadObject(
                bucket: bucket, key: "videos/big video.mp4", to: target.path)
            #expect(downloaded.size == size)
            #expect(try Data(contentsOf: target) == Data(bytes))
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == [
                    "downloaded.mp4", "video.mp4",
                ])
            // Streamed read of a range across a part boundary.
            let (_, stream) = try await client.getObjectStream(
                bucket: bucket, key: "videos/big video.mp4",
                range: ByteRange(from: 8 * 1024 * 1024 - 10, to: 8 * 1024 * 1024 + 9)
            )
            #expect(
                Array(buffer: try await stream.collect(upTo: 1000))
                    == Array(bytes[(8 * 1024 * 1024 - 10)..<(8 * 1024 * 1024 + 10)]))
        }
    }

    @Test("2500 keys: pages, prefix + delimiter, listAllObjects, deleteObjects")
    func listingAndBatchDelete() async throws {
        try await LiveS3.withBucket { client, bucket in
            var keys: [String] = []
            for d in 0..<5 {
                for i in 0..<500 { keys.append(String(format: "list/dir%d/key %04d+ü", d, i)) }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                var iterator = keys.makeIterator()
                func addNext() {
                    guard let key = iterator.next() else { return }
                    group.addTask {
                        try await client.putObject(bucket: bucket, key: key, body: ByteBuffer(string: key))
                    }
                }
                for _ in 0..<16 { addNext() }
                while try await group.next() != nil { addNext() }
            }
            try await client.putObject(bucket: bucket, key: "list/top.txt", body: ByteBuffer(string: "top"))
            try await client.putObject(bucket: bucket, key: "other/x", body: ByteBuffer(string: "x"))

            // Pages of 1000 with continuation tokens.
            var token: String?
            var paged: [String] = []
            var pages = 0
            repeat {
                let page = try await client.listObjectsV2(
                    bucket: bucket, prefix: "list/dir", continuationToken: token, maxKeys: 1000)
                paged += page.objects.map(\.key)
                pages += 1
                #expect(page.keyCount == page.objects.count)
                token = page.isTruncated ? page.nextContinuationToken : nil
                if page.isTruncated { #expect(token != nil) }
            } while token != nil && pages < 10
            #expect(pages == 3)
            #expect(paged == keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })

            // Delimiter.
            let top = try await client.listObjectsV2(bucket: bucket, prefix: "list/", delimiter: "/")
            #expect(top.commonPrefixes == (0..<5).map { "list/dir\($0)/" })
            #expect(top.objects.map(\.key) == ["list/top.txt"])
            let root = try await client.listObjectsV2(bucket: bucket, delimiter: "/")
            #expect(root.commonPrefixes == ["list/", "other/"])

            // startAfter.
            let after = try await client.listObjectsV2(
                bucket: bucket, prefix: "list/dir4/", startAfter: "list/dir4/key 0497+ü")
            #expect(after.objects.map(\.key) == ["list/dir4/key 0498+ü", "list/dir4/key 0499+ü"])

            // Lazy listing of everything under the prefix, small pages.
            var count = 0
            for try await object in client.listAllObjects(bucket: bucket, prefix: "list/dir", pageSize: 700) {
                #expect(object.size == object.key.utf8.count)
                count += 1
            }
            #expect(count == 2500)

            let errors = try await client.deleteObjects(bucket: bucket, keys: keys + ["not-there"])
            #expect(errors == [])
            let remaining = try await client.listObjectsV2(bucket: bucket, prefix: "list/")
            #expect(remaining.objects.map(\.key) == ["list/top.txt"])
        }
    }

    @Test func copyObject() async throws {
        try await LiveS3.withBucket { client, bucket in
            try await client.putObject(
                bucket: bucket, key: "src/a b+ü.txt", body: ByteBuffer(string: "payload"), contentType: "text/plain",
                metadata: ["origin": "one"]
            )
            let copied = try await client.copyObject(
                sourceBucket: bucket, sourceKey: "src/a b+ü.txt", bucket: bucket, key: "dst/copy.txt"
            )
            #expect(!copied.etag.isEmpty)
            let head = try await client.headObject(bucket: bucket, key: "dst/copy.txt")
            #expect(head.userMetadata["origin"] == "one")
            #expect(head.contentType == "text/plain")
            #expect(String(buffer: try await client.getObject(bucket: bucket, key: "dst/copy.txt").body) == "payload")

            try await client.copyObject(
                sourceBucket: bucket, sourceKey: "src/a b+ü.txt", bucket: bucket, key: "dst/replaced.txt",
                metadata: .replace(metadata: ["origin": "two"], contentType: "application/json")
            )
            let replaced = try await client.headObject(bucket: bucket, key: "dst/replaced.txt")
            #expect(replaced.userMetadata["origin"] == "two")
            #expect(replaced.contentType == "application/json")

            let missing = await #expect(throws: S3Error.self) {
                try await client.copyObject(sourceBucket: bucket, sourceKey: "nope", bucket: bucket, key: "x")
            }
            #expect(missing?.isNotFound == true)
        }
    }

    @Test func errorMapping() async throws {
        try await LiveS3.withBucket { client, bucket in
            let noKey = await #expect(throws: S3Error.self) {
                try await client.getObject(bucket: bucket, key: "missing")
            }
            #expect(noKey?.code == "NoSuchKey")
            #expect(noKey?.statusCode == 404)
            let head = await #expect(throws: S3Error.self) {
                try await client.headObject(bucket: bucket, key: "missing")
            }
            #expect(head?.statusCode == 404)
            #expect(head?.isNoSuchKey == true)
            let missingBucket = LiveS3.bucketName()
            let noBucket = await #expect(throws: S3Error.self) {
                try await client.listObjectsV2(bucket: missingBucket)
            }
            #expect(noBucket?.code == "NoSuchBucket")
            let noBucketGet = await #expect(throws: S3Error.self) {
                try await client.getObject(bucket: missingBucket, key: "k")
            }
            #expect(noBucketGet?.isNotFound == true)
            let badAuth = LiveS3.client { $0.credentials.secretAccessKey += "wrong" }
            let denied = await #expect(throws: S3Error.self) { try await badAuth.listObjectsV2(bucket: bucket) }
            #expect(denied?.statusCode == 403)
        }
    }

    @Test func multipartLowLevel() async throws {
        try await LiveS3.withBucket { client, bucket in
            let part1 = ByteBuffer(bytes: randomBytes(5 * 1024 * 1024, seed: 1))
            let part2 = ByteBuffer(bytes: randomBytes(1234, seed: 2))
            let id = try await client.createMultipartUpload(bucket: bucket, key: "mp", contentType: "video/mp4")
            let p2 = try await client.uploadPart(bucket: bucket, key: "mp", uploadId: id, partNumber: 2, body: part2)
            let p1 = try await client.uploadPart(bucket: bucket, key: "mp", uploadId: id, partNumber: 1, body: part1)
            let listed = try await client.listParts(bucket: bucket, key: "mp", uploadId: id)
            #expect(listed.parts.map(\.partNumber) == [1, 2])
            #expect(listed.parts.map(\.size) == [part1.readableBytes, part2.readableBytes])
            #expect(listed.parts.map(\.etag) == [p1.etag, p2.etag])
            let out = try await client.completeMultipartUpload(
                bucket: bucket, key: "mp", uploadId: id, parts: [p2, p1])
            #expect(out.etag.hasSuffix("-2"))
            let got = try await client.getObject(bucket: bucket, key: "mp")
            #expect(got.body == ByteBuffer(bytes: Array(buffer: part1) + Array(buffer: part2)))
            #expect(got.head.contentType == "video/mp4")

            let abandoned = try await client.createMultipartUpload(bucket: bucket, key: "gone")
            _ = try await client.uploadPart(
                bucket: bucket, key: "gone", uploadId: abandoned, partNumber: 1, body: part2)
            try await client.abortMultipartUpload(bucket: bucket, key: "gone", uploadId: abandoned)
            let error = await #expect(throws: S3Error.self) {
                try await client.listParts(bucket: bucket, key: "gone", uploadId: abandoned)
            }
            #expect(error?.isNoSuchUpload == true)
            await #expect(throws: S3Error.self) { try await client.headObject(bucket: bucket, key: "gone") }
        }
    }

    @Test func multipartUploadsAndPartsListedThroughEveryPage() async throws {
        try await LiveS3.withBucket { client, bucket in
            let small = ByteBuffer(bytes: randomBytes(1000, seed: 3))
            let first = try await client.createMultipartUpload(bucket: bucket, key: "up/a")
            let second = try await client.createMultipartUpload(bucket: bucket, key: "up/b")
            let other = try await client.createMultipartUpload(bucket: bucket, key: "elsewhere")
            for number in 1...3 {
                _ = try await client.uploadPart(
                    bucket: bucket, key: "up/a", uploadId: first, partNumber: number, body: small)
            }
            let listed = try await client.listAllMultipartUploads(bucket: bucket, prefix: "up/")
            #expect(Set(listed.map(\.uploadId)) == [first, second])
            #expect(listed.allSatisfy { $0.initiated.map { abs($0.timeIntervalSinceNow) < 600 } ?? false })
            // One page of one part at a time: three pages, in order.
            var marker: Int?
            var pages: [[Int]] = []
            repeat {
                let page = try await client.listParts(
                    bucket: bucket, key: "up/a", uploadId: first, partNumberMarker: marker, maxParts: 1)
                pages.append(page.parts.map(\.partNumber))
                marker = page.isTruncated ? page.nextPartNumberMarker : nil
            } while marker != nil && pages.count < 10
            #expect(pages == [[1], [2], [3]])
            let all = try await client.listAllParts(bucket: bucket, key: "up/a", uploadId: first)
            #expect(all.map(\.partNumber) == [1, 2, 3] && all.allSatisfy { $0.size == 1000 })
            for (key, id) in [("up/a", first), ("up/b", second), ("elsewhere", other)] {
                try await client.abortMultipartUpload(bucket: bucket, key: key, uploadId: id)
            }
            #expect(try await client.listAllMultipartUploads(bucket: bucket).isEmpty)
        }
    }

    @Test("presigned GET and PUT followed with AsyncHTTPClient")
    func presigned() async throws {
        try await LiveS3.withBucket { client, bucket in
            let key = "presigned/a b+ü.txt"
            let putURL = try client.presignedURL(
                method: "PUT", bucket: bucket, key: key, expires: 300, headers: ["content-type": "text/plain"]
            )
            var put = HTTPClientRequest(url: putURL.absoluteString)
            put.method = .PUT
            put.headers.add(name: "content-type", value: "text/plain")
            put.body = .bytes(ByteBuffer(string: "via presigned PUT"))
            let putResponse = try await HTTPClient.shared.execute(put, timeout: .seconds(30))
            #expect(putResponse.status.code == 200)
            _ = try await putResponse.body.collect(upTo: 1 << 20)

            let getURL = try client.presignedURL(method: "GET", bucket: bucket, key: key, expires: 300)
            let getResponse = try await HTTPClient.shared.execute(
                HTTPClientRequest(url: getURL.absoluteString), timeout: .seconds(30))
            #expect(getResponse.status.code == 200)
            #expect(String(buffer: try await getResponse.body.collect(upTo: 1 << 20)) == "via presigned PUT")
            #expect(try await client.headObject(bucket: bucket, key: key).contentType == "text/plain")

            // An expired URL is refused.
            let expired = try client.presignedURL(
                method: "GET", bucket: bucket, key: key, expires: 1, date: Date().addingTimeInterval(-3600)
            )
            let expiredResponse = try await HTTPClient.shared.execute(
                HTTPClientRequest(url: expired.absoluteString), timeout: .seconds(30))
            // AWS answers 403 AccessDenied; some stores use 400.
            #expect((400..<404).contains(expiredResponse.status.code))
            _ = try await expiredResponse.body.collect(upTo: 1 << 20)
        }
    }
}
