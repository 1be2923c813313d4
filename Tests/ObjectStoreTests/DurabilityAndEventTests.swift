import Foundation
import NIOCore
import ObjectStore
import Testing

@Suite struct DurabilityTests {
    @Test func restartSeesEverythingAndCleansTempFiles() async throws {
        let dir = try TestDirectory()
        defer { dir.remove() }
        let keys = ["a", "dir/b", "../x", "é", "e\u{301}"]
        let uploadId: String
        let partETag: String
        do {
            let store = try await makeStore(dir, fsync: true)
            try await store.createBucket("one")
            try await store.createBucket("two")
            for key in keys {
                try await store.putObject(
                    bucket: "one", key: key, body: buffer(Array(key.utf8)),
                    metadata: ObjectMetadata(contentType: "text/plain", userMetadata: ["k": key]))
            }
            uploadId = try await store.createMultipartUpload(
                bucket: "two", key: "big", metadata: ObjectMetadata(contentType: "video/mp4"))
            partETag = try await uploadPart(
                store, bucket: "two", key: "big", uploadId: uploadId, number: 1, data: pattern(100, seed: 1)
            ).etag
            // An upload in progress when the process "dies": snapshot its temp file, which a
            // crash would leave behind, then let the store go (releasing the directory lock).
            let interrupted = try await store.beginPut(bucket: "one", key: "interrupted")
            try await interrupted.write(buffer("half"))
            let temps = dir.files(under: dir.root + "/tmp")
            #expect(temps.count == 1)
            try FileManager.default.copyItem(
                atPath: dir.root + "/tmp/" + temps[0], toPath: dir.root + "/tmp/crashed.tmp")
            await expectError(.internalError) { try await makeStore(dir) }  // locked while in use
            await interrupted.abort()
        }
        // Debris from a crash at other points.
        try Data("junk".utf8).write(to: URL(fileURLWithPath: dir.root + "/tmp/leftover.tmp"))
        try FileManager.default.createDirectory(
            atPath: dir.root + "/tmp/newbucket-x/objects", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(
            atPath: dir.root + "/multipart/half-created", withIntermediateDirectories: true)

        let store = try await makeStore(dir)
        #expect(dir.files(under: dir.root + "/tmp").isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.root + "/tmp").isEmpty)
        #expect(try await store.listBuckets().map(\.name) == ["one", "two"])
        let listed = try await store.listObjects(bucket: "one").objects.map(\.key)
        #expect(listed.map { Array($0.utf8) } == keys.sorted(by: bytesLess).map { Array($0.utf8) })
        for key in keys {
            let (info, bytes) = try await readAll(store, bucket: "one", key: key)
            #expect(bytes == Array(key.utf8))
            #expect(info.metadata.userMetadata["k"].map { Array($0.utf8) } == Array(key.utf8))
        }
        await expectError(.noSuchKey) { try await store.headObject(bucket: "one", key: "interrupted") }
        let uploads = try await store.listMultipartUploads(bucket: "two")
        #expect(uploads.map(\.uploadId) == [uploadId])
        #expect(uploads.first?.metadata.contentType == "video/mp4")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.root + "/multipart") == [uploadId])
        let parts = try await store.listParts(bucket: "two", key: "big", uploadId: uploadId)
        #expect(parts.parts.map(\.etag) == [partETag])
        let info = try await store.completeMultipartUpload(
            bucket: "two", key: "big", uploadId: uploadId, parts: [CompletedPart(partNumber: 1, etag: partETag)])
        #expect(info.size == 100)
    }
}

extension DurabilityTests {
    /// The trailer's JSON is written by hand and read with JSONDecoder: every field, absent or present, and
    /// every character JSON must escape, read back equal after a restart.
    @Test func everyMetadataFieldAndAwkwardCharactersSurviveTheTrailer() async throws {
        let dir = try TestDirectory()
        defer { dir.remove() }
        let awkward = "q\"uote\\back\u{1}\n\t\r é 😀 \u{2028} </x>"
        let full = ObjectMetadata(
            contentType: "text/plain; charset=\"utf-8\"", userMetadata: ["a": awkward, "b": "", "é\"": "x"],
            contentEncoding: "gzip", contentDisposition: "attachment; filename=\"\(awkward)\"",
            cacheControl: "no-cache",
            contentLanguage: "en", expires: "Thu, 01 Dec 1994 16:00:00 GMT",
            checksums: ["CRC32": "AAAAAA==", "SHA256": awkward])
        let cases: [(String, ObjectMetadata)] = [
            ("full", full), ("empty", ObjectMetadata()), (awkward, ObjectMetadata(contentType: awkward)),
        ]
        let uploadId: String
        do {
            let store = try await makeStore(dir, fsync: false)
            try await store.createBucket("bkt")
            for (key, metadata) in cases {
                try await store.putObject(bucket: "bkt", key: key, body: buffer(key), metadata: metadata)
            }
            uploadId = try await store.createMultipartUpload(bucket: "bkt", key: awkward, metadata: full)
            _ = try await uploadPart(
                store, bucket: "bkt", key: awkward, uploadId: uploadId, number: 7, data: pattern(10, seed: 2))
        }
        // Directories that are not the store's own: start-up must not take them for object directories.
        for junk in ["zz/zz", "-1/00", "+1/00", "AB/CD", "abc/d"] {
            try FileManager.default.createDirectory(
                atPath: dir.root + "/buckets/bkt/objects/" + junk, withIntermediateDirectories: true)
        }
        let store = try await makeStore(dir)
        // Writes into directories found at start-up and into new ones.
        for n in 0..<40 {
            try await store.putObject(bucket: "bkt", key: "after-\(n)", body: buffer("v\(n)"))
            #expect(try await readAll(store, bucket: "bkt", key: "after-\(n)").1 == Array("v\(n)".utf8))
        }
        try await store.putObject(bucket: "bkt", key: "full", body: buffer("again"))
        #expect(try await readAll(store, bucket: "bkt", key: "full").1 == Array("again".utf8))
        try await store.putObject(bucket: "bkt", key: "full", body: buffer("full"), metadata: full)
        for (key, metadata) in cases {
            let (info, bytes) = try await readAll(store, bucket: "bkt", key: key)
            #expect(info.metadata == metadata)
            #expect(info.key == key && bytes == Array(key.utf8) && info.etag == md5Hex(Array(key.utf8)))
        }
        let upload = try #require(try await store.listMultipartUploads(bucket: "bkt").first)
        #expect(upload.uploadId == uploadId && upload.key == awkward && upload.metadata == full)
        let parts = try await store.listParts(bucket: "bkt", key: awkward, uploadId: uploadId).parts
        #expect(parts.map(\.partNumber) == [7] && parts.map(\.size) == [10])
    }
}

@Suite struct EventTests {
    @Test func eventsAreObservedInOrderWithIncreasingSequencers() async throws {
        let log = EventLog()
        try await withStore(minimumPartSize: 10, observer: log.observer) { store, _ in
            try await store.createBucket("b01")
            let put = try await store.putObject(bucket: "b01", key: "a", body: buffer("hello"))
            try await store.copyObject(
                from: ObjectLocation(bucket: "b01", key: "a"), to: ObjectLocation(bucket: "b01", key: "b"))
            let id = try await store.createMultipartUpload(bucket: "b01", key: "c")
            let part = try await uploadPart(store, key: "c", uploadId: id, number: 1, data: pattern(20, seed: 1))
            let completed = try await store.completeMultipartUpload(
                bucket: "b01", key: "c", uploadId: id, parts: [CompletedPart(partNumber: 1, etag: part.etag)])
            try await store.deleteObject(bucket: "b01", key: "a")
            try await store.deleteObject(bucket: "b01", key: "a")  // nothing to delete: no event
            _ = try await store.deleteObjects(bucket: "b01", keys: ["b", "missing"])

            let events = log.all
            #expect(events.map(\.kind) == [.put, .copy, .completeMultipartUpload, .delete, .delete])
            #expect(events.map(\.key) == ["a", "b", "c", "a", "b"])
            #expect(events.allSatisfy { $0.bucket == "b01" })
            #expect(events[0].etag == put.etag && events[0].size == 5)
            #expect(events[2].etag == completed.etag && events[2].size == 20)
            #expect(events[3].etag == nil)
            let sequencers = events.map(\.sequencer)
            #expect(sequencers.allSatisfy { $0.count == 16 && $0 == $0.uppercased() && UInt64($0, radix: 16) != nil })
            #expect(zip(sequencers, sequencers.dropFirst()).allSatisfy { $0 < $1 })
        }
    }

