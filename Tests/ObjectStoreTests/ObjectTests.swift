import Foundation
import NIOCore
import ObjectStore
import Testing

@Suite struct ObjectTests {
    @Test func putGetHeadDeleteRoundTrip() async throws {
        try await withStore(fsync: true) { store, _ in
            try await store.createBucket("media")
            let data = pattern(300_000, seed: 1)
            let metadata = ObjectMetadata(
                contentType: "video/mp4", userMetadata: ["title": "Ünïcode ✓", "x": ""], contentEncoding: "identity",
                contentDisposition: "attachment", cacheControl: "no-cache", contentLanguage: "en",
                expires: "Wed, 21 Oct 2015 07:28:00 GMT", checksums: ["CRC32": "AAAAAA=="])
            let writer = try await store.beginPut(bucket: "media", key: "videos/a.mp4")
            for start in stride(from: 0, to: data.count, by: 65_536) {
                try await writer.write(buffer(Array(data[start..<min(start + 65_536, data.count)])))
            }
            #expect(writer.bytesWritten == data.count)
            let put = try await writer.commit(metadata: metadata, contentMD5: md5Base64(data))
            #expect(put.etag == md5Hex(data))
            #expect(put.size == data.count)
            #expect(put.partCount == nil)

            let head = try await store.headObject(bucket: "media", key: "videos/a.mp4")
            #expect(head == put)
            #expect(abs(head.lastModified.timeIntervalSinceNow) < 60)

            let (info, bytes) = try await readAll(store, bucket: "media", key: "videos/a.mp4")
            #expect(info == put)
            #expect(bytes == data)

            // Ranged reads never cross into the trailer.
            let reader = try await store.openObject(bucket: "media", key: "videos/a.mp4")
            #expect(reader.dataLength == data.count)
            #expect(reader.fileDescriptor >= 0)
            var piece = try await reader.read(offset: 1000, length: 10)
            #expect(piece.readBytes(length: 10) == Array(data[1000..<1010]))
            piece = try await reader.read(offset: data.count - 5, length: 100)
            #expect(piece.readableBytes == 5)
            piece = try await reader.read(offset: data.count + 10, length: 100)
            #expect(piece.readableBytes == 0)
            try await reader.close()
            #expect(reader.fileDescriptor == -1)
            try await reader.close()  // idempotent

            try await store.deleteObject(bucket: "media", key: "videos/a.mp4")
            await expectError(.noSuchKey) { try await store.headObject(bucket: "media", key: "videos/a.mp4") }
            await expectError(.noSuchKey) { try await store.openObject(bucket: "media", key: "videos/a.mp4") }
            try await store.deleteObject(bucket: "media", key: "videos/a.mp4")  // idempotent
            await expectError(.noSuchBucket) { try await store.deleteObject(bucket: "nope", key: "k") }
            await expectError(.noSuchBucket) { try await store.beginPut(bucket: "nope", key: "k") }
        }
    }

    @Test func emptyObject() async throws {
        try await withStore { store, _ in
            try await store.createBucket("b01")
            let info = try await store.putObject(bucket: "b01", key: "empty", body: ByteBuffer())
            #expect(info.size == 0)
            #expect(info.etag == "d41d8cd98f00b204e9800998ecf8427e")
            let (_, bytes) = try await readAll(store, bucket: "b01", key: "empty")
            #expect(bytes.isEmpty)
        }
    }

    @Test func overwriteReplacesDataAndMetadata() async throws {
        try await withStore { store, _ in
            try await store.createBucket("b01")
            try await store.putObject(
                bucket: "b01", key: "k", body: buffer("first version, longer"),
                metadata: ObjectMetadata(contentType: "text/plain", userMetadata: ["v": "1"]))
            let second = try await store.putObject(
                bucket: "b01", key: "k", body: buffer("second"), metadata: ObjectMetadata(userMetadata: ["v": "2"]))
            let (info, bytes) = try await readAll(store, bucket: "b01", key: "k")
            #expect(bytes == Array("second".utf8))
            #expect(info.metadata == ObjectMetadata(userMetadata: ["v": "2"]))
            let listing = try await store.listObjects(bucket: "b01")
            #expect(listing.objects.map(\.key) == ["k"])
            #expect(listing.objects.first?.etag == second.etag)
            #expect(listing.objects.first?.size == 6)
        }
    }

