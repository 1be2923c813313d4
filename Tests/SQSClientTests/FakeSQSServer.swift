import FakeHTTPServer
import Foundation
import SigV4

extension FakeRequest {
    var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] }
}

extension FakeResponse {
    static func json(_ status: Int, _ text: String, headers: [(name: String, value: String)] = []) -> FakeResponse {
        FakeResponse(
            status: status, headers: [("Content-Type", "application/x-amz-json-1.0")] + headers, body: Array(text.utf8))
    }
}

let fakeAccessKey = "AKIDSQSFAKE"
let fakeSecretKey = "sqs/fake+secret"

/// Runs a scripted SQS endpoint on 127.0.0.1 (a free port) for the duration of `body`. Signatures (service
/// `sqs`) that do not verify are recorded in `recorder.failures`; the handler still answers.
func withFakeSQS(
    _ handler: @escaping @Sendable (FakeRequest) async -> FakeResponse,
    _ body: (_ endpoint: URL, _ recorder: Recorder) async throws -> Void
) async throws {
    let verifier = SigV4Verifier(region: "eu-west-1", service: "sqs") { $0 == fakeAccessKey ? fakeSecretKey : nil }
    try await withFakeHTTPServer(verifier: verifier, handler, body)
}
