import Crypto
import Foundation
import NIOCore
import ObjectStore
import Testing

func uploadPart(
    _ store: ObjectStore, bucket: String = "b01", key: String, uploadId: String, number: Int, data: [UInt8],
    contentMD5: String? = nil
) async throws -> PartInfo {
    let writer = try await store.beginPart(bucket: bucket, key: key, uploadId: uploadId, partNumber: number)
    for start in stride(from: 0, to: data.count, by: 1000) {
        try await writer.write(buffer(Array(data[start..<min(start + 1000, data.count)])))
    }
    return try await writer.commit(contentMD5: contentMD5)
}

/// The multipart ETag, computed independently: hex(md5(md5(p1) ‖ … ‖ md5(pN)))-N.
func multipartETag(_ parts: [[UInt8]]) -> String {
    let concatenated = parts.flatMap { Array(Insecure.MD5.hash(data: $0)) }
    return md5Hex(concatenated) + "-\(parts.count)"
}

@Suite struct MultipartTests {
    @Test func completeMultipartUpload() async throws {
        try await withStore(fsync: true, minimumPartSize: 2048) { store, dir in
            try await store.createBucket("b01")
            let metadata = ObjectMetadata(contentType: "video/mp4", userMetadata: ["origin": "camera"])
            let id = try await store.createMultipartUpload(bucket: "b01", key: "movie.mp4", metadata: metadata)
            let p1 = pattern(3000, seed: 1)
            var p2 = pattern(2048, seed: 2)
            let p3 = pattern(10, seed: 3)
            let i1 = try await uploadPart(
                store, key: "movie.mp4", uploadId: id, number: 1, data: p1, contentMD5: md5Base64(p1))
            _ = try await uploadPart(store, key: "movie.mp4", uploadId: id, number: 2, data: p2)
            p2 = pattern(2500, seed: 22)  // re-upload replaces
            let i2 = try await uploadPart(store, key: "movie.mp4", uploadId: id, number: 2, data: p2)
            let i3 = try await uploadPart(store, key: "movie.mp4", uploadId: id, number: 5, data: p3)
            #expect(i1.etag == md5Hex(p1) && i2.etag == md5Hex(p2) && i3.etag == md5Hex(p3))

            let all = try await store.listParts(bucket: "b01", key: "movie.mp4", uploadId: id)
            #expect(all.parts.map(\.partNumber) == [1, 2, 5])
            #expect(all.parts.map(\.size) == [3000, 2500, 10])
            #expect(all.parts.map(\.etag) == [i1.etag, i2.etag, i3.etag])
            #expect(!all.isTruncated)
            #expect(all.upload.metadata == metadata)
            let page = try await store.listParts(
                bucket: "b01", key: "movie.mp4", uploadId: id, partNumberMarker: 1, maxParts: 1)
            #expect(page.parts.map(\.partNumber) == [2])
            #expect(page.isTruncated && page.nextPartNumberMarker == 2)

            let uploads = try await store.listMultipartUploads(bucket: "b01")
            #expect(uploads.map(\.uploadId) == [id])
            #expect(try await store.listMultipartUploads(bucket: "b01", prefix: "x").isEmpty)

            let info = try await store.completeMultipartUpload(
                bucket: "b01", key: "movie.mp4", uploadId: id,
                parts: [
                    CompletedPart(partNumber: 1, etag: "\"\(i1.etag)\""), CompletedPart(partNumber: 2, etag: i2.etag),
                    CompletedPart(partNumber: 5, etag: i3.etag.uppercased()),
                ])
            #expect(info.etag == multipartETag([p1, p2, p3]))
            #expect(info.partCount == 3)
            #expect(info.size == p1.count + p2.count + p3.count)
            #expect(info.metadata == metadata)
            let (stored, bytes) = try await readAll(store, bucket: "b01", key: "movie.mp4")
            #expect(bytes == p1 + p2 + p3)
            #expect(stored == info)

            await expectError(.noSuchUpload) {
                try await store.listParts(bucket: "b01", key: "movie.mp4", uploadId: id)
            }
            await expectError(.noSuchUpload) {
                try await store.completeMultipartUpload(
                    bucket: "b01", key: "movie.mp4", uploadId: id, parts: [CompletedPart(partNumber: 1, etag: i1.etag)])
            }
            #expect(try await store.listMultipartUploads(bucket: "b01").isEmpty)
            #expect(dir.files(under: dir.root + "/multipart").isEmpty)
            #expect(dir.files(under: dir.root + "/tmp").isEmpty)

            // Copying a multipart object yields a plain MD5 ETag.
            let copy = try await store.copyObject(
                from: ObjectLocation(bucket: "b01", key: "movie.mp4"),
                to: ObjectLocation(bucket: "b01", key: "copy.mp4"))
            #expect(copy.etag == md5Hex(p1 + p2 + p3))
            #expect(copy.partCount == nil)
        }
    }