    @Test func concurrentPutsOfOneKeyLastCommitWins() async throws {
        try await withStore { store, dir in
            try await store.createBucket("b01")
            let bodies = (0..<8).map { pattern(40_000 + $0 * 1000, seed: UInt64($0 + 100)) }
            let results = try await withThrowingTaskGroup(of: ObjectInfo.self) { group in
                for body in bodies {
                    group.addTask {
                        let writer = try await store.beginPut(bucket: "b01", key: "same")
                        for start in stride(from: 0, to: body.count, by: 8192) {
                            try await writer.write(buffer(Array(body[start..<min(start + 8192, body.count)])))
                        }
                        return try await writer.commit()
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.count == bodies.count)
            let (info, bytes) = try await readAll(store, bucket: "b01", key: "same")
            #expect(bodies.contains(bytes))
            #expect(info.etag == md5Hex(bytes))
            #expect(info.size == bytes.count)
            #expect(try await store.listObjects(bucket: "b01").objects.count == 1)
            #expect(dir.files(under: dir.root + "/tmp").isEmpty)
            #expect(dir.files(under: dir.root + "/buckets/b01/objects").count == 1)
        }
    }

    @Test func readerKeepsTheVersionItOpened() async throws {
        try await withStore { store, _ in
            try await store.createBucket("b01")
            let v1 = pattern(100_000, seed: 7)
            let v2 = pattern(5_000, seed: 8)
            let first = try await store.putObject(
                bucket: "b01", key: "k", body: buffer(v1), metadata: ObjectMetadata(contentType: "v1"))
            let reader = try await store.openObject(bucket: "b01", key: "k")
            var head = try await reader.read(offset: 0, length: 10)
            #expect(head.readBytes(length: 10) == Array(v1[0..<10]))

            try await store.putObject(
                bucket: "b01", key: "k", body: buffer(v2), metadata: ObjectMetadata(contentType: "v2"))
            #expect(reader.info == first)
            #expect(try await readAll(reader, chunk: 4096) == v1)

            try await store.deleteObject(bucket: "b01", key: "k")
            #expect(try await readAll(reader) == v1)
            try await reader.close()
            await expectError(.noSuchKey) { try await store.openObject(bucket: "b01", key: "k") }
            await expectError(.internalError) { try await reader.read(offset: 0, length: 1) }
        }
    }

    @Test func largeObjectsReplacedOrDeletedAreFreedAfterTheAnswer() async throws {
        // Files of 1 MiB or more get a second name in tmp/ before the rename or unlink, and are unlinked from
        // there afterwards; readers, contents and the directory must not notice.
        try await withStore(fsync: true) { store, dir in
            try await store.createBucket("b01")
            let v1 = pattern(3 << 20, seed: 11)
            let v2 = pattern((2 << 20) + 17, seed: 12)
            let first = try await store.putObject(bucket: "b01", key: "big", body: buffer(v1))
            #expect(first.etag == md5Hex(v1))
            let reader = try await store.openObject(bucket: "b01", key: "big")
            let second = try await store.putObject(bucket: "b01", key: "big", body: buffer(v2))
            #expect(second.etag == md5Hex(v2))
            #expect(try await readAll(store, bucket: "b01", key: "big").1 == v2)
            #expect(try await readAll(reader, chunk: 1 << 20) == v1)
            try await reader.close()
            try await store.deleteObject(bucket: "b01", key: "big")
            await expectError(.noSuchKey) { try await store.openObject(bucket: "b01", key: "big") }
            for _ in 0..<200 where !dir.files(under: dir.root + "/tmp").isEmpty {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(dir.files(under: dir.root + "/tmp").isEmpty)
            #expect(dir.files(under: dir.root + "/buckets/b01/objects").isEmpty)
        }
    }

    @Test func abortedDroppedAndFailedWritesLeaveNothing() async throws {
        try await withStore(maximumObjectSize: 100) { store, dir in
            try await store.createBucket("b01")
            // Explicit abort.
            let aborted = try await store.beginPut(bucket: "b01", key: "aborted")
            try await aborted.write(buffer("partial"))
            #expect(dir.files(under: dir.root + "/tmp").count == 1)
            await aborted.abort()
            await aborted.abort()
            await expectError(.invalidRequest) { try await aborted.commit() }

            // Dropped without commit: deinit removes the temp file on the thread pool.
            do {
                let dropped = try await store.beginPut(bucket: "b01", key: "dropped")
                try await dropped.write(buffer("partial"))
            }
            // Bad digest: nothing committed.
            let bad = try await store.beginPut(bucket: "b01", key: "bad")
            try await bad.write(buffer("data"))
            await expectError(.badDigest) { try await bad.commit(contentMD5: md5Base64(Array("other".utf8))) }
            // Too large: the write fails and the writer is discarded.
            let big = try await store.beginPut(bucket: "b01", key: "big")
            try await big.write(buffer(pattern(60, seed: 1)))
            await expectError(.entityTooLarge) { try await big.write(buffer(pattern(60, seed: 2))) }
            await expectError(.invalidRequest) { try await big.commit() }

            for _ in 0..<200 where !dir.files(under: dir.root + "/tmp").isEmpty {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(dir.files(under: dir.root + "/tmp").isEmpty)
            #expect(try await store.listObjects(bucket: "b01").objects.isEmpty)
            #expect(dir.files(under: dir.root + "/buckets/b01/objects").isEmpty)
        }
    }

    @Test func hostileKeysAreDataNotPaths() async throws {
        try await withStore { store, dir in
            try await store.createBucket("b01")
            let longKey = String(repeating: "é", count: 512)  // 1024 bytes
            let keys = [
                "../../x", "../../etc/passwd", "a//b", "/", "/abs", ".", "..", "./.", "a/../../b", "~", "\\..\\x",
                "é", "e\u{301}", "日本語/ファイル", "emoji 🎬/clip", " space ", "%2e%2e/%2f", "line\nbreak",
                "tab\tkey", "\u{7F}", longKey,
            ]
            #expect(longKey.utf8.count == 1024)
            for key in keys {
                try await store.putObject(bucket: "b01", key: key, body: buffer(Array(key.utf8)))
            }
            // "é" and "e\u{301}" are canonically equivalent Strings but different keys.
            let listed = try await store.listObjects(bucket: "b01").objects.map(\.key)
            #expect(listed.count == keys.count)
            #expect(listed.map { Array($0.utf8) } == keys.sorted(by: bytesLess).map { Array($0.utf8) })
            for key in keys {
                let (info, bytes) = try await readAll(store, bucket: "b01", key: key)
                #expect(bytes == Array(key.utf8))
                #expect(Array(info.key.utf8) == Array(key.utf8))
            }
            // Nothing outside the root, and inside only hash-named object files.
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.parent) == ["data"])
            let files = dir.files(under: dir.root + "/buckets")
            #expect(files.count == keys.count + 1)
            for file in files where file != "b01/bucket.json" {
                let name = file.split(separator: "/").last!
                #expect(file.hasPrefix("b01/objects/"))
                #expect(name.count == 64 && name.allSatisfy(\.isHexDigit))
            }

            await expectError(.keyTooLong) { try await store.beginPut(bucket: "b01", key: longKey + "a") }
            await expectError(.invalidKey) { try await store.beginPut(bucket: "b01", key: "a\u{0}b") }
            await expectError(.invalidKey) { try await store.beginPut(bucket: "b01", key: "") }
            await expectError(.keyTooLong) { try await store.headObject(bucket: "b01", key: longKey + "a") }

            for key in keys { try await store.deleteObject(bucket: "b01", key: key) }
            #expect(try await store.listObjects(bucket: "b01").objects.isEmpty)
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir.parent) == ["data"])
        }
    }

