import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOPosix
import VideoContract

/// What `cinescale upload` and `cinescale demo` do against a running API: ask for an upload URL, PUT the
/// file straight to the bucket (streamed from disk, with a progress bar), follow the video through probing
/// and transcoding (another bar), and print the signed URLs with lines to try them.
struct UploadFlow {
    let api: String
    /// The API key (`upload` and `read` scopes) the calls carry.
    let apiKey: String
    let client: HTTPClient
    let out: Terminal

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    struct Ticket: Decodable {
        var videoId: String
        var uploadUrl: String
        var headers: [String: String]
    }

    /// Uploads `path` and waits until the video is ready; returns it. A large file goes up as a resumable
    /// session (the API decides), `parallel` parts at a time, and a run killed half way is resumed by the next
    /// run for the same file (same path, size and modification time): only the missing parts are sent.
    func run(path: String, parallel: Int = 4) async throws -> VideoView {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        guard let size = (attributes[.size] as? NSNumber)?.int64Value, size > 0 else {
            throw Failure(description: "\(path) is empty")
        }
        let modified = (attributes[.modificationDate] as? Date) ?? Date(timeIntervalSince1970: 0)
        let name = URL(fileURLWithPath: path).lastPathComponent
        let state = UploadState(path: path, size: size, modified: modified, api: api)
        if let saved = state.load() {
            if let id = try await resume(saved, path: path, state: state, parallel: parallel) {
                return try await follow(id)
            }
        }
        let body = try JSONSerialization.data(withJSONObject: ["fileName": name, "size": size])
        let answer: Data = try await call("POST", "/uploads", body: body, expect: 201)
        if let session = try? JSONDecoder().decode(Session.self, from: answer) {
            state.save(.init(api: api, sessionId: session.sessionId, videoId: session.videoId))
            out.line(
                "video \(session.videoId): uploading \(name) (\(Terminal.bytes(size))) as a resumable upload, \(session.partCount) parts of \(Terminal.bytes(session.partSize)), \(parallel) at a time"
            )
            out.line("session \(session.sessionId) (kept in \(state.file.path) until complete: run again to resume)")
            var urls = Dictionary(session.parts.map { ($0.partNumber, $0) }, uniquingKeysWith: { a, _ in a })
            let missing = Array(1...session.partCount)
            try await sendParts(
                missing, urls: &urls, sessionId: session.sessionId, path: path, size: size, partSize: session.partSize,
                parallel: parallel, stored: 0)
            try await complete(session.sessionId, state: state)
            return try await follow(session.videoId)
        }
        let ticket = try JSONDecoder().decode(Ticket.self, from: answer)
        out.line("video \(ticket.videoId): uploading \(name) (\(Terminal.bytes(size))) through a presigned PUT")

        // The PUT, streamed from disk in 1 MiB chunks.
        var request = HTTPClientRequest(url: ticket.uploadUrl)
        request.method = .PUT
        for (header, value) in ticket.headers { request.headers.add(name: header, value: value) }
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        let bar = out.bar("upload")
        let source = FileChunks(handle: handle, size: size, progress: { bar.update(Double($0) / Double(size)) })
        request.body = .stream(source, length: .known(size))
        let response = try await client.execute(request, timeout: .hours(6))
        let stored = try await response.body.collect(upTo: 1 << 20)
        try? handle.close()
        guard response.status == .ok else {
            throw Failure(
                description: "the store refused the upload: HTTP \(response.status.code) \(String(buffer: stored))")
        }
        bar.finish()
        return try await follow(ticket.videoId)
    }

