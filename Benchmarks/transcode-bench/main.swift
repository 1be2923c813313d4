// `transcode-bench`: the MediaKit half of scripts/bench-transcode, one job per process so the script can
// measure each one's wall time and peak memory (wait4) next to the ffmpeg CLI's.
//
//   transcode-bench transcode INPUT OUTDIR LADDER PRESET KEYFRAME_SECONDS
//       MediaKit.Transcoder on a local file (no thumbnails: the ffmpeg CLI run makes none either);
//       prints the renditions as JSON.
//   transcode-bench chunk INPUT OUTDIR LADDER PRESET START END REPEAT
//       MediaKit.Transcoder.transcodeChunk of [START, END) s of a local file (keyframes every 4 s, a 2 s
//       first chunk's grid when START > 0), REPEAT times in this process; prints each run's seconds and
//       the process's resident memory after it (a chunk worker runs many chunks in one process).
//   transcode-bench audio INPUT OUTPUT
//       MediaKit.Transcoder.encodeAudio of a local file (the audio a chunked plan encodes once when it is not
//       AAC); prints seconds and what it wrote as JSON.
//   transcode-bench probe URL SIZE
//       MediaKit.MediaProbe over ranged GETs of a (presigned) URL, 128 KiB chunks as in `probe`;
//       prints seconds, requests and bytes as JSON.
import AsyncHTTPClient
import Foundation
import MediaFunctionSupport
import MediaKit
import NIOCore

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("transcode-bench: \(message)\n".utf8))
    exit(2)
}

func printJSON(_ value: some Encodable) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    print(String(decoding: try! encoder.encode(value), as: UTF8.self))
}

struct ProbeRun: Encodable {
    var seconds: Double
    var requests: Int
    var bytes: Int64
    var width: Int?
    var duration: Double
}

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "transcode":
    guard arguments.count == 6, let keyframe = Double(arguments[5]) else {
        fail("usage: transcode INPUT OUTDIR LADDER PRESET KEYFRAME_SECONDS")
    }
    let heights = arguments[3].split(separator: ",").compactMap { Int($0) }
    let ladder = Rung.defaultLadder.filter { heights.contains($0.height) }
    guard ladder.count == heights.count else { fail("LADDER must name default rungs (240,360,720,1080)") }
    do {
        let result = try await Transcoder.transcode(
            input: arguments[1], ladder: ladder,
            settings: EncodingSettings(preset: arguments[4], keyframeInterval: keyframe),
            directory: arguments[2])
        printJSON(result.renditions)
    } catch {
        fail("\(error)")
    }
case "chunk":
    guard arguments.count == 8, let start = Double(arguments[5]), let end = Double(arguments[6]),
        let repeats = Int(arguments[7])
    else { fail("usage: chunk INPUT OUTDIR LADDER PRESET START END REPEAT") }
    let heights = arguments[3].split(separator: ",").compactMap { Int($0) }
    let ladder = Rung.defaultLadder.filter { heights.contains($0.height) }
    let chunk = ChunkRange(
        index: start > 0 ? 1 : 0, start: start, end: end,
        firstSegment: start > 0 ? Int(((start - 2) / 4).rounded()) + 1 : 0)
    for run in 0..<repeats {
        let started = ContinuousClock.now
        do {
            _ = try await Transcoder.transcodeChunk(
                source: try FileSource(path: arguments[1]), chunk: chunk, ladder: ladder,
                settings: EncodingSettings(preset: arguments[4], keyframeInterval: 4),
                thumbnails: ThumbnailSettings(), directory: "\(arguments[2])/\(run)")
        } catch {
            fail("\(error)")
        }
        let elapsed = ContinuousClock.now - started
        let statm = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "0 0"
        let resident = (Int(statm.split(separator: " ")[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
        print("run \(run): \(elapsed) resident \(resident >> 20) MiB")
    }
case "audio":
    guard arguments.count == 3 else { fail("usage: audio INPUT OUTPUT") }
    let started = ContinuousClock.now
    do {
        let encoded = try await Transcoder.encodeAudio(source: try FileSource(path: arguments[1]), output: arguments[2])
        let elapsed = ContinuousClock.now - started
        struct AudioRun: Encodable {
            var seconds: Double
            var audio: EncodedAudio
        }
        printJSON(
            AudioRun(
                seconds: Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18,
                audio: encoded))
    } catch {
        fail("\(error)")
    }
case "probe":
    guard arguments.count == 3, let size = Int64(arguments[2]) else { fail("usage: probe URL SIZE") }
    let url = arguments[1]
    let client = HTTPClient.shared
    let started = ContinuousClock.now
    let source = ChunkedRangeSource(size: size, chunkSize: 128 * 1024) { range in
        try Blocking.run {
            var request = HTTPClientRequest(url: url)
            request.headers.add(name: "Range", value: "bytes=\(range.lowerBound)-\(range.upperBound - 1)")
            let response = try await client.execute(request, timeout: .seconds(30))
            guard response.status == .partialContent || response.status == .ok else {
                throw MediaError(.sourceUnavailable, "GET \(range): HTTP \(response.status.code)")
            }
            return Array(try await response.body.collect(upTo: 64 << 20).readableBytesView)
        }
    }
    do {
        let info = try await MediaProbe.probe(source)
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        printJSON(
            ProbeRun(
                seconds: seconds, requests: source.requests, bytes: source.bytesFetched, width: info.video?.width,
                duration: info.duration))
    } catch {
        fail("\(error)")
    }
default:
    fail("usage: transcode-bench transcode|chunk|probe …")
}