    @Test func completeValidatesParts() async throws {
        try await withStore(minimumPartSize: 100) { store, _ in
            try await store.createBucket("b01")
            let id = try await store.createMultipartUpload(bucket: "b01", key: "k")
            let small = pattern(50, seed: 1)
            let big = pattern(150, seed: 2)
            let s1 = try await uploadPart(store, key: "k", uploadId: id, number: 1, data: small)
            let b2 = try await uploadPart(store, key: "k", uploadId: id, number: 2, data: big)
            let b3 = try await uploadPart(store, key: "k", uploadId: id, number: 3, data: big)

            func complete(_ parts: [(Int, String)]) async throws -> ObjectInfo {
                try await store.completeMultipartUpload(
                    bucket: "b01", key: "k", uploadId: id,
                    parts: parts.map { CompletedPart(partNumber: $0.0, etag: $0.1) })
            }
            await expectError(.invalidPartOrder) { try await complete([(3, b3.etag), (2, b2.etag)]) }
            await expectError(.invalidPartOrder) { try await complete([(2, b2.etag), (2, b2.etag)]) }
            await expectError(.invalidPart) { try await complete([(2, "00000000000000000000000000000000")]) }
            await expectError(.invalidPart) { try await complete([(2, b2.etag), (4, b3.etag)]) }
            await expectError(.entityTooSmall) { try await complete([(1, s1.etag), (2, b2.etag)]) }
            await expectError(.malformedXML) { try await complete([]) }
            await expectError(.noSuchUpload) {
                try await store.completeMultipartUpload(
                    bucket: "b01", key: "k", uploadId: "0123456789abcdef0123456789abcdef",
                    parts: [CompletedPart(partNumber: 1, etag: s1.etag)])
            }
            await expectError(.noSuchUpload) {
                try await store.completeMultipartUpload(
                    bucket: "b01", key: "other-key", uploadId: id, parts: [CompletedPart(partNumber: 1, etag: s1.etag)])
            }
            await expectError(.noSuchUpload) {
                try await store.beginPart(bucket: "b01", key: "k", uploadId: "../../etc", partNumber: 1)
            }
            await expectError(.invalidArgument) {
                try await store.beginPart(bucket: "b01", key: "k", uploadId: id, partNumber: 0)
            }
            await expectError(.invalidArgument) {
                try await store.beginPart(bucket: "b01", key: "k", uploadId: id, partNumber: 10_001)
            }
            await expectError(.badDigest) {
                try await uploadPart(store, key: "k", uploadId: id, number: 4, data: big, contentMD5: md5Base64(small))
            }
            #expect(try await store.listObjects(bucket: "b01").objects.isEmpty)

            // A small *last* part is fine, and failed attempts left the upload intact.
            let info = try await complete([(2, b2.etag), (3, b3.etag)])
            #expect(info.etag == multipartETag([big, big]))
        }
    }

    @Test func smallLastPartIsAllowed() async throws {
        try await withStore(minimumPartSize: 100) { store, _ in
            try await store.createBucket("b01")
            let id = try await store.createMultipartUpload(bucket: "b01", key: "k")
            let a = pattern(100, seed: 1)
            let b = pattern(1, seed: 2)
            let pa = try await uploadPart(store, key: "k", uploadId: id, number: 1, data: a)
            let pb = try await uploadPart(store, key: "k", uploadId: id, number: 2, data: b)
            let info = try await store.completeMultipartUpload(
                bucket: "b01", key: "k", uploadId: id,
                parts: [CompletedPart(partNumber: 1, etag: pa.etag), CompletedPart(partNumber: 2, etag: pb.etag)])
            #expect(info.etag == multipartETag([a, b]))
            #expect(try await readAll(store, bucket: "b01", key: "k").1 == a + b)
        }
    }

    @Test func abortMultipartUpload() async throws {
        try await withStore { store, dir in
            try await store.createBucket("b01")
            let id = try await store.createMultipartUpload(bucket: "b01", key: "k")
            _ = try await uploadPart(store, key: "k", uploadId: id, number: 1, data: pattern(10, seed: 1))
            let pending = try await store.beginPart(bucket: "b01", key: "k", uploadId: id, partNumber: 2)
            try await pending.write(buffer("late"))

            await expectError(.noSuchUpload) {
                try await store.abortMultipartUpload(bucket: "b01", key: "other", uploadId: id)
            }
            try await store.abortMultipartUpload(bucket: "b01", key: "k", uploadId: id)
            await expectError(.noSuchUpload) {
                try await store.abortMultipartUpload(bucket: "b01", key: "k", uploadId: id)
            }
            await expectError(.noSuchUpload) { try await store.listParts(bucket: "b01", key: "k", uploadId: id) }
            // A part that was in flight during the abort is refused and leaves nothing.
            await expectError(.noSuchUpload) { try await pending.commit() }
            #expect(try await store.listMultipartUploads(bucket: "b01").isEmpty)
            #expect(dir.files(under: dir.root + "/multipart").isEmpty)
            #expect(dir.files(under: dir.root + "/tmp").isEmpty)
            #expect(try await store.listObjects(bucket: "b01").objects.isEmpty)
        }
    }
}
