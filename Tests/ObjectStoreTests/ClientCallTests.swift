import Foundation
import NIOCore
import ObjectStore
import Testing

/// Store operations behind the S3 calls clients send beyond the basics: part copies, retried completes, part
/// ranges, owners and ACLs, and the free-space floor.
@Suite struct ClientCallTests {
    @Test func copyPartTakesARangeOfTheVersionItChecked() async throws {
        try await withStore { store, _ in
            try await store.createBucket("b01")
            let data = pattern(5000, seed: 7)
            let source = try await store.putObject(bucket: "b01", key: "src", body: buffer(data))
            let id = try await store.createMultipartUpload(bucket: "b01", key: "dst")
            let location = ObjectLocation(bucket: "b01", key: "src")
            let (first, checked) = try await store.copyPart(
                from: location, range: 0...2047, sourceConditions: CopySourceConditions(ifMatch: source.etag),
                bucket: "b01", key: "dst", uploadId: id, partNumber: 1)
            #expect(first.size == 2048 && first.etag == md5Hex(Array(data[0..<2048])) && checked.etag == source.etag)
            let (second, _) = try await store.copyPart(
                from: location, bucket: "b01", key: "dst", uploadId: id, partNumber: 2)
            #expect(second.size == 5000)
            await expectError(.invalidRange) {
                try await store.copyPart(
                    from: location, range: 10...5000, bucket: "b01", key: "dst", uploadId: id, partNumber: 3)
            }
            await expectError(.preconditionFailed) {
                try await store.copyPart(
                    from: location, sourceConditions: CopySourceConditions(ifNoneMatch: source.etag), bucket: "b01",
                    key: "dst", uploadId: id, partNumber: 3)
            }
            await expectError(.noSuchUpload) {
                try await store.copyPart(
                    from: location, bucket: "b01", key: "dst", uploadId: String(repeating: "0", count: 32),
                    partNumber: 1)
            }
            let info = try await store.completeMultipartUpload(
                bucket: "b01", key: "dst", uploadId: id,
                parts: [
                    CompletedPart(partNumber: 1, etag: first.etag), CompletedPart(partNumber: 2, etag: second.etag),
                ])
            #expect(info.partSizes == [2048, 5000])
            #expect(try await readAll(store, bucket: "b01", key: "dst").1 == Array(data[0..<2048]) + data)
        }
    }

    @Test func aRetriedCompleteGetsTheFirstResultAlsoAfterARestart() async throws {
        let dir = try TestDirectory()
        defer { dir.remove() }
        let parts: [CompletedPart]
        let id: String
        let first: ObjectInfo
        do {
            let store = try await makeStore(dir)
            try await store.createBucket("b01")
            id = try await store.createMultipartUpload(bucket: "b01", key: "k")
            let one = try await uploadPart(store, key: "k", uploadId: id, number: 1, data: pattern(1024, seed: 1))
            let two = try await uploadPart(store, key: "k", uploadId: id, number: 2, data: pattern(10, seed: 2))
            parts = [
                CompletedPart(partNumber: 1, etag: one.etag), CompletedPart(partNumber: 2, etag: "\"\(two.etag)\""),
            ]
            first = try await store.completeMultipartUpload(bucket: "b01", key: "k", uploadId: id, parts: parts)
            let again = try await store.completeMultipartUpload(bucket: "b01", key: "k", uploadId: id, parts: parts)
            #expect(again.etag == first.etag && again.size == 1034 && again.partSizes == [1024, 10])
        }
        let store = try await makeStore(dir)
        let again = try await store.completeMultipartUpload(bucket: "b01", key: "k", uploadId: id, parts: parts)
        #expect(again.etag == first.etag)
        await expectError(.noSuchUpload) {
            try await store.completeMultipartUpload(
                bucket: "b01", key: "k", uploadId: id, parts: Array(parts.prefix(1)))
        }
        await expectError(.noSuchUpload) {
            try await store.completeMultipartUpload(bucket: "b01", key: "other", uploadId: id, parts: parts)
        }
    }

