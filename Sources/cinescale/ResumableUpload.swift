import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOFoundationCompat
import WireFormat

/// `cinescale upload`'s resumable uploads: a session's parts sent `parallel` at a time, each retried, and
/// the session kept in a small state file so that a run killed half way is resumed by the next one.
extension UploadFlow {
    struct PartURL: Decodable, Sendable {
        var partNumber: Int
        var url: String
        var size: Int64
    }

    /// `POST /uploads` answer for a resumable upload.
    struct Session: Decodable {
        var videoId: String
        var sessionId: String
        var partSize: Int64
        var partCount: Int
        var parts: [PartURL]
    }

    /// `GET /uploads/{id}`.
    struct SessionView: Decodable {
        var videoId: String
        var state: String
        var partCount: Int
        var partSize: Int64
        var storedBytes: Int64
        var missingParts: [Int]
    }

    struct PartBatch: Decodable {
        var parts: [PartURL]
    }

    /// Resumes a saved session; returns its video id, or nil when the session is gone (expired, aborted) and
    /// the upload must start again.
    func resume(_ saved: UploadState.Saved, path: String, state: UploadState, parallel: Int) async throws -> String? {
        let (status, data) = try await callStatus("GET", "/uploads/\(saved.sessionId)")
        guard status == 200, let view = try? JSONDecoder().decode(SessionView.self, from: data) else {
            out.line("the saved upload session is gone (HTTP \(status)): starting again")
            state.remove()
            return nil
        }
        if view.state == "completed" {
            out.line("video \(view.videoId): already uploaded")
            state.remove()
            return view.videoId
        }
        let stored = view.partCount - view.missingParts.count
        out.line(
            "video \(view.videoId): resuming session \(saved.sessionId): \(stored) of \(view.partCount) parts already stored (\(view.storedBytes) bytes); sending the \(view.missingParts.count) missing"
        )
        let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber
        var urls: [Int: PartURL] = [:]
        try await sendParts(
            view.missingParts, urls: &urls, sessionId: saved.sessionId, path: path, size: size?.int64Value ?? 0,
            partSize: view.partSize, parallel: parallel, stored: view.storedBytes)
        try await complete(saved.sessionId, state: state)
        return view.videoId
    }

    /// Presigned URLs for `numbers` not in `urls` yet, in batches of 1 000.
    func mint(_ numbers: [Int], into urls: inout [Int: PartURL], sessionId: String) async throws {
        let wanted = numbers.filter { urls[$0] == nil }
        var start = 0
        while start < wanted.count {
            let batch = Array(wanted[start..<min(start + 1000, wanted.count)])
            let body = try JSONSerialization.data(withJSONObject: ["partNumbers": batch])
            let answer: PartBatch = try await call("POST", "/uploads/\(sessionId)/parts", body: body, expect: 200)
            for part in answer.parts { urls[part.partNumber] = part }
            start += batch.count
        }
    }

    /// Sends `numbers`, `parallel` at a time; prints a line per part stored and the totals.
    func sendParts(
        _ numbers: [Int], urls: inout [Int: PartURL], sessionId: String, path: String, size: Int64, partSize: Int64,
        parallel: Int, stored: Int64
    ) async throws {
        guard !numbers.isEmpty else { return }
        try await mint(numbers, into: &urls, sessionId: sessionId)
        let bar = out.bar("upload")
        let progress = Progress(done: stored, total: size)
        let known = urls
        let started = ContinuousClock.now
        var sentBytes: Int64 = 0
        try await withThrowingTaskGroup(of: Int64.self) { group in
            var queue = numbers[...]
            var finished = 0
            func next(_ group: inout ThrowingTaskGroup<Int64, any Error>) {
                guard let number = queue.popFirst(), let part = known[number] else { return }
                group.addTask { try await self.sendPart(part, partSize: partSize, sessionId: sessionId, path: path) }
            }
            for _ in 0..<max(1, parallel) { next(&group) }
            while let bytes = try await group.next() {
                finished += 1
                sentBytes += bytes
                let fraction = progress.add(bytes)
                if out.interactive {
                    bar.update(fraction)
                } else {
                    out.flushedLine(
                        "part stored: \(finished)/\(numbers.count) sent this run, \(Int(fraction * 100)) % of the file")
                }
                next(&group)
            }
        }
        bar.finish()
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        out.flushedLine(
            String(
                format: "sent %d parts, %lld bytes in %.1f s (%.0f MB/s)", numbers.count, sentBytes, seconds,
                Double(sentBytes) / 1e6 / max(seconds, 0.001)))
    }

