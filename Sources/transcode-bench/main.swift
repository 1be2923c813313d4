// `transcode-bench`: the MediaKit half of scripts/bench-transcode, one job per process so the script can
// measure each one's wall time and peak memory (wait4) next to the ffmpeg CLI's.
//
//   transcode-bench transcode INPUT OUTDIR LADDER PRESET KEYFRAME_SECONDS
//       MediaKit.Transcoder on a local file (no thumbnails: the ffmpeg CLI run makes none either);
//       prints the renditions as JSON.
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
            input: arguments[1], ladder: ladder, settings: EncodingSettings(preset: arguments[4], keyframeInterval: keyframe),
            directory: arguments[2])
        printJSON(result.renditions)
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
    fail("usage: transcode-bench transcode|probe …")
}
