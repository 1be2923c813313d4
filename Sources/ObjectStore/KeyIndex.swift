#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

// Keys are byte strings. Swift's `String ==` / `<` / `hasPrefix` use Unicode canonical equivalence
// ("é" precomposed == "e\u{301}"), which S3 does not: every key comparison in the store goes
// through these UTF-8 helpers instead.

/// Three-way comparison of the UTF-8 bytes of two strings.
@inline(__always)
func utf8Compare(_ a: String, _ b: String) -> Int {
    if let r = a.utf8.withContiguousStorageIfAvailable({ pa in
        b.utf8.withContiguousStorageIfAvailable { pb -> Int in
            let n = min(pa.count, pb.count)
            if n > 0 {
                let c = memcmp(pa.baseAddress!, pb.baseAddress!, n)
                if c != 0 { return c < 0 ? -1 : 1 }
            }
            return pa.count == pb.count ? 0 : (pa.count < pb.count ? -1 : 1)
        }
    }), let r {
        return r
    }
    var ia = a.utf8.makeIterator()
    var ib = b.utf8.makeIterator()
    while true {
        switch (ia.next(), ib.next()) {
        case (nil, nil): return 0
        case (nil, _): return -1
        case (_, nil): return 1
        case (let x?, let y?):
            if x != y { return x < y ? -1 : 1 }
        }
    }
}

@inline(__always)
func utf8Equal(_ a: String, _ b: String) -> Bool { utf8Compare(a, b) == 0 }

@inline(__always)
func utf8HasPrefix(_ s: String, _ prefix: String) -> Bool {
    let p = prefix.utf8
    let v = s.utf8
    guard v.count >= p.count else { return false }
    return v.prefix(p.count).elementsEqual(p)
}

/// A key whose equality and hashing are by UTF-8 bytes (for use in dictionaries and sets).
struct ByteKey: Hashable, Sendable {
    var string: String
    init(_ string: String) { self.string = string }
    static func == (a: ByteKey, b: ByteKey) -> Bool { utf8Equal(a.string, b.string) }
    func hash(into hasher: inout Hasher) {
        hasher.combine(string.utf8.count)
        for byte in string.utf8 { hasher.combine(byte) }
    }
}

struct IndexEntry: Sendable {
    var key: String
    var size: Int
    var etag: String
    var lastModifiedNs: Int64

    var summary: ObjectSummary {
        ObjectSummary(key: key, size: size, etag: etag, lastModified: .init(nanoseconds: lastModifiedNs))
    }
}

/// The keys of one bucket, sorted by UTF-8 bytes.
///
/// A sorted array: lookups and listing are O(log n); inserting a *new* key is O(n) (a memmove),
/// which is fine up to a few million keys per bucket.
struct KeyIndex: Sendable {
    private(set) var entries: [IndexEntry] = []

    var count: Int { entries.count }
    var isEmpty: Bool { entries.isEmpty }

    /// First position whose key is >= `key`.
    func lowerBound(_ key: String) -> Int {
        var lo = 0
        var hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if utf8Compare(entries[mid].key, key) < 0 { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// First position whose key is > `key`.
    func upperBound(_ key: String) -> Int {
        var lo = 0
        var hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if utf8Compare(entries[mid].key, key) <= 0 { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func find(_ key: String) -> IndexEntry? {
        let i = lowerBound(key)
        guard i < entries.count, utf8Equal(entries[i].key, key) else { return nil }
        return entries[i]
    }

    mutating func upsert(_ entry: IndexEntry) {
        let i = lowerBound(entry.key)
        if i < entries.count, utf8Equal(entries[i].key, entry.key) {
            entries[i] = entry
        } else {
            entries.insert(entry, at: i)
        }
    }

    @discardableResult
    mutating func remove(_ key: String) -> IndexEntry? {
        let i = lowerBound(key)
        guard i < entries.count, utf8Equal(entries[i].key, key) else { return nil }
        return entries.remove(at: i)
    }

    /// Builds the index from unsorted entries (start-up).
    init(unsorted: [IndexEntry]) {
        entries = unsorted.sorted { utf8Compare($0.key, $1.key) < 0 }
    }

    init() {}

    /// First position at or after `start` whose key does not start with `prefix`, given that
    /// every key in `start..<end-of-run` does (keys with a common prefix are contiguous).
    private func endOfPrefixRun(_ prefix: String, from start: Int) -> Int {
        var lo = start
        var hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if utf8HasPrefix(entries[mid].key, prefix) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// One page of a listing; see ``ObjectStore/listObjects(bucket:prefix:delimiter:startAfter:maxKeys:)``.
    func list(prefix: String, delimiter: String?, startAfter: String?, maxKeys: Int) -> ObjectListing {
        var result = ObjectListing(objects: [], commonPrefixes: [], isTruncated: false, nextMarker: nil)
        guard maxKeys > 0 else { return result }
        let delimiterBytes = delimiter.flatMap { $0.isEmpty ? nil : Array($0.utf8) }
        let prefixLength = prefix.utf8.count

        var i = lowerBound(prefix)
        if let startAfter { i = max(i, upperBound(startAfter)) }
        var count = 0
        var lastReturned: String?

        while i < entries.count {
            let entry = entries[i]
            guard utf8HasPrefix(entry.key, prefix) else { break }
            if let delimiterBytes,
                let commonPrefix = Self.commonPrefix(of: entry.key, after: prefixLength, delimiter: delimiterBytes)
            {
                let next = endOfPrefixRun(commonPrefix, from: i)
                if let startAfter, utf8Equal(commonPrefix, startAfter) {
                    // The previous page ended with this common prefix: don't return it again.
                    i = next
                    continue
                }
                if count == maxKeys {
                    result.isTruncated = true
                    break
                }
                result.commonPrefixes.append(commonPrefix)
                lastReturned = commonPrefix
                count += 1
                i = next
            } else {
                if count == maxKeys {
                    result.isTruncated = true
                    break
                }
                result.objects.append(entry.summary)
                lastReturned = entry.key
                count += 1
                i += 1
            }
        }
        if result.isTruncated { result.nextMarker = lastReturned }
        return result
    }

    /// The key up to and including the first occurrence of `delimiter` at or after byte `offset`.
    static func commonPrefix(of key: String, after offset: Int, delimiter: [UInt8]) -> String? {
        let bytes = Array(key.utf8)
        let d = delimiter.count
        guard bytes.count - offset >= d else { return nil }
        var j = offset
        while j + d <= bytes.count {
            if bytes[j] == delimiter[0] && (d == 1 || bytes[j..<j + d].elementsEqual(delimiter)) {
                // A valid UTF-8 delimiter can only match at character boundaries: the slice is valid UTF-8.
                return String(decoding: bytes[0..<j + d], as: UTF8.self)
            }
            j += 1
        }
        return nil
    }
}
