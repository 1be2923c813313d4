import ArgumentParser
import AsyncHTTPClient
import Foundation
import UnixSignals
import VideoContract

/// `cinescale demo`: starts `cinescale dev` (a child process, data in a fresh directory), makes a sample clip
/// with the ffmpeg CLI, uploads it through a presigned PUT with progress bars while it is probed and
/// transcoded, checks that a rendition and the HLS playlists play back over their signed URLs, and prints
/// them with lines to try. On a terminal it keeps serving until Ctrl-C; otherwise it stops.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Run the pipeline end to end on a generated clip and print its signed URLs.")

    @Option(help: "Data directory (default: a new temporary directory, removed at exit).")
    var dataDir: String?

    @Option(help: "Port of the API (0 picks a free port).")
    var port: Int = 0

    @Option(help: "Port of the embedded store (0 picks a free port).")
    var storePort: Int = 0

    @Option(help: "Length of the sample clip, seconds.")
    var seconds: Int = 12

    @Option(help: "Upload this file instead of generating a clip.")
    var file: String?

    @Flag(help: "Keep serving after the demo until interrupted (default: when stdout is a terminal).")
    var serve = false

    @Flag(help: "Stop once the demo is done, even on a terminal.")
    var exit = false

    func run() async throws {
        let temporary = dataDir == nil
        let root = dataDir ?? NSTemporaryDirectory() + "cinescale-demo-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { if temporary { try? FileManager.default.removeItem(atPath: root) } }
        let out = Terminal()

        // The sample clip: 1280×720 at 30 fps with a tone, so the ladder has three rungs.
        let clip: String
        if let file {
            clip = file
        } else {
            clip = root + "/sample.mp4"
            out.line("==> making a \(seconds) s sample clip (ffmpeg)")
            try Self.run(
                "ffmpeg",
                [
                    "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=\(seconds)",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=\(seconds)",
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "aac",
                    "-shortest",
                    clip,
                ])
        }

        out.line("==> starting cinescale dev (store, gateway, probe and transcode workers, API) in \(root)")
        let ready = root + "/ready.json"
        let dev = Process()
        dev.executableURL = URL(fileURLWithPath: DevCommand.executableDirectory() + "/cinescale")
        dev.arguments = [
            "dev", "--data-dir", root + "/data", "--port", String(port), "--store-port", String(storePort),
            "--ready-file", ready, "--log-level", "warning",
        ]
        _ = FileManager.default.createFile(atPath: root + "/dev.log", contents: nil)
        let log = FileHandle(forWritingAtPath: root + "/dev.log")
        dev.standardOutput = log
        dev.standardError = log
        try dev.run()
        defer {
            if dev.isRunning {
                dev.terminate()
                dev.waitUntilExit()
            }
        }
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: ready) {
            guard dev.isRunning, Date() < deadline else {
                let text = (try? String(contentsOfFile: root + "/dev.log", encoding: .utf8)) ?? ""
                throw ValidationError("cinescale dev did not start:\n\(text)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let addresses = try JSONDecoder().decode(
            [String: String].self, from: Data(contentsOf: URL(fileURLWithPath: ready)))
        let api = addresses["api"]!
        out.line("    API and web page: \(api)/    store: \(addresses["store"]!)")

        let apiKey = addresses["apiKey"]!
        out.line("    API key (tenant \(addresses["tenant"] ?? "dev"), admin): \(apiKey)")
        out.line("    web page with the key: \(api)/#key=\(apiKey)")
        let flow = UploadFlow(api: api, apiKey: apiKey, client: .shared, out: out)
        let started = Date()
        let video = try await flow.run(path: clip)
        out.line(
            String(format: "==> processed in %.1f s (upload, probe, transcode)", Date().timeIntervalSince(started)))
        try await verify(video, api: api, out: out)
        flow.show(video)

        if serve || (isatty(STDOUT_FILENO) == 1 && !exit) {
            out.line("")
            out.line("serving until Ctrl-C (the URLs stop working when this stops)")
            for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) { break }
        }
    }

    /// Plays back what a viewer would: a Range request on the largest MP4 (206), the master playlist, a media
    /// playlist and its first segment, all over their signed URLs.
    func verify(_ video: VideoView, api: String, out: Terminal) async throws {
        guard let best = video.renditions?.last, let hls = video.hls else {
            throw ValidationError("the video is ready but lists no renditions")
        }
        var range = HTTPClientRequest(url: best.url)
        range.headers.add(name: "Range", value: "bytes=0-65535")
        let partial = try await HTTPClient.shared.execute(range, timeout: .seconds(30))
        let bytes = try await partial.body.collect(upTo: 1 << 20)
        guard partial.status == .partialContent, bytes.readableBytes == 65536 else {
            throw ValidationError(
                "Range GET of \(best.name): HTTP \(partial.status.code), \(bytes.readableBytes) bytes")
        }
        let master = try await text(api + hls)
        guard let child = master.split(separator: "\n").last(where: { !$0.hasPrefix("#") && !$0.isEmpty }) else {
            throw ValidationError("the master playlist names no rendition")
        }
        let media = try await text(api + "/stream/\(video.videoId)/" + child)
        guard let segment = media.split(separator: "\n").first(where: { !$0.hasPrefix("#") && !$0.isEmpty }) else {
            throw ValidationError("the media playlist names no segment")
        }
        let first = try await HTTPClient.shared.execute(HTTPClientRequest(url: String(segment)), timeout: .seconds(30))
        let segmentBytes = try await first.body.collect(upTo: 64 << 20)
        guard first.status == .ok, segmentBytes.readableBytes > 0 else {
            throw ValidationError("the first HLS segment: HTTP \(first.status.code)")
        }
        out.line(
            "==> playback checked: \(best.name) MP4 answers Range requests (206); HLS master → \(child.split(separator: "?")[0]) → first segment (\(segmentBytes.readableBytes) bytes), all over signed URLs"
        )
    }

    func text(_ url: String) async throws -> String {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: url), timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 16 << 20)
        guard response.status == .ok else { throw ValidationError("GET \(url): HTTP \(response.status.code)") }
        return String(buffer: body)
    }

    static func run(_ tool: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [tool] + arguments
        do {
            try process.run()
        } catch {
            throw ValidationError("cannot run \(tool) (install it, or pass --file): \(error)")
        }
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("\(tool) failed (exit \(process.terminationStatus))")
        }
    }
}
