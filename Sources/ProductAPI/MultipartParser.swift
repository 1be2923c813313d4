// Hand-written rather than vapor/multipart-kit (4.7.1, the version on this machine), measured (issue 18, part 5).
// multipart-kit's FormDataDecoder holds the whole body; its callback `MultipartParser` streams too, but for this use:
// - it is 2-3 times slower: a 256 MiB file part of random bytes fed in 64 KiB ByteBuffers, release build, three
//   alternating runs on the shared 2-core machine: this parser 972-1393 MiB/s, multipart-kit 469-484 MiB/s (under a
//   concurrent build 175-196 against 66-71 MiB/s; in 16 KiB chunks 190 against 54). It cuts the body at every CR
//   byte and hands each piece over in a new ByteBuffer, one per 128 bytes of video on average (2 095 398 callbacks
//   for 256 MiB, 4 098 events here). Neither grows the heap (peak RSS +0).
// - it cannot say where the form ended: a body cut inside the next part's headers gives the same callbacks as a
//   complete form, so `isDone` (400 MalformedForm for a truncated form) could not be kept; a closing delimiter
//   with one hyphen passes.
// - a part's header line accumulates without bound (a 20 000-byte line: no error), where this parser stops at
//   16 KiB; a header line without a colon fails the whole form, where this one skips it.
// Keeping these answers on top of multipart-kit would mean re-scanning its input, so this parser stays.

import Foundation

/// A streaming `multipart/form-data` parser (RFC 7578): bytes in as they arrive, events out, never more
/// than one delimiter's length plus one header block held back, so a file part of any size streams through.
struct MultipartParser {
    enum Event: Equatable {
        /// A part begins; header names lowercased.
        case partStart([String: String])
        case data([UInt8])
        case partEnd
    }

    struct Failure: Error, Equatable {
        var message: String
    }

    private enum State {
        case preamble
        case afterDelimiter
        case headers
        case body
        case done
    }

    /// `\r\n--boundary`: the stream is read as if it began with `\r\n`, so the first delimiter looks like the rest.
    private let delimiter: [UInt8]
    private var state = State.preamble
    private var pending: [UInt8] = [13, 10]
    static let maxHeaderBytes = 16 * 1024

    init(boundary: String) {
        delimiter = Array("\r\n--\(boundary)".utf8)
    }

    var isDone: Bool { if case .done = state { return true } else { return false } }

    /// The boundary of a `multipart/form-data` Content-Type, or nil.
    static func boundary(contentType: String) -> String? {
        let parts = contentType.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.first?.lowercased() == "multipart/form-data" else { return nil }
        for part in parts.dropFirst() where part.lowercased().hasPrefix("boundary=") {
            var value = String(part.dropFirst("boundary=".count))
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 {
                value = String(value.dropFirst().dropLast())
            }
            return (1...70).contains(value.utf8.count) ? value : nil
        }
        return nil
    }

    mutating func feed(_ bytes: some Collection<UInt8>) throws(Failure) -> [Event] {
        pending.append(contentsOf: bytes)
        var events: [Event] = []
        while true {
            switch state {
            case .preamble:
                guard let index = find(delimiter, in: pending) else {
                    // Keep what could be the start of the delimiter.
                    if pending.count > delimiter.count { pending.removeFirst(pending.count - delimiter.count) }
                    return events
                }
                pending.removeFirst(index + delimiter.count)
                state = .afterDelimiter
            case .afterDelimiter:
                guard pending.count >= 2 else { return events }
                if pending[0] == 45, pending[1] == 45 {  // "--": the closing delimiter
                    state = .done
                    pending.removeAll()
                    return events
                }
                guard pending[0] == 13, pending[1] == 10 else {
                    throw Failure(message: "malformed multipart delimiter line")
                }
                pending.removeFirst(2)
                state = .headers
            case .headers:
                guard let end = find([13, 10, 13, 10], in: pending) else {
                    if pending.count > Self.maxHeaderBytes { throw Failure(message: "a part's headers exceed 16 KiB") }
                    return events
                }
                var headers: [String: String] = [:]
                for line in pending[..<end].split(separator: 10) {
                    let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                    guard let colon = text.firstIndex(of: ":") else { continue }
                    headers[text[..<colon].lowercased()] = text[text.index(after: colon)...].trimmingCharacters(
                        in: .whitespaces)
                }
                pending.removeFirst(end + 4)
                events.append(.partStart(headers))
                state = .body
            case .body:
                if let index = find(delimiter, in: pending) {
                    if index > 0 { events.append(.data(Array(pending[..<index]))) }
                    events.append(.partEnd)
                    pending.removeFirst(index + delimiter.count)
                    state = .afterDelimiter
                } else {
                    let safe = pending.count - (delimiter.count - 1)
                    if safe > 0 {
                        events.append(.data(Array(pending[..<safe])))
                        pending.removeFirst(safe)
                    }
                    return events
                }
            case .done:
                pending.removeAll()  // the epilogue is ignored
                return events
            }
        }
    }

    /// The first index of `needle` in `haystack`.
    private func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count, let first = needle.first else { return nil }
        let last = haystack.count - needle.count
        return haystack.withUnsafeBufferPointer { hay -> Int? in
            var i = 0
            while i <= last {
                if hay[i] == first {
                    var j = 1
                    while j < needle.count, hay[i + j] == needle[j] { j += 1 }
                    if j == needle.count { return i }
                }
                i += 1
            }
            return nil
        }
    }
}

extension String {
    /// `name="value"` parameters of a header like Content-Disposition.
    func headerParameter(_ name: String) -> String? {
        for part in split(separator: ";").dropFirst() {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard pair.count == 2, pair[0].lowercased() == name else { continue }
            var value = pair[1]
            if value.hasPrefix("\""), value.hasSuffix("\""), value.count >= 2 {
                value = String(value.dropFirst().dropLast())
            }
            return value
        }
        return nil
    }
}