    /// Follows a video through probing and transcoding (a bar) until it is ready.
    func follow(_ videoId: String) async throws -> VideoView {
        // Processing: probing, then transcoding with a percentage.
        let processing = out.bar("process")
        while true {
            let video: VideoView = try await call("GET", "/videos/\(videoId)", expect: 200)
            switch video.state {
            case .ready:
                processing.finish()
                return video
            case .failed:
                processing.finish(label: "failed")
                let error = video.error.map { "\($0.code) at \($0.stage ?? "?"): \($0.message)" } ?? "unknown"
                throw Failure(description: "video \(video.videoId) failed: \(error)")
            case .transcoding:
                processing.update(0.1 + 0.9 * Double(video.percent ?? 0) / 100, label: "transcoding")
            default:
                processing.update(0.05, label: video.state.rawValue)
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    /// Prints the signed URLs of a ready video and lines to try them.
    func show(_ video: VideoView) {
        out.line("")
        out.line("ready: \(api)/videos/\(video.videoId)")
        for rendition in video.renditions ?? [] {
            out.line(
                "  \(rendition.name) \(rendition.width)x\(rendition.height) \(rendition.bitRate / 1000) kbit/s \(Terminal.bytes(rendition.size))"
            )
            out.line("    \(rendition.url)")
        }
        if let hls = video.hls { out.line("  HLS (every URI signed): \(api)\(hls)") }
        if let best = video.renditions?.last {
            out.line("")
            out.line("try:")
            out.line("  curl -r 0-1023 -o /dev/null -w '%{http_code} %{size_download} bytes\\n' '\(best.url)'")
            if let hls = video.hls { out.line("  ffplay '\(api)\(hls)'") }
            out.line("  ffplay '\(api)\(best.stream)'")
            out.line("  open \(api)/#key=<your API key> in a browser to upload and play from the page")
        }
    }

    func call<T: Decodable>(_ method: String, _ path: String, body: Data? = nil, expect: Int) async throws -> T {
        let data: Data = try await call(method, path, body: body, expect: expect)
        return try JSONDecoder().decode(T.self, from: data)
    }

    func call(_ method: String, _ path: String, body: Data? = nil, expect: Int) async throws -> Data {
        let (status, data) = try await callStatus(method, path, body: body)
        guard status == expect else {
            throw Failure(description: "\(method) \(path): HTTP \(status) \(String(decoding: data, as: UTF8.self))")
        }
        return data
    }

    /// A call's status and body, whatever the status.
    func callStatus(_ method: String, _ path: String, body: Data? = nil) async throws -> (Int, Data) {
        var request = HTTPClientRequest(url: api + path)
        request.method = .init(rawValue: method)
        request.headers.add(name: "Authorization", value: "Bearer \(apiKey)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        let response = try await client.execute(request, timeout: .seconds(30))
        let data = try await response.body.collect(upTo: 16 << 20)
        return (Int(response.status.code), Data(buffer: data))
    }
}

/// A file as an async sequence of 1 MiB buffers, reporting bytes handed out.
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let handle: FileHandle
    let size: Int64
    let progress: @Sendable (Int64) -> Void

    struct AsyncIterator: AsyncIteratorProtocol {
        let handle: FileHandle
        let progress: @Sendable (Int64) -> Void
        var sent: Int64 = 0

        mutating func next() async throws -> ByteBuffer? {
            guard let data = try handle.read(upToCount: 1 << 20), !data.isEmpty else { return nil }
            sent += Int64(data.count)
            progress(sent)
            return ByteBuffer(data: data)
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(handle: handle, progress: progress) }
}

/// Output for people: progress bars redrawn in place on a terminal, a line per 10 % otherwise.
struct Terminal: Sendable {
    let interactive = isatty(STDERR_FILENO) == 1

    func line(_ text: String) { print(text) }

    /// A line written at once (print's stdout is block-buffered into a pipe: a watcher would see nothing until
    /// the buffer fills). `fflush(nil)` flushes every stream, so earlier `print`s stay in order.
    func flushedLine(_ text: String) {
        print(text)
        fflush(nil)
    }

    func bar(_ name: String) -> Bar { Bar(name: name, interactive: interactive) }

    /// `@unchecked Sendable`: the part tasks update it concurrently; every mutable field is behind `lock`.
    final class Bar: @unchecked Sendable {
        let name: String
        let interactive: Bool
        private let lock = NSLock()
        private var lastDecile = -1
        private var lastDraw = Date.distantPast

        init(name: String, interactive: Bool) {
            self.name = name
            self.interactive = interactive
        }

        func update(_ fraction: Double, label: String = "") {
            lock.lock()
            defer { lock.unlock() }
            let clamped = min(1, max(0, fraction))
            if interactive {
                guard Date().timeIntervalSince(lastDraw) > 0.1 || clamped >= 1 else { return }
                lastDraw = Date()
                let width = 30
                let filled = Int(clamped * Double(width))
                let text =
                    "\r\(name.padding(toLength: 8, withPad: " ", startingAt: 0)) [\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(String(format: "%3d", Int(clamped * 100))) % \(label)\u{1B}[K"
                FileHandle.standardError.write(Data(text.utf8))
            } else {
                let decile = Int(clamped * 10)
                guard decile > lastDecile else { return }
                lastDecile = decile
                print("\(name): \(decile * 10) % \(label)")
            }
        }

        func finish(label: String = "done") {
            update(1, label: label)
            if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
        }
    }

    static func bytes(_ count: Int64) -> String {
        count >= 1 << 20
            ? String(format: "%.1f MB", Double(count) / 1e6) : String(format: "%.0f kB", Double(count) / 1e3)
    }
}