    /// One part: read from the file and PUT to its presigned URL; retried 5 times with backoff, a fresh URL
    /// after a 403 (the URL expired). Returns the bytes sent.
    func sendPart(_ given: PartURL, partSize: Int64, sessionId: String, path: String) async throws -> Int64 {
        var part = given
        // Every part but the last is `partSize` long: part n starts at (n - 1) × partSize.
        let bytes = try Self.read(path: path, offset: Int64(part.partNumber - 1) * partSize, length: part.size)
        var attempt = 0
        while true {
            attempt += 1
            var request = HTTPClientRequest(url: part.url)
            request.method = .PUT
            // (Content-Length, which the URL signs, comes from the body's length.)
            request.body = .bytes(bytes)
            var failure: String
            do {
                let response = try await client.execute(request, timeout: .minutes(10))
                let answer = try await response.body.collect(upTo: 1 << 20)
                if response.status == .ok { return part.size }
                failure = "HTTP \(response.status.code) \(String(buffer: answer).prefix(300))"
                if response.status == .forbidden {
                    let body = try JSONSerialization.data(withJSONObject: ["partNumbers": [part.partNumber]])
                    let fresh: PartBatch = try await call(
                        "POST", "/uploads/\(sessionId)/parts", body: body, expect: 200)
                    if let url = fresh.parts.first { part = url }
                }
            } catch {
                failure = "\(error)"
            }
            guard attempt < 5 else {
                throw Failure(description: "part \(part.partNumber) failed 5 times; last: \(failure)")
            }
            out.flushedLine("part \(part.partNumber) failed (\(failure)); retrying")
            try await Task.sleep(for: .milliseconds(250 << attempt))
        }
    }

    /// Reads a part from the file (blocking I/O, a few MiB: this is the command line's own process, not a server).
    static func read(path: String, offset: Int64, length: Int64) throws -> ByteBuffer {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        let data = try handle.read(upToCount: Int(length)) ?? Data()
        guard data.count == Int(length) else {
            throw Failure(description: "\(path) changed while uploading (short read at \(offset))")
        }
        return ByteBuffer(data: data)
    }

    func complete(_ sessionId: String, state: UploadState) async throws {
        let _: Data = try await call("POST", "/uploads/\(sessionId)/complete", expect: 200)
        state.remove()
        out.flushedLine("upload complete")
    }
}

/// Bytes done of a total, shared by the part tasks.
/// `@unchecked Sendable`: `done`, the only mutable field, is read and written under `lock`.
final class Progress: @unchecked Sendable {
    // A lock around two integers: updated once a part, from the task group's loop.
    private let lock = NSLock()
    private var done: Int64
    private let total: Int64

    init(done: Int64, total: Int64) {
        self.done = done
        self.total = max(1, total)
    }

    func add(_ bytes: Int64) -> Double {
        lock.lock()
        defer { lock.unlock() }
        done += bytes
        return Double(done) / Double(total)
    }
}

/// The state file of a resumable upload in progress: `$XDG_STATE_HOME/cinescale/uploads/<sha256 of path, size
/// and mtime>.json` (`~/.local/state/…` without XDG_STATE_HOME), written when the session opens and removed
/// when it completes. Another file, or the same path changed, is another key: never resumed into a session
/// of other bytes.
struct UploadState {
    struct Saved: Codable {
        var api: String
        var sessionId: String
        var videoId: String
    }

    let file: URL
    let api: String

    init(path: String, size: Int64, modified: Date, api: String) {
        let environment = ProcessInfo.processInfo.environment
        let base =
            environment["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".local/state")
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let identity = "\(absolute)\n\(size)\n\(Int64((modified.timeIntervalSince1970 * 1000).rounded()))"
        let digest = Hex.encode(SHA256.hash(data: Data(identity.utf8)))
        file = base.appendingPathComponent("cinescale/uploads/\(digest.prefix(32)).json")
        self.api = api
    }

    func load() -> Saved? {
        guard let data = try? Data(contentsOf: file), let saved = try? JSONDecoder().decode(Saved.self, from: data),
            saved.api == api
        else { return nil }
        return saved
    }

    func save(_ saved: Saved) {
        try? FileManager.default.createDirectory(
            at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try? JSONEncoder().encode(saved).write(to: file, options: .atomic)
    }

    func remove() { try? FileManager.default.removeItem(at: file) }
}
