import Foundation
import NIOCore
import ObjectStore
import Testing

@Suite struct BucketTests {
    @Test func bucketNameRules() async throws {
        try await withStore { store, _ in
            let invalid = [
                "ab", String(repeating: "a", count: 64), "Upper", "-start", "end-", ".dot", "dot.", "a..b",
                "under_score",
                "192.168.1.1", "xn--punycode", "sp ace", "sl/ash", "..", "ümlaut", "name-s3alias",
            ]
            for name in invalid {
                await expectError(.invalidBucketName) { try await store.createBucket(name) }
            }
            let valid = ["abc", String(repeating: "a", count: 63), "my-bucket.v2", "1.2.3", "1.2.3.4.5", "0ab"]
            for name in valid { try await store.createBucket(name) }
            #expect(try await store.listBuckets().map(\.name) == valid.sorted())
        }
    }

    @Test func bucketLifecycle() async throws {
        try await withStore { store, dir in
            let created = try await store.createBucket("media")
            #expect(abs(created.creationDate.timeIntervalSinceNow) < 60)
            await expectError(.bucketAlreadyOwnedByYou) { try await store.createBucket("media") }
            #expect(try await store.bucketInfo("media") == created)
            await expectError(.noSuchBucket) { try await store.bucketInfo("other") }
            await expectError(.noSuchBucket) { try await store.deleteBucket("other") }

            try await store.putObject(bucket: "media", key: "k", body: buffer("x"))
            await expectError(.bucketNotEmpty) { try await store.deleteBucket("media") }
            try await store.deleteObject(bucket: "media", key: "k")

            // In-progress uploads don't block deletion (as in S3); they are aborted with the bucket.
            let upload = try await store.createMultipartUpload(bucket: "media", key: "m")
            try await store.deleteBucket("media")
            await expectError(.noSuchBucket) { try await store.bucketInfo("media") }
            await expectError(.noSuchBucket) { try await store.listObjects(bucket: "media") }
            await expectError(.noSuchBucket) {
                try await store.listParts(bucket: "media", key: "m", uploadId: upload)
            }
            #expect(try await store.listBuckets().isEmpty)
            #expect(dir.files(under: dir.root) == ["lock"])

            // Recreate: empty.
            try await store.createBucket("media")
            #expect(try await store.listObjects(bucket: "media").objects.isEmpty)
        }
    }

    @Test func concurrentCreateOfOneBucket() async throws {
        try await withStore { store, _ in
            let successes = await withTaskGroup(of: Bool.self) { group in
                for _ in 0..<8 {
                    group.addTask { (try? await store.createBucket("same")) != nil }
                }
                return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(successes == 1)
        }
    }

    @Test func writerToDeletedBucketFails() async throws {
        try await withStore { store, dir in
            try await store.createBucket("gone")
            let writer = try await store.beginPut(bucket: "gone", key: "k")
            try await writer.write(buffer("data"))
            try await store.deleteBucket("gone")
            await expectError(.noSuchBucket) { try await writer.commit() }
            #expect(dir.files(under: dir.root) == ["lock"])
        }
    }
}