    @Test func partRangesOfMultipartAndSinglePartObjects() async throws {
        try await withStore { store, _ in
            try await store.createBucket("b01")
            let id = try await store.createMultipartUpload(bucket: "b01", key: "k")
            var parts: [CompletedPart] = []
            for (number, size) in [(1, 1024), (2, 2000), (3, 5)] {
                let part = try await uploadPart(
                    store, key: "k", uploadId: id, number: number, data: pattern(size, seed: UInt64(number)))
                parts.append(CompletedPart(partNumber: number, etag: part.etag))
            }
            try await store.completeMultipartUpload(bucket: "b01", key: "k", uploadId: id, parts: parts)
            let info = try await store.headObject(bucket: "b01", key: "k")
            #expect(
                info.partRange(1) == 0..<1024 && info.partRange(2) == 1024..<3024 && info.partRange(3) == 3024..<3029)
            #expect(info.partRange(0) == nil && info.partRange(4) == nil)
            let single = try await store.putObject(bucket: "b01", key: "s", body: buffer("abc"))
            #expect(single.partRange(1) == 0..<3 && single.partRange(2) == nil)
        }
    }

    @Test func ownersAndACLsPersist() async throws {
        let dir = try TestDirectory()
        defer { dir.remove() }
        do {
            let store = try await makeStore(dir)
            try await store.createBucket("mine", owner: "alice")
            await expectError(.bucketAlreadyOwnedByYou) { try await store.createBucket("mine", owner: "alice") }
            await expectError(.bucketAlreadyExists) { try await store.createBucket("mine", owner: "bob") }
            try await store.setBucketACL("mine", .publicRead)
            let put = try await store.putObject(
                bucket: "mine", key: "o", body: buffer(pattern(3000, seed: 3)),
                metadata: ObjectMetadata(contentType: "a/b"))
            try await store.setObjectACL(bucket: "mine", key: "o", .publicRead)
            let after = try await store.headObject(bucket: "mine", key: "o")
            #expect(after.metadata.acl == .publicRead && after.etag == put.etag && after.metadata.contentType == "a/b")
            #expect(abs(after.lastModified.timeIntervalSince(put.lastModified)) < 0.001)
        }
        let store = try await makeStore(dir)
        let bucket = try await store.bucketInfo("mine")
        #expect(bucket.owner == "alice" && bucket.acl == .publicRead)
        let (info, bytes) = try await readAll(store, bucket: "mine", key: "o")
        #expect(info.metadata.acl == .publicRead && bytes == pattern(3000, seed: 3))
        try await store.setObjectACL(bucket: "mine", key: "o", .private)
        #expect(try await store.headObject(bucket: "mine", key: "o").metadata.acl == nil)
    }

    @Test func freeSpaceFloorSyntaxAndBytes() {
        #expect(FreeSpaceFloor.parse("512MiB") == .bytes(512 << 20))
        #expect(FreeSpaceFloor.parse("2GB") == .bytes(2_000_000_000))
        #expect(FreeSpaceFloor.parse("1048576") == .bytes(1_048_576))
        #expect(FreeSpaceFloor.parse("1%") == .fraction(0.01))
        #expect(FreeSpaceFloor.parse("0") == .bytes(0))
        for bad in ["", "-1", "12XB", "101%", "abc"] { #expect(FreeSpaceFloor.parse(bad) == nil, "\(bad)") }
        #expect(FreeSpaceFloor.standard.bytes(capacity: 1_000_000_000_000) == 256 << 20)
        #expect(FreeSpaceFloor.standard.bytes(capacity: 1_000_000_000) == 10_000_000)
    }

    /// A floor as large as the disk refuses every write before a byte is written, counts it, and leaves reads
    /// alone; a floor of 0 lets the same writes through.
    @Test func writesBelowTheFloorAreRefusedWithStorageFull() async throws {
        let dir = try TestDirectory()
        defer { dir.remove() }
        do {
            let store = try await makeStore(dir)
            try await store.createBucket("b01")
            try await store.putObject(bucket: "b01", key: "kept", body: buffer("kept"))
            _ = try await store.createMultipartUpload(bucket: "b01", key: "m")
        }
        var configuration = ObjectStoreConfiguration(root: dir.root, fsync: false, minimumPartSize: 1024)
        configuration.freeSpaceFloor = .fraction(1)
        let store = try await openStore(configuration)
        await expectError(.storageFull) { try await store.putObject(bucket: "b01", key: "new", body: buffer("x")) }
        await expectError(.storageFull) { try await store.createBucket("b02") }
        await expectError(.storageFull) { try await store.createMultipartUpload(bucket: "b01", key: "m2") }
        let id = try #require(try await store.listMultipartUploads(bucket: "b01").first?.uploadId)
        await expectError(.storageFull) {
            try await store.beginPart(bucket: "b01", key: "m", uploadId: id, partNumber: 1, expectedSize: 10)
        }
        await expectError(.storageFull) {
            try await store.copyObject(
                from: ObjectLocation(bucket: "b01", key: "kept"), to: ObjectLocation(bucket: "b01", key: "c"))
        }
        #expect(try await readAll(store, bucket: "b01", key: "kept").1 == Array("kept".utf8))
        #expect(try await store.listObjects(bucket: "b01").objects.map(\.key) == ["kept"])
        let status = try store.spaceStatus()
        #expect(status.refusedWrites == 5 && status.floor == status.capacity && status.available > 0)
        try await store.deleteObject(bucket: "b01", key: "kept")  // deletes free space: never refused
    }
}
