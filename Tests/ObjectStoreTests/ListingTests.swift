import NIOCore
import ObjectStore
import Testing

/// A straightforward model of S3 listing over byte strings, to check the store against.
struct ReferenceListing: Equatable {
    var entries: [[UInt8]]  // keys and common prefixes, in order
    var prefixFlags: [Bool]
    var isTruncated: Bool
    var nextMarker: [UInt8]?

    /// `keys`: UTF-8 bytes of the keys, sorted byte-wise.
    init(sortedKeys: [[UInt8]], prefix: String, delimiter: String?, startAfter: String?, maxKeys: Int) {
        let prefixBytes = Array(prefix.utf8)
        let delimiterBytes = delimiter.map { Array($0.utf8) } ?? []
        let start = startAfter.map { Array($0.utf8) }
        var all: [([UInt8], Bool)] = []
        for key in sortedKeys {
            guard key.starts(with: prefixBytes) else { continue }
            if let start, !start.lexicographicallyPrecedes(key) { continue }
            var rolled: [UInt8]?
            if !delimiterBytes.isEmpty {
                var i = prefixBytes.count
                while i + delimiterBytes.count <= key.count {
                    if Array(key[i..<i + delimiterBytes.count]) == delimiterBytes {
                        rolled = Array(key[0..<i + delimiterBytes.count])
                        break
                    }
                    i += 1
                }
            }
            if let rolled {
                if rolled == start { continue }
                if let last = all.last, last.1, last.0 == rolled { continue }
                all.append((rolled, true))
            } else {
                all.append((key, false))
            }
        }
        let page = maxKeys == 0 ? [] : Array(all.prefix(maxKeys))
        entries = page.map(\.0)
        prefixFlags = page.map(\.1)
        isTruncated = maxKeys > 0 && all.count > maxKeys
        nextMarker = isTruncated ? page.last?.0 : nil
    }

    init(_ listing: ObjectListing) {
        var merged: [([UInt8], Bool)] =
            listing.objects.map { (Array($0.key.utf8), false) } + listing.commonPrefixes.map { (Array($0.utf8), true) }
        merged.sort { $0.0.lexicographicallyPrecedes($1.0) }
        entries = merged.map(\.0)
        prefixFlags = merged.map(\.1)
        isTruncated = listing.isTruncated
        nextMarker = listing.nextMarker.map { Array($0.utf8) }
    }
}

@Suite struct ListingTests {
    @Test func listingMatchesReferenceModel() async throws {
        try await withStore { store, _ in
            try await store.createBucket("list")
            var rng = SplitMix(seed: 42)
            let alphabet = ["a", "b", "/", "-", "é", "e\u{301}", "z", "//", "日"]
            var keys: [String] = []
            var seen = Set<[UInt8]>()
            while keys.count < 300 {
                let length = Int(rng.next() % 6) + 1
                let key = (0..<length).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }.joined()
                if seen.insert(Array(key.utf8)).inserted { keys.append(key) }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for chunk in stride(from: 0, to: keys.count, by: 50) {
                    let slice = Array(keys[chunk..<min(chunk + 50, keys.count)])
                    group.addTask {
                        for key in slice { try await store.putObject(bucket: "list", key: key, body: buffer(key)) }
                    }
                }
                try await group.waitForAll()
            }

            let prefixes = ["", "a", "a/", "/", "é", "e", "zz", "nomatch"]
            let delimiters: [String?] = [nil, "/", "-", "//", "é", "a/"]
            let starts: [String?] = [nil, "a", "a/", "b/-", "é/", "/", "zzzzzz"]
            let sortedKeys = keys.map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) }
            var checked = 0
            for prefix in prefixes {
                for delimiter in delimiters {
                    for startAfter in starts {
                        for maxKeys in [0, 1, 7, 1000] {
                            let listing = try await store.listObjects(
                                bucket: "list", prefix: prefix, delimiter: delimiter, startAfter: startAfter,
                                maxKeys: maxKeys)
                            let expected = ReferenceListing(
                                sortedKeys: sortedKeys, prefix: prefix, delimiter: delimiter, startAfter: startAfter,
                                maxKeys: maxKeys)
                            #expect(
                                ReferenceListing(listing) == expected,
                                "prefix=\(prefix) delimiter=\(String(describing: delimiter)) startAfter=\(String(describing: startAfter)) maxKeys=\(maxKeys)"
                            )
                            checked += 1
                        }
                    }
                }
            }
            #expect(checked > 1000)

            // Paging with nextMarker visits exactly the full listing.
            for delimiter in delimiters {
                for pageSize in [1, 3, 17] {
                    var marker: String?
                    var collected: [[UInt8]] = []
                    var pages = 0
                    repeat {
                        let page = try await store.listObjects(
                            bucket: "list", delimiter: delimiter, startAfter: marker, maxKeys: pageSize)
                        let reference = ReferenceListing(page)
                        #expect(reference.entries.count <= pageSize)
                        collected += reference.entries
                        marker = page.isTruncated ? page.nextMarker : nil
                        #expect(!page.isTruncated || page.nextMarker != nil)
                        pages += 1
                    } while marker != nil && pages < 1000
                    let full = ReferenceListing(
                        sortedKeys: sortedKeys, prefix: "", delimiter: delimiter, startAfter: nil, maxKeys: 100_000)
                    let same = collected == full.entries
                    #expect(
                        same,
                        "delimiter=\(String(describing: delimiter)) pageSize=\(pageSize): \(collected.count) entries, expected \(full.entries.count)"
                    )
                }
            }
        }
    }

    @Test func listingBasics() async throws {
        try await withStore { store, _ in
            try await store.createBucket("b01")
            for key in ["photos/2024/a.jpg", "photos/2024/b.jpg", "photos/2025/c.jpg", "readme", "videos/x.mp4"] {
                try await store.putObject(bucket: "b01", key: key, body: buffer("x"))
            }
            var listing = try await store.listObjects(bucket: "b01", delimiter: "/")
            #expect(listing.objects.map(\.key) == ["readme"])
            #expect(listing.commonPrefixes == ["photos/", "videos/"])
            #expect(!listing.isTruncated && listing.nextMarker == nil)

            listing = try await store.listObjects(bucket: "b01", prefix: "photos/", delimiter: "/")
            #expect(listing.commonPrefixes == ["photos/2024/", "photos/2025/"])

            listing = try await store.listObjects(bucket: "b01", delimiter: "/", maxKeys: 1)
            #expect(listing.commonPrefixes == ["photos/"])
            #expect(listing.isTruncated && listing.nextMarker == "photos/")
            listing = try await store.listObjects(bucket: "b01", delimiter: "/", startAfter: "photos/", maxKeys: 1)
            #expect(listing.objects.map(\.key) == ["readme"])
            #expect(listing.nextMarker == "readme")

            listing = try await store.listObjects(bucket: "b01", maxKeys: 5000)
            #expect(listing.objects.count == 5)
            await expectError(.invalidArgument) { try await store.listObjects(bucket: "b01", maxKeys: -1) }
            await expectError(.noSuchBucket) { try await store.listObjects(bucket: "nope") }
        }
    }
}
