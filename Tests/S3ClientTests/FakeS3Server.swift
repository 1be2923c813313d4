import FakeHTTPServer
import Foundation
import SigV4

extension FakeRequest {
    var query: [(name: String, value: String)] {
        S3URIEncoding.decodeQuery(rawQuery ?? "")
    }

    func queryValue(_ name: String) -> String? {
        query.first { $0.name == name }?.value
    }

    /// The decoded path ("/bucket/key").
    var decodedPath: String? {
        S3URIEncoding.decode(rawPath)
    }
}

extension FakeResponse {
    static func xml(_ status: Int, _ xml: String, headers: [(name: String, value: String)] = []) -> FakeResponse {
        FakeResponse(status: status, headers: [("Content-Type", "application/xml")] + headers, body: Array(xml.utf8))
    }

    static func error(_ status: Int, code: String, message: String = "error", requestId: String = "REQ123")
        -> FakeResponse
    {
        .xml(
            status,
            """
            <?xml version="1.0" encoding="UTF-8"?>
            <Error><Code>\(code)</Code><Message>\(message)</Message><Resource>/r</Resource><RequestId>\(requestId)</RequestId></Error>
            """
        )
    }
}

let fakeAccessKey = "AKIDFAKE"
let fakeSecretKey = "fake/secret+key"

/// Runs a scripted HTTP/1.1 server on 127.0.0.1 for the duration of `body`. Every request's SigV4
/// signature and payload hash are checked; failures are recorded in `recorder.failures` and answered with
/// 403 SignatureDoesNotMatch.
func withFakeServer(
    _ handler: @escaping @Sendable (FakeRequest) async -> FakeResponse,
    _ body: (_ endpoint: URL, _ recorder: Recorder) async throws -> Void
) async throws {
    let verifier = SigV4Verifier(region: "us-east-1") { $0 == fakeAccessKey ? fakeSecretKey : nil }
    try await withFakeHTTPServer(
        verifier: verifier, rejection: { .error(403, code: "SignatureDoesNotMatch", message: $0) }, handler, body)
}
