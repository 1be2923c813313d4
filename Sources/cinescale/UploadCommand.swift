import ArgumentParser
import AsyncHTTPClient
import Foundation

/// `cinescale upload FILE`: uploads a video through a running API (presigned PUT straight to the bucket),
/// or, for a large file, as a resumable upload: parts in parallel, resumed after the command is killed —
/// follows it through probing and transcoding with progress bars, and prints its signed URLs.
struct UploadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upload", abstract: "Upload a video through the API and wait until its renditions are ready.")

    @Argument(help: "The video file.")
    var file: String

    @Option(help: "The API's URL (env CINESCALE_API).")
    var api: String?

    @Option(help: "An API key with the upload and read scopes (env CINESCALE_API_KEY; `cinescale dev` prints one).")
    var apiKey: String?

    @Option(help: "Parts of a resumable upload sent at once.")
    var parallel: Int = 4

    func run() async throws {
        let api = (api ?? ProcessInfo.processInfo.environment["CINESCALE_API"] ?? "http://127.0.0.1:8080")
            .trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        guard FileManager.default.isReadableFile(atPath: file) else { throw ValidationError("cannot read \(file)") }
        guard let key = apiKey ?? ProcessInfo.processInfo.environment["CINESCALE_API_KEY"], !key.isEmpty else {
            throw ValidationError(
                "an API key is needed: --api-key or CINESCALE_API_KEY (cinescale dev prints one at start-up)")
        }
        let flow = UploadFlow(api: api, apiKey: key, client: .shared, out: Terminal())
        do {
            let video = try await flow.run(path: file, parallel: max(1, parallel))
            flow.show(video)
        } catch let failure as UploadFlow.Failure {
            FileHandle.standardError.write(Data("cinescale upload: \(failure.description)\n".utf8))
            throw ExitCode(1)
        }
    }
}