    @Test func conditionalWrites() async throws {
        try await withStore { store, _ in
            try await store.createBucket("b01")
            let created = try await store.putObject(
                bucket: "b01", key: "k", body: buffer("v1"), conditions: WriteConditions(ifNoneMatch: "*"))
            await expectError(.preconditionFailed) {
                try await store.putObject(
                    bucket: "b01", key: "k", body: buffer("v2"), conditions: WriteConditions(ifNoneMatch: "*"))
            }
            await expectError(.preconditionFailed) {
                try await store.putObject(
                    bucket: "b01", key: "k", body: buffer("v2"), conditions: WriteConditions(ifMatch: "\"0123\""))
            }
            await expectError(.noSuchKey) {
                try await store.putObject(
                    bucket: "b01", key: "missing", body: buffer("v2"),
                    conditions: WriteConditions(ifMatch: created.etag))
            }
            #expect(try await readAll(store, bucket: "b01", key: "k").1 == Array("v1".utf8))
            let updated = try await store.putObject(
                bucket: "b01", key: "k", body: buffer("v2"), conditions: WriteConditions(ifMatch: "\"\(created.etag)\"")
            )
            #expect(try await readAll(store, bucket: "b01", key: "k").1 == Array("v2".utf8))
            // The old ETag no longer matches.
            await expectError(.preconditionFailed) {
                try await store.putObject(
                    bucket: "b01", key: "k", body: buffer("v3"), conditions: WriteConditions(ifMatch: created.etag))
            }
            #expect(try await store.headObject(bucket: "b01", key: "k").etag == updated.etag)

            // Racing create-if-absent: exactly one wins.
            let outcomes = await withTaskGroup(of: Bool.self) { group in
                for i in 0..<10 {
                    group.addTask {
                        do {
                            try await store.putObject(
                                bucket: "b01", key: "race", body: buffer("\(i)"),
                                conditions: WriteConditions(ifNoneMatch: "*"))
                            return true
                        } catch {
                            return false
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 1)
        }
    }

    @Test func contentMD5() async throws {
        try await withStore { store, dir in
            try await store.createBucket("b01")
            let data = Array("hello".utf8)
            try await store.putObject(bucket: "b01", key: "k", body: buffer(data), contentMD5: md5Base64(data))
            await expectError(.badDigest) {
                try await store.putObject(bucket: "b01", key: "k", body: buffer("other"), contentMD5: md5Base64(data))
            }
            await expectError(.invalidDigest) {
                try await store.putObject(bucket: "b01", key: "k", body: buffer("other"), contentMD5: "not base64!")
            }
            #expect(try await readAll(store, bucket: "b01", key: "k").1 == data)
            #expect(dir.files(under: dir.root + "/tmp").isEmpty)
        }
    }

    @Test func copyObject() async throws {
        try await withStore { store, _ in
            try await store.createBucket("src")
            try await store.createBucket("dst")
            let data = pattern(70_000, seed: 3)
            let metadata = ObjectMetadata(contentType: "video/mp4", userMetadata: ["a": "1"])
            let source = try await store.putObject(bucket: "src", key: "in", body: buffer(data), metadata: metadata)

            let copied = try await store.copyObject(
                from: ObjectLocation(bucket: "src", key: "in"), to: ObjectLocation(bucket: "dst", key: "out"))
            #expect(copied.etag == source.etag)
            #expect(copied.metadata == metadata)
            let (info, bytes) = try await readAll(store, bucket: "dst", key: "out")
            #expect(bytes == data)
            #expect(info == copied)

            let replaced = ObjectMetadata(contentType: "text/plain")
            let sameBucket = try await store.copyObject(
                from: ObjectLocation(bucket: "src", key: "in"), to: ObjectLocation(bucket: "src", key: "copy"),
                metadata: .replace(replaced))
            #expect(sameBucket.metadata == replaced)
            #expect(try await readAll(store, bucket: "src", key: "copy").1 == data)

            // Onto itself: COPY is refused (as S3 does), REPLACE updates the metadata.
            await expectError(.invalidRequest) {
                try await store.copyObject(
                    from: ObjectLocation(bucket: "src", key: "in"), to: ObjectLocation(bucket: "src", key: "in"))
            }
            let selfCopy = try await store.copyObject(
                from: ObjectLocation(bucket: "src", key: "in"), to: ObjectLocation(bucket: "src", key: "in"),
                metadata: .replace(replaced))
            #expect(selfCopy.etag == source.etag)
            let (selfInfo, selfBytes) = try await readAll(store, bucket: "src", key: "in")
            #expect(selfBytes == data)
            #expect(selfInfo.metadata == replaced)

            await expectError(.noSuchKey) {
                try await store.copyObject(
                    from: ObjectLocation(bucket: "src", key: "missing"), to: ObjectLocation(bucket: "dst", key: "x"))
            }
            await expectError(.noSuchBucket) {
                try await store.copyObject(
                    from: ObjectLocation(bucket: "src", key: "in"), to: ObjectLocation(bucket: "nobucket", key: "x"))
            }
            // Source and destination preconditions.
            await expectError(.preconditionFailed) {
                try await store.copyObject(
                    from: ObjectLocation(bucket: "src", key: "in"), to: ObjectLocation(bucket: "dst", key: "y"),
                    sourceConditions: CopySourceConditions(ifMatch: "ffff"))
            }
            await expectError(.preconditionFailed) {
                try await store.copyObject(
                    from: ObjectLocation(bucket: "src", key: "in"), to: ObjectLocation(bucket: "dst", key: "y"),
                    sourceConditions: CopySourceConditions(ifNoneMatch: source.etag))
            }
            await expectError(.preconditionFailed) {
                try await store.copyObject(
                    from: ObjectLocation(bucket: "src", key: "in"), to: ObjectLocation(bucket: "dst", key: "out"),
                    conditions: WriteConditions(ifNoneMatch: "*"))
            }
            try await store.copyObject(
                from: ObjectLocation(bucket: "src", key: "in"), to: ObjectLocation(bucket: "dst", key: "y"),
                sourceConditions: CopySourceConditions(ifMatch: "\"\(source.etag)\"", ifUnmodifiedSince: Date()))
        }
    }

    @Test func deleteManyObjects() async throws {
        try await withStore { store, _ in
            try await store.createBucket("b01")
            for key in ["a", "b", "c"] { try await store.putObject(bucket: "b01", key: key, body: buffer(key)) }
            let results = try await store.deleteObjects(bucket: "b01", keys: ["a", "missing", "", "c"])
            #expect(results.map(\.key) == ["a", "missing", "", "c"])
            #expect(results.map(\.deleted) == [true, false, false, true])
            #expect(results.map { $0.error?.code } == [nil, nil, .invalidKey, nil])
            #expect(try await store.listObjects(bucket: "b01").objects.map(\.key) == ["b"])
            await expectError(.noSuchBucket) { try await store.deleteObjects(bucket: "zzz", keys: ["a"]) }
        }
    }

    @Test func largeObjectStreamsInMegabyteReads() async throws {
        try await withStore { store, _ in
            try await store.createBucket("b01")
            let data = pattern(3 * 1024 * 1024 + 17, seed: 11)
            let writer = try await store.beginPut(bucket: "b01", key: "big")
            for start in stride(from: 0, to: data.count, by: 256 * 1024) {
                try await writer.write(buffer(Array(data[start..<min(start + 256 * 1024, data.count)])))
            }
            let info = try await writer.commit()
            #expect(info.etag == md5Hex(data))
            let (_, bytes) = try await readAll(store, bucket: "b01", key: "big")
            #expect(bytes == data)
        }
    }
}