    @Test func concurrentCommitsGetDistinctSequencers() async throws {
        let log = EventLog()
        try await withStore(observer: log.observer) { store, _ in
            try await store.createBucket("b01")
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<20 {
                    group.addTask { try await store.putObject(bucket: "b01", key: "k\(i % 3)", body: buffer("\(i)")) }
                }
                try await group.waitForAll()
            }
            let sequencers = log.all.map(\.sequencer)
            #expect(sequencers.count == 20)
            #expect(Set(sequencers).count == 20)
            // The newest sequencer of each key belongs to the version that is stored.
            for key in ["k0", "k1", "k2"] {
                let newest = log.all.filter { $0.key == key }.max { $0.sequencer < $1.sequencer }!
                #expect(try await store.headObject(bucket: "b01", key: key).etag == newest.etag)
            }
        }
    }

    @Test func observerFailureIsReportedButTheChangeIsCommitted() async throws {
        let log = EventLog()
        try await withStore(observer: log.observer) { store, _ in
            try await store.createBucket("b01")
            log.failing.withLock { $0 = true }
            await expectError(.serviceUnavailable) {
                try await store.putObject(bucket: "b01", key: "k", body: buffer("v"))
            }
            #expect(try await readAll(store, bucket: "b01", key: "k").1 == Array("v".utf8))
            await expectError(.serviceUnavailable) { try await store.deleteObject(bucket: "b01", key: "k") }
            await expectError(.noSuchKey) { try await store.headObject(bucket: "b01", key: "k") }
            #expect(log.all.map(\.kind) == [.put, .delete])
        }
    }
}
